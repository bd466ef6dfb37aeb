"""The agent client's DPoP (RFC 9449): its key, proofs at the token endpoint for every grant,
``use_dpop_nonce`` retried once, the latest nonce reused, and bound tokens presented to
resource servers with a proof. Against fakes of the provider's and a resource server's
contract (httpx mock transports) that check each proof with the project's own section 4.3
checks (:func:`delegation_idp.rfc9449.check_proof`)."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import time
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_idp import jose
from delegation_idp.client import (
    AgentClient,
    AsyncAgentClient,
    DPoPAuth,
    DPoPKey,
    InvalidDPoPProof,
    OAuthError,
    UseDPoPNonce,
)
from delegation_idp.rfc9449 import MemoryReplayStore, NonceIssuer, ProofError, ProofPolicy, check_proof

ISSUER = "https://idp.example.com"
TOKEN_URL = f"{ISSUER}/o/token/"
API = "https://api.example.com/tasks/"


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT (the client reads claims only for display and cnf)."""
    return f"e30.{jose.b64url(json.dumps(claims).encode())}.c2ln"


class FakeProvider:
    """The provider's token endpoint contract: a valid proof binds the token (``cnf.jkt``,
    ``token_type`` ``DPoP``); a bad one is ``400 invalid_dpop_proof``; with nonces on, a proof
    without the current nonce is ``400 use_dpop_nonce`` and every answer carries the current
    nonce. ``rotate()`` moves to the next nonce window."""

    def __init__(
        self,
        *,
        nonces: bool = False,
        bind_to: str | None = None,
        algorithms: tuple[str, ...] = ("ES256", "ES384", "EdDSA", "PS256", "RS256"),
    ) -> None:
        self.window = 1000
        self.algorithms = algorithms
        self.issuer = NonceIssuer(b"test-secret", lifetime=10, label="token") if nonces else None
        self.replay = MemoryReplayStore()
        self.requests: list[httpx.Request] = []
        self.proofs: list[dict[str, Any]] = []
        self.bind_to = bind_to  # a thumbprint to bind to instead of the proof's (a broken provider)
        self.always_nonce = False  # refuse every proof for want of a new nonce

    def now(self) -> float:
        return self.window * 10 + 1

    def rotate(self) -> None:
        self.window += 1

    def nonce(self) -> str | None:
        return self.issuer.current(self.now()) if self.issuer else None

    def policy(self) -> ProofPolicy:
        issuer, now = self.issuer, self.now()
        return ProofPolicy(
            algorithms=self.algorithms,
            replay=self.replay,
            accepts_nonce=(lambda n: issuer.accepts(n, now)) if issuer else None,
        )

    def answer(self, status: int, body: dict[str, Any]) -> httpx.Response:
        headers = {"Cache-Control": "no-store"}
        if self.nonce():
            headers["DPoP-Nonce"] = self.nonce()
        return httpx.Response(status, json=body, headers=headers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "token_endpoint": TOKEN_URL,
                    "introspection_endpoint": f"{ISSUER}/o/introspect/",
                    "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
                },
            )
        self.requests.append(request)
        form = dict(parse_qsl(request.content.decode()))
        jkt = None
        if "dpop" in request.headers:
            self.proofs.append(
                jose.unverified_claims(request.headers["dpop"], max_bytes=8192, max_json_depth=4)
            )
            if self.always_nonce:
                self.rotate()
                return self.answer(400, {"error": "use_dpop_nonce"})
            try:
                # The time the proof names is the client's; the fake's clock is for nonces only.
                proof = check_proof(
                    request.headers.get_list("dpop"),
                    method=request.method,
                    url=str(request.url),
                    now=time.time(),
                    policy=self.policy(),
                )
            except ProofError as exc:
                return self.answer(400, {"error": exc.code, "error_description": exc.reason})
            jkt = self.bind_to or proof.jkt
        claims: dict[str, Any] = {"jti": f"t{len(self.requests)}", "grant": form.get("grant_type")}
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        return self.answer(
            200,
            {
                "access_token": jwt(claims),
                "token_type": "DPoP" if jkt else "Bearer",
                "expires_in": 300,
                "scope": "tasks.read",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            },
        )


