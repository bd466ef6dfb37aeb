"""TokenValidator on its own: no Django, a provider simulated with keys of our own."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_idp import jose
from delegation_idp.core.actchain import nest
from delegation_idp.resource_server.validation import (
    MAX_DOCUMENT_BYTES,
    ProviderUnavailable,
    ResourceServerConfig,
    TokenError,
    TokenValidator,
    same_resource,
)

ISSUER = "https://idp.example.com"
RS = "https://rs.example.com"


class FakeProvider:
    def __init__(self) -> None:
        self.key = jose.generate_key("ES256")
        self.jwks_body: bytes | None = None
        self.metadata_issuer = ISSUER
        self.requests: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(
                200, json={"issuer": self.metadata_issuer, "jwks_uri": f"{ISSUER}/.well-known/jwks.json"}
            )
        if request.url.path == "/.well-known/jwks.json":
            body = self.jwks_body or json.dumps({"keys": [self.key.public_jwk()]}).encode()
            return httpx.Response(200, content=body)
        return httpx.Response(404)

    def token(self, **overrides) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "user@example.com",
            "aud": RS,
            "exp": now + 300,
            "iat": now,
            "jti": "j1",
            "client_id": "c1",
            "scope": "tasks.read",
        }
        claims.update(overrides)
        return jose.sign({k: v for k, v in claims.items() if v is not None}, self.key)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def validator(provider: FakeProvider) -> TokenValidator:
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    return TokenValidator(ResourceServerConfig(issuer=ISSUER, resource=RS), http=http)


def test_chain_is_read_nearest_first(provider, validator):
    actors = ("https://mcp.example.com", "https://a2.example.com", "https://a1.example.com")
    token = validator.validate(provider.token(act=nest(actors)))
    assert token.actors == actors
    assert token.depth == 3 and token.actor == actors[0] and token.is_delegated
    assert token.scopes == frozenset({"tasks.read"}) and token.has_scopes("tasks.read")
    assert "ey" not in repr(token)  # the claims are not printed


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"client_id": None}, "missing_claim"),
        ({"jti": None}, "missing_claim"),
        ({"aud": ["https://other.example.com"]}, "bad_aud"),
        ({"iss": "https://idp.example.com/"}, "bad_iss"),  # exact match only
        ({"scope": ["tasks.read"]}, "malformed"),
        ({"act": {"sub": "x", "exp": 1}}, "bad_act"),
    ],
)
def test_claims_rules(provider, validator, overrides, reason):
    with pytest.raises(TokenError) as refused:
        validator.validate(provider.token(**overrides))
    assert refused.value.reason == reason
    assert refused.value.status == 401


def test_aud_list_containing_this_service_is_accepted(provider, validator):
    assert validator.validate(provider.token(aud=["https://other.example.com", RS])).audiences[1] == RS


def test_chain_deeper_than_the_limit_is_refused(provider, validator):
    deep = nest([f"https://a{i}.example.com" for i in range(6)])
    with pytest.raises(TokenError) as refused:
        validator.validate(provider.token(act=deep))
    assert refused.value.reason == "bad_act"


def test_a_key_of_another_algorithm_family_is_never_used(provider, validator):
    # A token signed with a key we do not publish, under the published kid.
    other = jose.generate_key("ES256")
    forged = jose.sign({"iss": ISSUER}, jose.SigningKey(kid=provider.key.kid, alg="ES256", jwk=other.jwk))
    with pytest.raises(TokenError) as refused:
        validator.validate(forged)
    assert refused.value.reason == "bad_signature"


def test_symmetric_and_private_keys_in_the_jwks_are_ignored(provider, validator):
    public = provider.key.public_jwk()
    private = json.loads(provider.key.jwk.export_private()) | {"kid": "priv", "alg": "ES256"}
    provider.jwks_body = json.dumps(
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hs", "alg": "HS256"}, private, public]}
    ).encode()
    assert validator.validate(provider.token()).subject == "user@example.com"
    assert set(validator.jwks._keys) == {provider.key.kid}


def test_metadata_naming_another_issuer_is_refused(provider, validator):
    provider.metadata_issuer = "https://evil.example.com"
    with pytest.raises(ProviderUnavailable) as refused:
        validator.validate(provider.token())
    assert refused.value.status == 503


def test_oversized_jwks_is_not_read(provider, validator):
    provider.jwks_body = b'{"keys": [' + b" " * (MAX_DOCUMENT_BYTES + 10) + b"]}"
    with pytest.raises(ProviderUnavailable):
        validator.validate(provider.token())


def test_config_refuses_symmetric_algorithms_and_incomplete_introspection():
    with pytest.raises(ValueError):
        ResourceServerConfig(issuer=ISSUER, resource=RS, algorithms=("HS256",))
    with pytest.raises(ValueError):
        ResourceServerConfig(issuer=ISSUER, resource=RS, introspection="always")
    config = ResourceServerConfig(
        issuer=ISSUER, resource=RS, introspection="always", client_id="x", client_secret="s3cr3t"
    )
    assert "s3cr3t" not in repr(config)


SEGMENT = r"[A-Za-z0-9_\-]{0,40}"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.from_regex(rf"{SEGMENT}\.{SEGMENT}\.{SEGMENT}"))
def test_any_garbage_is_a_token_error_and_never_a_crash(garbage):
    provider = FakeProvider()
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    validator = TokenValidator(ResourceServerConfig(issuer=ISSUER, resource=RS), http=http)
    with pytest.raises(TokenError):
        validator.validate(garbage)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.from_regex(r"https://[a-z]{1,12}\.example\.com", fullmatch=True), min_size=0, max_size=5))
def test_chain_round_trips_through_a_signed_token(actors):
    provider = FakeProvider()
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    validator = TokenValidator(ResourceServerConfig(issuer=ISSUER, resource=RS), http=http)
    token = validator.validate(provider.token(act=nest(actors)))
    assert token.actors == tuple(actors)
    assert token.depth == len(actors)


def test_cached_keys_keep_working_while_the_provider_is_down(provider):
    now = [1000.0]
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    config = ResourceServerConfig(issuer=ISSUER, resource=RS, jwks_cache_seconds=60, jwks_refresh_interval=5)
    validator = TokenValidator(config, http=http, monotonic=lambda: now[0])
    assert validator.validate(provider.token()).subject == "user@example.com"
    validator.jwks.http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    now[0] += 120  # the cache is stale and the provider answers 500
    assert validator.validate(provider.token()).subject == "user@example.com"
    # An unknown kid: no second fetch within the interval (401 unknown key), then one more
    # attempt, which fails: 503, the client's token may be fine.
    stranger = jose.sign({"iss": ISSUER}, jose.generate_key("ES256"))
    with pytest.raises(TokenError) as refused:
        validator.validate(stranger)
    assert refused.value.reason == "unknown_kid"
    now[0] += 6
    with pytest.raises(ProviderUnavailable):
        validator.validate(stranger)


# -- the URLs clients use: RFC 9728 ``resource``, RFC 8707 ``resource`` as ``aud`` ------------

URL = "https://api.example.com/tasks/"


def _with_urls(provider: FakeProvider, *urls: str) -> TokenValidator:
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    return TokenValidator(ResourceServerConfig(issuer=ISSUER, resource=RS, resource_urls=urls), http=http)


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize("aud", [URL, URL.rstrip("/"), [RS, URL], ["https://other.example.com", URL]])
def test_a_token_addressed_to_a_resource_url_is_accepted(provider, aud):
    """``aud`` naming the URL clients use (a trailing slash aside) is as good as the identity URI,
    and the token says which entry it was accepted under."""
    token = _with_urls(provider, URL).validate(provider.token(aud=aud))
    expected = RS if isinstance(aud, list) and RS in aud else (aud if isinstance(aud, str) else URL)
    assert token.audience == expected


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize(
    "aud",
    [
        "https://api.example.com/tasks/other",  # below the resource: another resource
        "https://api.example.com/task",
        "https://api.example.com/tasks//",  # only one trailing slash is set aside
        "https://api.example.com",  # the origin alone is not the resource
        "http://api.example.com/tasks/",  # another scheme
        "https://API.example.com/tasks/",  # compared as strings, like the identity URI
        "https://api.example.com/tasks/?x=1",
        RS + "/",  # the identity URI is compared exactly, as before
        ["https://other.example.com", "https://api.example.com/other/"],
    ],
)
def test_a_token_addressed_to_another_url_is_refused(provider, aud):
    with pytest.raises(TokenError) as refused:
        _with_urls(provider, URL).validate(provider.token(aud=aud))
    assert refused.value.reason == "bad_aud" and refused.value.status == 401


def test_without_resource_urls_only_the_identity_uri_is_accepted(provider, validator):
    with pytest.raises(TokenError) as refused:
        validator.validate(provider.token(aud=URL))
    assert refused.value.reason == "bad_aud"
    assert validator.validate(provider.token()).audience == RS


def test_resource_urls_given_for_one_call_count_for_that_call_only(provider, validator):
    """A Django site whose URL is derived from the request passes it per call: it is accepted
    then, and not afterwards (the validator is shared by every request)."""
    token = provider.token(aud=URL)
    assert validator.validate(token, resource_urls=(URL,)).audience == URL
    with pytest.raises(TokenError):
        validator.validate(token)


def test_avalidate_passes_the_resource_urls_on(provider, validator):
    token = asyncio.run(validator.avalidate(provider.token(aud=URL), resource_urls=[URL]))
    assert token.audience == URL


def test_every_other_check_still_applies_to_a_token_addressed_to_a_resource_url(provider):
    validator = _with_urls(provider, URL)
    for overrides, reason in (
        ({"iss": "https://evil.example.com"}, "bad_iss"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"client_id": None}, "missing_claim"),
    ):
        with pytest.raises(TokenError) as refused:
            validator.validate(provider.token(aud=URL, **overrides))
        assert refused.value.reason == reason
    forged = jose.sign({"iss": ISSUER, "aud": URL}, jose.generate_key("ES256"))
    with pytest.raises(TokenError) as refused:
        validator.validate(forged)
    assert refused.value.reason == "unknown_kid"


@pytest.mark.parametrize(
    "urls",
    [
        "https://api.example.com/tasks/",  # one string, not a sequence of URLs
        ("/tasks/",),
        ("api.example.com/tasks/",),
        ("ftp://api.example.com/",),
        ("https://api.example.com/tasks/#top",),
        (None,),
    ],
)
def test_config_refuses_what_is_not_a_resource_url(urls):
    with pytest.raises(ValueError):
        ResourceServerConfig(issuer=ISSUER, resource=RS, resource_urls=urls)


def test_config_keeps_resource_urls_as_a_tuple():
    config = ResourceServerConfig(issuer=ISSUER, resource=RS, resource_urls=[URL])  # type: ignore[arg-type]
    assert config.resource_urls == (URL,)


PATH = st.from_regex(r"(/[a-z0-9]{1,6}){0,3}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(PATH, PATH)
def test_same_resource_sets_one_trailing_slash_aside_and_nothing_else(first, second):
    a, b = "https://api.example.com" + first, "https://api.example.com" + second
    assert same_resource(a, a + "/") and same_resource(a + "/", a)
    assert not same_resource(a, a + "//") and not same_resource(a, a + "/x")
    assert same_resource(a + "/", b) == (first == second) == same_resource(b, a)


# -- DPoP-bound tokens (RFC 9449 section 6.1) ---------------------------------------------------

JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


@pytest.mark.rfc("9449-6.1")
def test_a_bound_tokens_thumbprint_is_read_from_cnf(provider, validator):
    delegated = validator.verify(provider.token(cnf={"jkt": JKT}))
    assert delegated.jkt == JKT and delegated.is_bound
    assert validator.verify(provider.token()).jkt is None


@pytest.mark.rfc("9449-7.2")
def test_a_bound_token_validated_as_a_bearer_token_is_refused(provider, validator):
    with pytest.raises(TokenError) as refused:
        validator.validate(provider.token(cnf={"jkt": JKT}))
    assert (refused.value.reason, refused.value.error, refused.value.status) == (
        "dpop_bound_token",
        "invalid_token",
        401,
    )


@pytest.mark.rfc("9449-6.1")
@pytest.mark.parametrize(
    "cnf",
    [
        {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},  # mTLS (RFC 8705): not checked here
        {"jkt": "short"},
        {"jkt": JKT + "="},
        {"jkt": JKT + "\n"},  # a pattern's "$" would let it through
        {"jkt": 7},
        "a string",
        [JKT],
        {},
    ],
)
def test_a_confirmation_this_service_cannot_check_refuses_the_token(provider, validator, cnf):
    """A sender-constrained token must never pass as a bearer one for want of understanding."""
    with pytest.raises(TokenError) as refused:
        validator.verify(provider.token(cnf=cnf))
    assert refused.value.reason == "bad_cnf"
