from tests.server.live import live  # noqa: F401
