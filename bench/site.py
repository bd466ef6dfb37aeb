"""Build the benchmark's cast in a fresh database; run as ``python -m bench.site`` by bench.run.

Prints JSON: ``baselines["unhashed"]``, a non-agent client-credentials application with
an unhashed secret (the stock django-oauth-toolkit baseline is another site:
bench/stock_site.py), nine agents ``a1`` ... ``a9`` whose rules form one chain, and the
subject tokens the exchanges start from: ``user_token`` (held by a1, no ``act``),
``depth7_token`` (held by a8, seven actors deep) and ``user_token_dpop`` (held by a1 and bound
to a1's DPoP key, RFC 9449: a1 redeemed its code with a proof; the key's private JWK is
``agents["a1"]["dpop_jwk"]``, for the load generator's proofs). Built with
``JWT_ACCESS_TOKENS="all"`` (bench/settings.py's default), so the subject tokens are JWTs.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Any
from urllib.parse import urlencode

CHAIN_LENGTH = 9  # a1 ... a9: a8 exchanging the depth-7 token makes a depth-8 token
RESOURCE = "https://resource.bench.example.com"
SCOPE = "tasks.read tasks.write"
FORM = "application/x-www-form-urlencoded"


def agent_uri(i: int) -> str:
    return f"https://a{i}.bench.example.com"


def _token(client: Any, data: dict[str, str], client_id: str, secret: str, dpop_key: Any = None) -> str:
    import base64

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    extra = {"HTTP_DPOP": dpop_key.proof("POST", "http://testserver/o/token/")} if dpop_key else {}
    response = client.post(
        "/o/token/", urlencode(data), content_type=FORM, HTTP_AUTHORIZATION=f"Basic {basic}", **extra
    )
    if response.status_code != 200:
        raise SystemExit(f"bench setup: token request failed: {response.status_code} {response.content!r}")
    if dpop_key is not None and response.json().get("token_type") != "DPoP":
        raise SystemExit("bench setup: the provider did not bind the token to the proof's key (DPoP)")
    return str(response.json()["access_token"])


def build() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from oauth2_provider.models import get_application_model

    from delegation_idp import TOKEN_EXCHANGE_GRANT
    from delegation_idp.client import DPoPKey
    from delegation_idp.models import Party
    from delegation_idp.provider import keys
    from delegation_idp.provider.agents import allow, register_party
    from tests.conftest import ACCESS_TOKEN_TYPE, Agent, authorize_code

    keys.ensure_current_key()
    Application = get_application_model()
    user = get_user_model().objects.create_user("bench", "bench@example.com", secrets.token_urlsafe(16))

    secret = secrets.token_urlsafe(32)
    app = Application.objects.create(
        name="bench unhashed",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=False,
    )
    app.refresh_from_db()
    if app.client_secret != secret:
        raise SystemExit("bench setup: the unhashed baseline's secret was not stored as it is")
    baselines = {"unhashed": {"client_id": app.client_id, "client_secret": secret, "stored": "plain"}}

    agents: dict[str, dict[str, str]] = {}
    parties: list[Party] = []
    for i in range(1, CHAIN_LENGTH + 1):
        redirect = f"{agent_uri(i)}/callback" if i == 1 else ""
        reg = register_party(agent_uri(i), f"Bench agent {i}", redirect_uris=redirect)
        parties.append(reg.party)
        agents[f"a{i}"] = {
            "client_id": reg.client_id,
            "client_secret": reg.client_secret or "",
            "uri": agent_uri(i),
            "stored": Application.objects.get(client_id=reg.client_id).client_secret.split("$")[0],
        }
    resource = Party.objects.create(uri=RESOURCE, name="Bench resource", kind=Party.RESOURCE_SERVER)
    for i, party in enumerate(parties):
        target = parties[i + 1] if i + 1 < len(parties) else resource
        allow(party, [target], SCOPE, direct_from_user=(i == 0), upstream=parties[i - 1 : i] if i else None)

    client = Client()
    a1 = agents["a1"]

    def user_token_of_a1(dpop_key: Any = None) -> str:
        code, verifier = authorize_code(
            client,
            Agent("a1", a1["client_id"], a1["client_secret"], a1["uri"], f"{a1['uri']}/callback"),
            user,
            SCOPE,
        )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": f"{a1['uri']}/callback",
            "code_verifier": verifier,
        }
        return _token(client, form, a1["client_id"], a1["client_secret"], dpop_key)

    user_token = user_token_of_a1()
    a1_key = DPoPKey.generate("ES256")
    user_token_dpop = user_token_of_a1(a1_key)
    a1["dpop_jwk"] = a1_key.private_jwk()  # the load generator's, in the run's temporary directory
    token = user_token
    for i in range(1, 8):  # a1 ... a7 pass the task on: the token a8 holds has seven actors
        holder = agents[f"a{i}"]
        token = _token(
            client,
            {
                "grant_type": TOKEN_EXCHANGE_GRANT,
                "subject_token": token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": agent_uri(i + 1),
            },
            holder["client_id"],
            holder["client_secret"],
        )
    return {
        "baselines": baselines,
        "agents": agents,
        "resource": RESOURCE,
        "user_token": user_token,
        "user_token_dpop": user_token_dpop,
        "depth7_token": token,
    }


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    json.dump(build(), sys.stdout)


if __name__ == "__main__":
    main()
