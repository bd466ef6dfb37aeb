"""Database options both benchmark sites share, so neither gets a faster database than the other.

Imports nothing of the project: the stock site (bench/stock_settings.py) uses it too.
"""

# WAL, so readers do not wait for the writer; writers take the lock when their transaction
# begins (IMMEDIATE) and wait up to 30 s for it.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
