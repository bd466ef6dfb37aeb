"""The benchmark site: the example site with a deeper chain limit and no throttling.

Throttling is off so the load generator measures the endpoint, not the rate
limiter; exchanged tokens live an hour so the depth-8 subject token outlives
the run. SQLite runs in WAL mode so two workers do not serialise on readers.
"""

from example_project.settings import *  # noqa: F403
from example_project.settings import ALLOWED_HOSTS, DATABASES, DELEGATION_IDP

DELEGATION_IDP = {
    **DELEGATION_IDP,
    "MAX_DELEGATION_DEPTH": 10,
    "EXCHANGED_TOKEN_LIFETIME": 3600,
    "THROTTLE_RATES": {},
}
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
