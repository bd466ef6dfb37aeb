"""A small closed-loop HTTP load generator: N clients, each one request at a time."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Sample:
    """Latencies (seconds) of the successful requests of one run, and what failed."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    #: each merged run's throughput and mean latency (ms), in order: the rounds of the benchmark
    rounds: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    def merge(self, other: Sample) -> None:
        """Add another run of the same scenario (the benchmark interleaves short rounds)."""
        self.latencies.extend(other.latencies)
        self.elapsed += other.elapsed
        mean = statistics.fmean(other.latencies) * 1000 if other.latencies else None
        self.rounds.append((other.throughput, mean))
        for key, count in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + count

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.ok,
            "errors": dict(self.errors),
            "seconds": round(self.elapsed, 3),
            "throughput_rps": round(self.throughput, 2),
            "mean_ms": round(statistics.fmean(self.latencies) * 1000, 3) if self.latencies else None,
            "p50_ms": round(self.percentile(50) * 1000, 3) if self.latencies else None,
            "p99_ms": round(self.percentile(99) * 1000, 3) if self.latencies else None,
            "rounds": [
                {"throughput_rps": round(rps, 2), "mean_ms": None if mean is None else round(mean, 3)}
                for rps, mean in self.rounds
            ],
        }


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    if response.getheader("Connection", "").lower() == "close":
        conn.close()
    return response.status


def run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float,
    warmup: int = 2,
    max_requests: int | None = None,
    sign: Callable[[], dict[str, str]] | None = None,
) -> Sample:
    """POST ``body`` to ``url`` from ``clients`` threads for ``seconds`` (keep-alive when the
    server allows it; gunicorn's sync worker closes every connection).

    ``sign`` returns headers every request needs anew (a DPoP proof); it is called before the
    request's clock starts, so its latency leaves the client's signing out. Throughput, the
    requests done in the run's wall time, includes it."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    sample = Sample()
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    go = threading.Event()
    stop_at = [0.0]
    budget = [max_requests if max_requests is not None else 1 << 60]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        for _ in range(warmup):
            _post(conn, path, body, {**headers, **sign()} if sign else headers)
        start_gate.wait()
        go.wait()
        mine: list[float] = []
        errors: dict[str, int] = {}
        while time.perf_counter() < stop_at[0]:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            sent = {**headers, **sign()} if sign else headers
            began = time.perf_counter()
            try:
                status = _post(conn, path, body, sent)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            took = time.perf_counter() - began
            if status == 200:
                mine.append(took)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()
        with lock:
            sample.latencies.extend(mine)
            for key, count in errors.items():
                sample.errors[key] = sample.errors.get(key, 0) + count

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    go.set()
    for thread in threads:
        thread.join()
    sample.elapsed = time.perf_counter() - began
    return sample


def request_once(
    url: str, method: str = "POST", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a new connection: (status, body). For the checks before measuring."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    try:
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})} if body else headers
        conn.request(method, parts.path or "/", body=body, headers=sent or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
