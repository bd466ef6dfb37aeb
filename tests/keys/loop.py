"""A client loop in its own process: ``python -m tests.keys.loop ISSUER CAST_JSON SECONDS``.

It plays a user and the seed's agents against a running provider and verifies
every token as a resource server would: with the JWKS, cached for exactly the
``max-age`` the provider announced and never refetched early, keys chosen by
``kid``. Each round: a user token when the last one nears its end, two
exchanges, an introspection, and a re-verification of every earlier token that
still lives. Prints one JSON document: rounds, failures, kids seen, JWKS fetches.
Tokens are never printed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx


def main() -> None:
    import django

    django.setup()
    from delegation_idp import jose
    from delegation_idp.client import AgentClient
    from example_project.demo_services.management.commands.demo import user_token

    issuer, cast, seconds = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    agents = cast["agents"]
    clients = {n: AgentClient(issuer, a["client_id"], a["client_secret"]) for n, a in agents.items()}
    cache: dict[str, Any] = {"keys": {}, "expires": float("-inf"), "fetches": 0}
    kids_published: set[str] = set()

    def resolve(kid: str) -> jose.SigningKey | None:
        if time.monotonic() >= cache["expires"]:
            started = time.monotonic()  # the age counts from before the request: conservative
            response = httpx.get(f"{issuer}/.well-known/jwks.json", timeout=30)
            response.raise_for_status()
            max_age = int(response.headers["Cache-Control"].split("max-age=")[1].split(",")[0])
            cache["keys"] = {k["kid"]: jose.public_key(k) for k in response.json()["keys"]}
            cache["expires"] = started + max_age
            cache["fetches"] += 1
            kids_published.update(cache["keys"])
        return cache["keys"].get(kid)

    def verify(token: str, audience: str) -> dict[str, Any]:
        header, claims = jose.verify(
            token,
            resolve,
            algorithms=["ES256", "RS256", "EdDSA"],
            max_bytes=8192,
            max_header_bytes=1024,
            max_json_depth=16,
        )
        jose.validate_claims(claims, issuer=issuer, now=time.time(), leeway=0, audience=audience)
        return {"kid": header["kid"], "exp": claims["exp"]}

    failures: list[str] = []
    kids: list[str] = []
    live: list[tuple[str, str, float]] = []
    user, user_exp, rounds, reverified = "", 0.0, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        step = "start"
        try:
            if user_exp - time.time() < 6:
                step = "user token"
                user = user_token(issuer, cast)
                info = verify(user, agents["agent1"]["uri"])
                user_exp = info["exp"]
                live.append((user, agents["agent1"]["uri"], info["exp"]))
            step = "exchange agent1"
            first = (
                clients["agent1"]
                .exchange(user, audience=agents["agent2"]["uri"], use_cache=False)
                .access_token
            )
            step = "verify agent2 token"
            info = verify(first, agents["agent2"]["uri"])
            if not kids or kids[-1] != info["kid"]:
                kids.append(info["kid"])
            live.append((first, agents["agent2"]["uri"], info["exp"]))
            step = "introspect"
            if clients["agent2"].introspect(first).get("active") is not True:
                raise AssertionError("introspection says inactive")
            step = "exchange agent2"
            second = (
                clients["agent2"]
                .exchange(first, audience=agents["mcp-server1"]["uri"], use_cache=False)
                .access_token
            )
            step = "verify mcp token"
            info = verify(second, agents["mcp-server1"]["uri"])
            live.append((second, agents["mcp-server1"]["uri"], info["exp"]))
            step = "re-verify live tokens"
            live = [item for item in live if item[2] - time.time() > 1.5]
            for token, audience, _exp in live:
                verify(token, audience)
                reverified += 1
            rounds += 1
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none hidden
            reason = getattr(exc, "reason", "") or getattr(exc, "error", "") or type(exc).__name__
            failures.append(f"{step}: {reason}")
        time.sleep(0.05)
    print(
        json.dumps(
            {
                "rounds": rounds,
                "failures": failures,
                "kids": kids,
                "kids_published": sorted(kids_published),
                "jwks_fetches": cache["fetches"],
                "reverified": reverified,
            }
        )
    )


if __name__ == "__main__":
    main()
