from tests.server.live import live, server_db  # noqa: F401
from tests.support.fixtures import db  # noqa: F401
from tests.support.keyring import memory_keyring  # noqa: F401
from tests.support.postgres import pg_cluster, pg_url  # noqa: F401
