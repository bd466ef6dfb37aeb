"""The requests the benchmark sends, which site answers each, shared by the HTTP and the
in-process runs.

A DPoP scenario (RFC 9449) needs a new proof on every request (a fresh ``jti`` and ``iat``):
:func:`proof_signers` makes them, and the load generators call it just before each request,
outside the time they measure for it (bench.load.run, bench.inprocess)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass(frozen=True)
class Server:
    """One gunicorn instance: which settings and WSGI application, with which extra environment."""

    settings: str
    wsgi: str
    env: tuple[tuple[str, str], ...]
    stock: bool

    @property
    def project(self) -> bool:
        return not self.stock


SERVERS = {
    # The baseline: a stock django-oauth-toolkit site (bench/stock_settings.py), in its own database.
    "stock": Server(
        "bench.stock_settings", "bench.stock_wsgi:application", (("BENCH_STOCK_MIDDLEWARE", "bare"),), True
    ),
    "stock-mw": Server(
        "bench.stock_settings", "bench.stock_wsgi:application", (("BENCH_STOCK_MIDDLEWARE", "typical"),), True
    ),
    # This project's bench site (bench/settings.py): two instances on one database, one per
    # JWT_ACCESS_TOKENS mode.
    "project-all": Server(
        "bench.settings", "example_project.wsgi:application", (("BENCH_JWT_ACCESS_TOKENS", "all"),), False
    ),
    "project-agents": Server(
        "bench.settings", "example_project.wsgi:application", (("BENCH_JWT_ACCESS_TOKENS", "agents"),), False
    ),
}


@dataclass(frozen=True)
class Scenario:
    server: str  # a key of SERVERS
    token: str  # what the answer must carry: "jwt" or "opaque" (checked before measuring)
    description: str
    dpop: bool = False  # a DPoP proof with every request, and a token bound to its key (checked)


SCENARIOS = {
    "stock_unhashed": Scenario(
        "stock", "opaque", "stock django-oauth-toolkit, client credentials, unhashed secret, no middleware"
    ),
    "stock_unhashed_mw": Scenario(
        "stock-mw",
        "opaque",
        "stock django-oauth-toolkit, client credentials, unhashed secret, startproject's middleware",
    ),
    "stock_hashed": Scenario(
        "stock",
        "opaque",
        "stock django-oauth-toolkit, client credentials, PBKDF2-hashed secret (DOT default), no middleware",
    ),
    "exchange_d1": Scenario(
        "project-all", "jwt", "this project: token exchange, depth 1 (agent HMAC secret)"
    ),
    "exchange_d1_dpop": Scenario(
        "project-all",
        "jwt",
        "this project: token exchange, depth 1, DPoP: a1 proves the key its subject token is bound "
        "to, and the new token is bound to it (RFC 9449)",
        dpop=True,
    ),
    "exchange_d8": Scenario(
        "project-all", "jwt", "this project: token exchange, depth 8 (agent HMAC secret)"
    ),
    "project_cc_agents": Scenario(
        "project-agents",
        "opaque",
        "this project: client credentials, non-agent application, unhashed secret, "
        'JWT_ACCESS_TOKENS="agents" (opaque token)',
    ),
    "project_cc_all": Scenario(
        "project-all",
        "jwt",
        "this project: client credentials, non-agent application, unhashed secret, "
        'JWT_ACCESS_TOKENS="all" (JWT)',
    ),
}
# name -> what it is, in the table
DESCRIPTIONS = {name: s.description for name, s in SCENARIOS.items()}


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _client_credentials(client: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return (
        urlencode({"grant_type": "client_credentials"}).encode(),
        {"Authorization": _basic(client["client_id"], client["client_secret"])},
    )


def requests(
    site: dict[str, Any], stock: dict[str, Any] | None = None
) -> dict[str, tuple[bytes, dict[str, str]]]:
    """name -> (form body, headers): the project's scenarios from its cast ``site``
    (bench.site), the stock site's from ``stock`` (bench.stock_site) when given."""
    agents = site["agents"]
    out: dict[str, tuple[bytes, dict[str, str]]] = {}
    if stock is not None:
        out["stock_unhashed"] = out["stock_unhashed_mw"] = _client_credentials(stock["unhashed"])
        out["stock_hashed"] = _client_credentials(stock["hashed"])
    for name, holder, token, audience in (
        ("exchange_d1", "a1", site["user_token"], agents["a2"]["uri"]),
        ("exchange_d1_dpop", "a1", site.get("user_token_dpop", ""), agents["a2"]["uri"]),
        ("exchange_d8", "a8", site["depth7_token"], agents["a9"]["uri"]),
    ):
        body = urlencode(
            {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": audience,
            }
        ).encode()
        out[name] = (
            body,
            {"Authorization": _basic(agents[holder]["client_id"], agents[holder]["client_secret"])},
        )
    out["project_cc_agents"] = out["project_cc_all"] = _client_credentials(site["baselines"]["unhashed"])
    return {name: out[name] for name in SCENARIOS if name in out}


ProofSigner = Callable[[str], dict[str, str]]


def proof_signers(site: dict[str, Any]) -> dict[str, ProofSigner]:
    """name -> a function of the token endpoint's URL that returns the ``DPoP`` header of one
    request of that scenario (a new proof signed with a1's key: the client's side of the cost)."""
    jwk = site["agents"]["a1"].get("dpop_jwk")
    if not jwk:
        return {}
    from delegation_idp.client import DPoPKey

    key = DPoPKey.from_jwk(jwk)
    return {name: (lambda url: {"DPoP": key.proof("POST", url)}) for name, s in SCENARIOS.items() if s.dpop}


def token_kind(access_token: str) -> str:
    """``"jwt"`` for a compact JWS whose header names an ``alg``, else ``"opaque"``."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return "opaque"
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        return "opaque"
    return "jwt" if isinstance(header, dict) and "alg" in header else "opaque"


def interleaved(names: list[str], rounds: int) -> Iterator[str]:
    """Every scenario once per round, each round in a rotated order, so drift on a
    shared machine spreads over all of them instead of favouring whichever ran first."""
    for round_ in range(rounds):
        shift = round_ % len(names)
        yield from names[shift:] + names[:shift]
