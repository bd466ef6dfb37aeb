"""Start the live demo's four services as separate processes and play the chain.

Used by ``manage.py demo_live`` and by the end-to-end tests. Each service is
its own process on its own loopback port; every hop is an HTTP call.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
ROLES = ("resource-server", "mcp-server1", "agent2", "agent1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    agent1: int
    agent2: int
    mcp: int
    resource: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())

    @property
    def agent1_url(self) -> str:
        return f"http://127.0.0.1:{self.agent1}/task"

    @property
    def agent2_url(self) -> str:
        return f"http://127.0.0.1:{self.agent2}/task"

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp}/mcp"

    @property
    def resource_prefix(self) -> str:
        return f"http://127.0.0.1:{self.resource}/api/"

    @property
    def resource_url(self) -> str:
        return f"http://127.0.0.1:{self.resource}/api/tasks/"


@dataclass
class Services:
    ports: Ports
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def log(self, role: str) -> str:
        path = self.logs.get(role)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def service_env(
    role: str, issuer: str, cast: dict[str, Any], ports: Ports, redis_url: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEMO_", "DJANGO_", "RESOURCE_"))}
    env.update({"DEMO_ISSUER": issuer, "IDP_ISSUER": issuer, "PYTHONUNBUFFERED": "1"})
    agents = cast["agents"]
    if role in ("agent1", "agent2", "mcp-server1"):
        agent = agents[role]
        env.update(
            {
                "DEMO_URI": agent["uri"],
                "DEMO_CLIENT_ID": agent["client_id"],
                "DEMO_CLIENT_SECRET": agent["client_secret"],
            }
        )
    if role == "agent1":
        env.update({"DEMO_NEXT_URL": ports.agent2_url, "DEMO_NEXT_AUDIENCE": agents["agent2"]["uri"]})
    elif role == "agent2":
        env["DEMO_NEXT_URL"] = ports.mcp_url  # exchanged with resource=<this URL> (RFC 8707)
    elif role == "mcp-server1":
        env.update({"DEMO_PUBLIC_URL": ports.mcp_url, "DEMO_NEXT_URL": ports.resource_url})
    elif role == "resource-server":
        rs = cast["resource_server"]
        env.update({"RESOURCE_SERVER_URI": rs["uri"], "DJANGO_SECRET_KEY": "resource-server-demo-only"})
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        else:
            env.update(
                {
                    "RESOURCE_INTROSPECTION": "fallback",
                    "RESOURCE_CLIENT_ID": rs["client_id"],
                    "RESOURCE_CLIENT_SECRET": rs["client_secret"],
                }
            )
    return env


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@contextmanager
def services(
    issuer: str,
    cast: dict[str, Any],
    ports: Ports,
    log_dir: Path,
    *,
    redis_url: str | None = None,
    timeout: float = 90,
):
    """Start the four services; stop them all on exit."""
    started = Services(ports)
    port_of = {
        "agent1": ports.agent1,
        "agent2": ports.agent2,
        "mcp-server1": ports.mcp,
        "resource-server": ports.resource,
    }
    try:
        for role in ROLES:
            path = log_dir / f"{role}.log"
            log: TextIO
            with open(path, "w") as log:
                started.logs[role] = path
                started.processes[role] = subprocess.Popen(
                    [sys.executable, "-m", "example_project.demo_services.serve", role, str(port_of[role])],
                    cwd=ROOT,
                    env=service_env(role, issuer, cast, ports, redis_url),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for role in ROLES:
            if not _wait_port(port_of[role], started.processes[role], timeout):
                raise RuntimeError(f"{role} did not start:\n{started.log(role)}")
        yield started
    finally:
        started.stop()


def ask_agent1(ports: Ports, user_token: str) -> dict[str, Any]:
    """The user's side: hand agent1 the task with the user's token (aud agent1)."""
    response = httpx.post(ports.agent1_url, headers={"Authorization": f"Bearer {user_token}"}, timeout=120)
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"agent1 answered {response.status_code}: {body}")
    return dict(body)


def hops(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The nested trace flattened: agent1, agent2, mcp-server1, resource server."""
    flat = []
    node: Any = trace
    while isinstance(node, dict) and "party" in node:
        flat.append({k: v for k, v in node.items() if k != "downstream"})
        node = node.get("downstream")
    if isinstance(node, dict):
        flat.append({"party": node.get("resource_server"), "received": node.get("saw"), "answer": node})
    return flat
