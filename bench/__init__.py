"""Side-by-side benchmark of the token endpoint against a stock django-oauth-toolkit site.

Run it with one command from the repository root::

    .venv/bin/python -m bench             # about two minutes
    .venv/bin/python -m bench --quick     # a smoke run

It builds two fresh databases, the project's bench site (bench/settings.py) and a stock
django-oauth-toolkit site (bench/stock_settings.py), starts real gunicorn workers on
loopback and measures, in one run and interleaved in rounds: the stock site's
client-credentials grant with an unhashed secret (no middleware and Django's startproject
middleware) and with DOT's default PBKDF2-hashed secret; the project's token exchange at
chain depth 1 and 8; the project's client-credentials grant for a non-agent application
with an opaque (``JWT_ACCESS_TOKENS="agents"``) and a JWT (``"all"``) access token. Targets
compare them at 1 worker and 1 client; the exchange is also measured at 4 clients on 1 and
2 workers, and the project's scenarios in-process, with their database queries. It prints
a table and writes JSON to ``bench/results/``. See docs/performance.md.
"""
