"""The requests the benchmark sends, shared by the HTTP and the in-process runs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

# name -> what it is, in the table
DESCRIPTIONS = {
    "cc_hashed": "client credentials, PBKDF2-hashed secret (DOT default)",
    "cc_unhashed": "client credentials, unhashed secret",
    "exchange_d1": "token exchange, depth 1 (agent HMAC secret)",
    "exchange_d8": "token exchange, depth 8 (agent HMAC secret)",
}


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def requests(site: dict[str, Any]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """name -> (form body, headers)."""
    agents = site["agents"]
    out: dict[str, tuple[bytes, dict[str, str]]] = {}
    for name in ("hashed", "unhashed"):
        client = site["baselines"][name]
        out[f"cc_{name}"] = (
            urlencode({"grant_type": "client_credentials"}).encode(),
            {"Authorization": _basic(client["client_id"], client["client_secret"])},
        )
    for name, holder, token, audience in (
        ("exchange_d1", "a1", site["user_token"], agents["a2"]["uri"]),
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
    return out


def interleaved(names: list[str], rounds: int) -> Iterator[str]:
    """Every scenario once per round, each round in a rotated order, so drift on a
    shared machine spreads over all of them instead of favouring whichever ran first."""
    for round_ in range(rounds):
        shift = round_ % len(names)
        yield from names[shift:] + names[:shift]