class FakeResource:
    """A resource server's contract: ``Authorization: DPoP <token>`` with a proof whose
    ``ath`` is the token's hash and whose key is the token's ``cnf.jkt``; with nonces on,
    ``401`` with a ``DPoP`` challenge ``error="use_dpop_nonce"`` and a ``DPoP-Nonce``."""

    def __init__(self, *, nonces: bool = False) -> None:
        self.nonces = NonceIssuer(b"rs-secret", lifetime=10, label="resource") if nonces else None
        self.replay = MemoryReplayStore()
        self.seen: list[httpx.Request] = []
        self.window = 2000

    def rotate(self) -> None:
        self.window += 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        now = self.window * 10 + 1
        issuer = self.nonces
        nonce_headers = {"DPoP-Nonce": issuer.current(now)} if issuer else {}
        if scheme != "DPoP":
            return httpx.Response(401, headers={"WWW-Authenticate": 'DPoP algs="ES256"', **nonce_headers})
        policy = ProofPolicy(
            algorithms=("ES256", "EdDSA"),
            replay=self.replay,
            accepts_nonce=(lambda n: issuer.accepts(n, now)) if issuer else None,
        )
        try:
            proof = check_proof(
                request.headers.get_list("dpop"),
                method=request.method,
                url=str(request.url),
                now=time.time(),
                policy=policy,
                access_token=token,
            )
        except ProofError as exc:
            challenge = f'DPoP error="{exc.code}", algs="ES256 EdDSA"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge, **nonce_headers})
        if jose.unverified_claims(token, max_bytes=8192, max_json_depth=4)["cnf"]["jkt"] != proof.jkt:
            return httpx.Response(401, headers={"WWW-Authenticate": 'DPoP error="invalid_token"'})
        return httpx.Response(200, json={"served": proof.jkt}, headers=nonce_headers)


def agent_for(provider: FakeProvider, dpop: DPoPKey | bool = True) -> AgentClient:
    return AgentClient(
        ISSUER, "agent1", "s3cret", http=httpx.Client(transport=httpx.MockTransport(provider)), dpop=dpop
    )


SUBJECT = jwt({"jti": "subject-1", "aud": "https://agent1.example.com"})


# -- the key ---------------------------------------------------------------------------------


@pytest.mark.rfc("9449-4.2")
@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "PS256"])
def test_a_key_proves_with_its_public_jwk_and_its_thumbprint_is_rfc7638(alg):
    key = DPoPKey.generate(alg)
    proof = key.proof("post", "https://idp.example.com/o/token/?x=1#frag", now=time.time())
    checked = check_proof(
        [proof],
        method="POST",
        url="https://idp.example.com/o/token/",
        now=time.time(),
        policy=ProofPolicy(algorithms=(alg,), replay=MemoryReplayStore()),
    )
    assert checked.jkt == key.jkt == jose.thumbprint(key.public_jwk())
    claims = jose.unverified_claims(proof, max_bytes=8192, max_json_depth=4)
    assert claims["htu"] == "https://idp.example.com/o/token/"  # no query, no fragment
    assert claims["htm"] == "POST" and "ath" not in claims and "nonce" not in claims
    assert (
        "d"
        not in jose.peek_header(
            proof,
            algorithms=[alg],
            max_bytes=8192,
            max_header_bytes=4096,
            expected_typ=None,
            require_kid=False,
            members=jose.PROOF_HEADER_MEMBERS,
        )["jwk"]
    )


def test_a_key_never_shows_its_private_part():
    key = DPoPKey.generate()
    private = json.loads(key.private_jwk())
    assert repr(key) == f"DPoPKey(alg='ES256', jkt={key.jkt!r})"
    agent = AgentClient(ISSUER, "agent1", "s3cret", dpop=key)
    for shown in (repr(key), str(key), repr(agent), repr(DPoPAuth("the-access-token", key))):
        assert private["d"] not in shown and "s3cret" not in shown and "the-access-token" not in shown
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_a_kept_key_loads_with_the_same_thumbprint_and_needs_its_private_part():
    key = DPoPKey.generate("EdDSA")
    again = DPoPKey.from_jwk(key.private_jwk())
    assert (again.jkt, again.alg) == (key.jkt, "EdDSA")
    assert DPoPKey.from_jwk(json.loads(DPoPKey.generate("ES384").private_jwk())).alg == "ES384"
    with pytest.raises(ValueError, match="private"):
        DPoPKey.from_jwk(json.dumps(key.public_jwk()))


