from tests.support.fixtures import llama_server, scripted_llm  # noqa: F401
