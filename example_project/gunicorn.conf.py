"""gunicorn settings for the example site (the Procfile's ``web`` process).

``gunicorn --config example_project/gunicorn.conf.py example_project.wsgi:application``

Environment: ``PORT`` (default 8000) or ``GUNICORN_BIND`` (``host:port``, overrides it),
``WEB_CONCURRENCY`` (sync worker processes; default two per core plus one),
``FORWARDED_ALLOW_IPS`` (the load balancer's addresses whose ``X-Forwarded-*`` headers
are trusted; default loopback only), ``PROMETHEUS_MULTIPROC_DIR`` (with ``IDP_METRICS=1``: a
directory of this instance's own where every worker writes its metrics, and which each
scrape sums; emptied when the instance starts, as prometheus-client's multiprocess mode asks).

Web processes keep no state of their own: the database, Redis and the broker are shared,
so instances are added or removed behind the load balancer at any time.
"""

import glob
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Sync workers: an exchange is CPU work (JOSE, Django) plus short database round trips.
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
worker_class = "sync"
timeout = 30
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then, staggered, so no process grows for ever.
max_requests = 5000
max_requests_jitter = 500
# Each worker opens its own database and Redis connections after the fork.
preload_app = False
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Request lines only: token endpoint parameters travel in POST bodies, which are never logged.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# No runtime control socket: unused here, and instances on one host would share its path.
control_socket_disable = True


def on_starting(server):
    """Counts left by an earlier run of this instance would be summed with this one's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)


def child_exit(server, worker):
    """A worker ended (recycled by max_requests, or killed): its live gauges go; its
    counters stay in the directory and keep being summed, so no count is lost."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