@pytest.mark.rfc("9449-4.3")
@settings(max_examples=40, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "patch"]),
    path=st.text(alphabet="abcdefghij/-_.~0123456789", max_size=30),
    query=st.text(alphabet="abc=&%20xyz", max_size=20),
    fragment=st.text(alphabet="abc", max_size=5),
)
def test_every_proof_matches_the_request_it_was_made_for_and_no_other(method, path, query, fragment):
    key = DPoPKey.generate()
    url = (
        f"https://api.example.com/{path}"
        + (f"?{query}" if query else "")
        + (f"#{fragment}" if fragment else "")
    )
    policy = ProofPolicy(algorithms=("ES256",), replay=MemoryReplayStore())
    proof = key.proof(method, url, access_token="tok")
    checked = check_proof([proof], method=method, url=url, now=time.time(), policy=policy, access_token="tok")
    assert checked.jkt == key.jkt
    for other in ({"method": "HEAD"}, {"url": "https://api.example.com/other/x"}, {"access_token": "tik"}):
        args = {"method": method, "url": url, "access_token": "tok", **other}
        with pytest.raises(ProofError):
            check_proof(
                [key.proof(method, url, access_token="tok")],
                now=time.time(),
                policy=policy,
                **args,
            )


# -- the token endpoint ----------------------------------------------------------------------


@pytest.mark.rfc("9449-5")
def test_an_exchange_with_a_key_sends_a_proof_and_gets_a_token_bound_to_it():
    provider = FakeProvider()
    agent = agent_for(provider)
    result = agent.exchange(SUBJECT, audience="https://agent2.example.com")
    assert result.token_type == "DPoP" and result.jkt == agent.dpop_key.jkt
    assert jose.unverified_claims(result.access_token, max_bytes=8192, max_json_depth=4)["cnf"] == {
        "jkt": agent.dpop_key.jkt
    }
    (proof,) = provider.proofs
    assert (proof["htm"], proof["htu"]) == ("POST", TOKEN_URL) and "ath" not in proof
    assert result.access_token not in repr(result) and agent.dpop_key.jkt in repr(result)


def test_a_bearer_agent_sends_no_proof_and_keeps_the_old_api():
    provider = FakeProvider()
    agent = agent_for(provider, dpop=False)
    result = agent.exchange(SUBJECT, audience="https://agent2.example.com")
    assert agent.dpop_key is None and result.token_type == "Bearer" and result.jkt is None
    assert "dpop" not in provider.requests[0].headers
    assert agent.auth(result).__class__.__name__ == "BearerAuth"


@pytest.mark.rfc("9449-5")
def test_every_grant_carries_a_proof_with_a_fresh_jti():
    provider = FakeProvider()
    agent = agent_for(provider)
    assert agent.client_credentials()["token_type"] == "DPoP"
    code = agent.authorization_code(
        "c0de", redirect_uri="https://agent1.example.com/cb", code_verifier="v" * 43
    )
    assert code["token_type"] == "DPoP"
    assert agent.refresh("r3fresh")["token_type"] == "DPoP"
    agent.exchange(SUBJECT, audience="https://agent2.example.com")
    grants = [dict(parse_qsl(r.content.decode()))["grant_type"] for r in provider.requests]
    assert grants == [
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ]
    assert len({p["jti"] for p in provider.proofs}) == 4


@pytest.mark.rfc("9449-8")
def test_use_dpop_nonce_is_retried_once_with_the_servers_nonce_which_is_then_reused():
    provider = FakeProvider(nonces=True)
    agent = agent_for(provider)
    agent.exchange(SUBJECT, audience="https://agent2.example.com")
    assert len(provider.requests) == 2  # refused for want of a nonce, then accepted with it
    assert "nonce" not in provider.proofs[0] and provider.proofs[1]["nonce"] == provider.nonce()
    agent.client_credentials()
    assert len(provider.requests) == 3  # the nonce it kept is good: no second round trip
    assert provider.proofs[2]["nonce"] == provider.nonce()
    # The nonce rotates twice: the one kept is stale, refused once, and the retry carries the new one.
    provider.rotate()
    provider.rotate()
    agent.client_credentials()
    assert len(provider.requests) == 5
    assert provider.proofs[4]["nonce"] == provider.nonce() != provider.proofs[3]["nonce"]


