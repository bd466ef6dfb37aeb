"""A private ``redis-server`` on a free loopback port, for fault tests that stop it.

The machine's Redis is shared and must never be stopped; this one belongs to the
test. ``stop()`` sends SIGSTOP: the kernel still accepts connections on the port
(the listen backlog), but nothing answers, which is how a hung Redis looks to a
client. ``cont()`` resumes it. Import the fixture into a test module::

    from tests.cluster.private_redis import private_redis  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, free_port


@dataclass
class PrivateRedis:
    process: subprocess.Popen[bytes]
    port: int
    stopped: bool = False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        """SIGSTOP: hung, not dead."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.stopped = False


def start_redis(workdir: Path) -> PrivateRedis:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true requires it")
        pytest.skip(f"{message}; this test runs in CI (CI=true), where it is required")
    port = free_port()
    log = open(workdir / f"redis-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--daemonize", "no", "--dir", str(workdir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return PrivateRedis(process, port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"private redis-server on port {port} did not start")


def stop_redis(server: PrivateRedis) -> None:
    if server.stopped:
        server.cont()
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private Redis for one test, resumed (if stopped) and terminated afterwards."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        stop_redis(server)


@pytest.fixture(scope="module")
def module_private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A private Redis for a module's tests (a cluster that outlives one test)."""
    server = start_redis(tmp_path_factory.mktemp("private-redis"))
    try:
        yield server
    finally:
        stop_redis(server)
