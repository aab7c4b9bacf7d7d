from tests.server.live import live, server_db  # noqa: F401
from tests.support.postgres import pg_cluster, pg_url  # noqa: F401