@pytest.mark.rfc("9449-8.2")
def test_a_nonce_sent_with_a_success_goes_into_the_next_proof():
    provider = FakeProvider(nonces=True)
    agent = agent_for(provider)
    agent.client_credentials()
    provider.rotate()  # the next answer names the next window's nonce; the kept one still works
    agent.client_credentials()
    agent.client_credentials()
    assert provider.proofs[-1]["nonce"] == provider.nonce() != provider.proofs[-2]["nonce"]


@pytest.mark.rfc("9449-8")
def test_the_nonce_retry_happens_once_only_and_ends_in_a_typed_error():
    provider = FakeProvider(nonces=True)
    provider.always_nonce = True
    agent = agent_for(provider)
    with pytest.raises(UseDPoPNonce) as refused:
        agent.client_credentials()
    assert refused.value.status == 400 and len(provider.requests) == 2


def test_a_refused_nonce_that_the_server_sends_again_is_not_retried():
    def same_nonce(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("oauth-authorization-server"):
            return FakeProvider()(request)
        same_nonce.calls += 1  # type: ignore[attr-defined]
        return httpx.Response(400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n1"})

    same_nonce.calls = 0  # type: ignore[attr-defined]
    agent = AgentClient(
        ISSUER, "agent1", "s3cret", http=httpx.Client(transport=httpx.MockTransport(same_nonce)), dpop=True
    )
    agent.nonces._latest["https://idp.example.com"] = "n1"  # already sent n1
    with pytest.raises(UseDPoPNonce):
        agent.client_credentials()
    assert same_nonce.calls == 1  # n1 again: retrying would change nothing


@pytest.mark.rfc("9449-5")
def test_a_refused_proof_is_a_typed_error_and_not_retried():
    provider = FakeProvider(nonces=True, algorithms=("ES256",))
    agent = agent_for(provider, dpop=DPoPKey.generate("EdDSA"))  # an algorithm it does not take
    with pytest.raises(InvalidDPoPProof) as refused:
        agent.client_credentials()
    assert refused.value.error == "invalid_dpop_proof" and refused.value.description == "dpop_bad_alg"
    assert len(provider.requests) == 1  # a new nonce would not help


@pytest.mark.rfc("9449-5")
def test_a_token_bound_to_another_key_is_refused_by_the_client():
    provider = FakeProvider(bind_to=DPoPKey.generate().jkt)
    agent = agent_for(provider)
    with pytest.raises(OAuthError) as refused:
        agent.exchange(SUBJECT, audience="https://agent2.example.com")
    assert refused.value.error == "invalid_response" and "another key" in refused.value.description


def test_proofs_and_tokens_never_reach_the_log(caplog):
    caplog.set_level(logging.DEBUG, logger="delegation_idp")
    provider = FakeProvider(nonces=True)
    agent = agent_for(provider)
    result = agent.exchange(SUBJECT, audience="https://agent2.example.com")
    secrets_seen = [result.access_token, SUBJECT, *(r.headers["dpop"] for r in provider.requests)]
    assert "nonce" in caplog.text  # the retry is logged ...
    assert not any(s in caplog.text for s in secrets_seen)  # ... without a token or a proof
    assert json.loads(agent.dpop_key.private_jwk())["d"] not in caplog.text


# -- resource servers ------------------------------------------------------------------------


@pytest.mark.rfc("9449-7.1")
def test_a_bound_token_goes_to_a_resource_server_with_a_proof_of_its_key_and_ath():
    provider, resource = FakeProvider(), FakeResource()
    agent = agent_for(provider)
    result = agent.exchange(SUBJECT, audience="https://api.example.com")
    with httpx.Client(transport=httpx.MockTransport(resource)) as http:
        answer = http.get(API + "?page=2", auth=agent.auth(result))
    assert answer.status_code == 200 and answer.json() == {"served": agent.dpop_key.jkt}
    (sent,) = resource.seen
    assert sent.headers["authorization"] == f"DPoP {result.access_token}"
    claims = jose.unverified_claims(sent.headers["dpop"], max_bytes=8192, max_json_depth=4)
    assert claims["ath"] == jose.token_hash(result.access_token) and claims["htm"] == "GET"
    assert claims["htu"] == API


@pytest.mark.rfc("9449-9")
def test_a_resource_servers_use_dpop_nonce_is_retried_once_and_its_nonce_kept():
    provider, resource = FakeProvider(), FakeResource(nonces=True)
    agent = agent_for(provider)
    result = agent.exchange(SUBJECT, audience="https://api.example.com")
    with httpx.Client(transport=httpx.MockTransport(resource)) as http:
        assert http.get(API, auth=agent.auth(result)).status_code == 200
        assert len(resource.seen) == 2  # 401 use_dpop_nonce, then the retry with the nonce
        assert http.post(API, auth=agent.auth(result)).status_code == 200
        assert len(resource.seen) == 3  # the kept nonce: one request
        resource.rotate()
        resource.rotate()
        assert http.get(API, auth=agent.auth(result)).status_code == 200
        assert len(resource.seen) == 5
    # The provider's nonces and the resource server's are kept apart (per origin).
    assert agent.nonces.get(TOKEN_URL) is None and agent.nonces.get(API) is not None


@pytest.mark.rfc("9449-9")
def test_a_second_nonce_refusal_from_a_resource_server_is_the_answer():
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        challenge = 'DPoP error="use_dpop_nonce", error_description="nonce"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge, "DPoP-Nonce": f"n{len(calls)}"})

    key = DPoPKey.generate()
    with httpx.Client(transport=httpx.MockTransport(refuse)) as http:
        assert http.get(API, auth=DPoPAuth("the-access-token", key)).status_code == 401
    assert len(calls) == 2
    # A Bearer challenge naming use_dpop_nonce is no DPoP challenge: not retried.
    calls.clear()

    def bearer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer error="use_dpop_nonce"', "DPoP-Nonce": "x"}
        )

    with httpx.Client(transport=httpx.MockTransport(bearer)) as http:
        assert http.get(API, auth=DPoPAuth("the-access-token", key)).status_code == 401
    assert len(calls) == 1


def test_auth_presents_only_tokens_bound_to_the_agents_own_key():
    agent = agent_for(FakeProvider())
    own = jwt({"jti": "a", "cnf": {"jkt": agent.dpop_key.jkt}})
    other = jwt({"jti": "b", "cnf": {"jkt": DPoPKey.generate().jkt}})
    assert isinstance(agent.auth(own), DPoPAuth)
    assert agent.auth(jwt({"jti": "c"})).__class__.__name__ == "BearerAuth"
    assert isinstance(agent.auth({"access_token": "opaque", "token_type": "DPoP"}), DPoPAuth)
    with pytest.raises(ValueError, match="another key"):
        agent.auth(other)
    with pytest.raises(ValueError, match="another key"):
        agent_for(FakeProvider(), dpop=False).auth(own)


# -- the async twin --------------------------------------------------------------------------


@pytest.mark.rfc("9449-8")
def test_the_async_client_proves_retries_the_nonce_and_calls_resource_servers():
    provider, resource = FakeProvider(nonces=True), FakeResource(nonces=True)
    key = DPoPKey.generate("EdDSA")

    async def run() -> tuple[Any, Any, int]:
        transport = httpx.MockTransport(provider)
        async with (
            httpx.AsyncClient(transport=transport) as http,
            AsyncAgentClient(ISSUER, "agent2", "s3cret", http=http, dpop=key) as agent,
        ):
            result = await agent.exchange(SUBJECT, resource=API)
            token = await agent.client_credentials()
            async with httpx.AsyncClient(transport=httpx.MockTransport(resource)) as api:
                answer = await api.get(API, auth=agent.auth(result))
            return result, token, answer.status_code

    result, token, status = asyncio.run(run())
    assert result.jkt == key.jkt and token["token_type"] == "DPoP" and status == 200
    assert len(provider.requests) == 3  # one nonce retry, then the nonce reused
    assert len(resource.seen) == 2
