"""The benchmark's project site: the example site with a deeper chain limit and no throttling.

Throttling is off so the load generator measures the endpoint, not the rate
limiter; exchanged tokens live an hour so the depth-8 subject token outlives
the run. SQLite runs in WAL mode so two workers do not serialise on readers
(the options in bench/dbconf.py, which the stock site uses too).

``BENCH_JWT_ACCESS_TOKENS`` picks ``JWT_ACCESS_TOKENS`` (default ``"all"``, the
project's default): bench.run serves the same database from two instances, one
with ``"all"`` and one with ``"agents"``, to measure a non-agent application's
client-credentials grant with a JWT and with an opaque access token.
"""

import os

from bench.dbconf import SQLITE_OPTIONS
from example_project.settings import *  # noqa: F403
from example_project.settings import ALLOWED_HOSTS, DATABASES, DELEGATION_IDP

DELEGATION_IDP = {
    **DELEGATION_IDP,
    "MAX_DELEGATION_DEPTH": 10,
    "EXCHANGED_TOKEN_LIFETIME": 3600,
    "THROTTLE_RATES": {},
    "JWT_ACCESS_TOKENS": os.environ.get("BENCH_JWT_ACCESS_TOKENS", "all"),
}
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = dict(SQLITE_OPTIONS)
