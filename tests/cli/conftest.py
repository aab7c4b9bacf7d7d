from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.keyring import memory_keyring  # noqa: F401
