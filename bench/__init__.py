"""Side-by-side benchmark of the token endpoint (issue 7).

Run it with one command from the repository root::

    .venv/bin/python -m bench             # about three minutes
    .venv/bin/python -m bench --quick     # a smoke run

It builds a fresh site database, starts real gunicorn workers on loopback and
measures, in one run: client credentials with a PBKDF2-hashed and with an
unhashed secret, token exchange at chain depth 1 and 8, throughput with 1 and 2
workers, p50/p99 latency with 1 and 4 concurrent clients, the same requests
in-process, and the database queries per exchange. It prints a table and
writes JSON to ``bench/results/``. See docs/performance.md.
"""
