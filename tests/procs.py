"""Real processes for integration tests: gunicorn web instances, Celery worker and beat.

Black-box: each test gets its own database (a SQLite file, or a PostgreSQL
database when ``database_url`` is given), migrated by a subprocess, and talks
to the processes over loopback HTTP and the real broker. Everything started is
stopped when the ``Cluster`` context ends.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TEST_KEK = "ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="


def site_env(
    tmp_path: Path,
    *,
    issuer: str,
    database_url: str | None = None,
    broker_url: str | None = None,
    redis_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for the example site's processes (production-like: DEBUG off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_", "IDP_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "integration-test-secret-key-not-for-production",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECURE_COOKIES": "0",
            "IDP_ISSUER": issuer,
            "IDP_KEY_ENCRYPTION_KEYS": TEST_KEK,
            "DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'site.sqlite3'}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def wait_http(url: str, timeout: float = 60, *, verify: Any = True) -> None:
    """Until ``url`` answers (``verify``: the CA file an https URL's certificate is checked with)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up: {last}")


@dataclass
class Cluster:
    """Processes started for one test, stopped together."""

    env: dict[str, str]
    tmp_path: Path
    processes: list[tuple[str, subprocess.Popen[str]]] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def gunicorn(
        self,
        port: int | None = None,
        *,
        workers: int = 1,
        name: str | None = None,
        env: dict[str, str] | None = None,
        tls: Any = None,
    ) -> str:
        """Start a gunicorn instance; returns its base URL once it answers. With ``tls`` (a
        ``tests.support.tls.Authority``) it serves https with that authority's certificate."""
        port = port or free_port()
        label = name or f"gunicorn-{port}"
        https = ["--certfile", str(tls.cert_path), "--keyfile", str(tls.key_path)] if tls is not None else []
        self._spawn(
            label,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "example_project.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--access-logfile",
                "-",
                "--timeout",
                "60",
                # One control socket path per user by default: instances would take it from each other.
                "--no-control-socket",
                *https,
            ],
            env,
        )
        url = f"{'https' if tls is not None else 'http'}://127.0.0.1:{port}"
        verify = ssl.create_default_context(cafile=tls.ca_path) if tls is not None else True
        wait_http(f"{url}/.well-known/oauth-authorization-server", verify=verify)
        return url

    def celery_worker(self, *, queues: str | None = None, name: str = "worker") -> subprocess.Popen[str]:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}@%h",
        ]
        if queues:
            args += ["-Q", queues]
        proc = self._spawn(name, args)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ready" in self.log(name):
                return proc
            if proc.poll() is not None:
                raise AssertionError(f"celery worker exited:\n{self.log(name)}")
            time.sleep(0.2)
        raise AssertionError(f"celery worker did not become ready:\n{self.log(name)}")

    def celery_beat(self, name: str = "beat") -> subprocess.Popen[str]:
        return self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "example_project",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.tmp_path / "celerybeat-schedule"),
            ],
        )

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM) -> None:
        for label, proc in list(self.processes):
            if name is not None and label != name:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            if name is not None:
                self.processes.remove((label, proc))


@contextmanager
def cluster(tmp_path: Path, env: dict[str, str], *, migrate: bool = True) -> Iterator[Cluster]:
    """Migrate the site's database, then yield a Cluster that stops all it started."""
    if migrate:
        manage(env, "migrate", "--no-input")
    started = Cluster(env=env, tmp_path=tmp_path)
    try:
        yield started
    finally:
        started.stop()


def seed(env: dict[str, str]) -> dict[str, Any]:
    import json

    return dict(json.loads(manage(env, "seed_demo", "--json").stdout))


@contextmanager
def scratch_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named ``<prefix>_<random>`` on the server of
    ``postgres_url``; its URL; dropped afterwards. A name of its own for every use: CI runs
    the suite twice at once."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
