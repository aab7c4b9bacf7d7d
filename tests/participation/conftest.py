from tests.server.live import live  # noqa: F401
from tests.support.fixtures import db  # noqa: F401
from tests.support.keyring import memory_keyring  # noqa: F401
