from tests.support.fixtures import db, scripted_llm  # noqa: F401
