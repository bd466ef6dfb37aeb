"""The DRF authentication class against tokens from the real provider (RFC 6750, 9068, 9728)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from delegation_idp.resource_server.validation import MAX_LEEWAY
from tests.helpers import decode

pytestmark = [pytest.mark.urls("tests.resource_server.urls")]

METADATA_URL = "http://testserver/.well-known/oauth-protected-resource"
MCP = "https://mcp-server1.example.com"
AGENT2 = "https://agent2.example.com"
AGENT1 = "https://agent1.example.com"


def challenge(response) -> dict[str, str]:
    header = response["WWW-Authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', header))


def call(client, token: str | None, path: str = "/api/whoami/", scheme: str = "Bearer"):
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {token}"} if token is not None else {}
    return client.get(path, **headers)


def assert_invalid_token(response, description: str) -> dict[str, str]:
    assert response.status_code == 401, response.content
    params = challenge(response)
    assert params["error"] == "invalid_token"
    assert description in params["error_description"]
    assert params["resource_metadata"] == METADATA_URL
    return params


@pytest.mark.rfc("9068-4")
def test_valid_token_exposes_the_typed_chain(client, chain, cast, resource_settings, use_validator):
    use_validator()
    response = call(client, chain[3])
    assert response.status_code == 200, response.content
    body = response.json()
    claims = decode(chain[3])[1]
    assert body["sub"] == "user@example.com" == body["user"]
    assert body["actors"] == [MCP, AGENT2, AGENT1]  # nearest first
    assert body["depth"] == 3
    assert body["jti"] == claims["jti"]
    assert body["client_id"] == cast["mcp-server1"].client_id == claims["client_id"]
    assert set(body["scope"].split()) == set(claims["scope"].split())
    assert body["aud"] == [cast.resource_server]


@pytest.mark.rfc("6750-3.1")
def test_no_token_is_challenged_without_an_error_code(client, cast, resource_settings, use_validator):
    use_validator()
    response = call(client, None)
    assert response.status_code == 401
    params = challenge(response)
    assert "error" not in params
    assert params["resource_metadata"] == METADATA_URL


def test_other_schemes_are_left_to_other_authentication(client, cast, resource_settings, use_validator):
    use_validator()
    response = call(client, "dXNlcjpwYXNz", scheme="Basic")
    assert response.status_code == 401
    assert "error" not in challenge(response)


@pytest.mark.parametrize("token", ["", "a b", "not-a-jwt", "x" * 9000, "a.b.c", "e30.e30.e30"])
def test_malformed_tokens_are_invalid_token(client, cast, resource_settings, use_validator, token):
    use_validator()
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"


@pytest.mark.rfc("9068-4")
def test_expired_token(client, chain, clock, resource_settings, use_validator):
    use_validator(leeway=30)
    exp = decode(chain[3])[1]["exp"]
    clock.at(exp + 31)
    assert_invalid_token(call(client, chain[3]), "expired")


@pytest.mark.rfc("9068-4")
def test_leeway_is_bounded(client, chain, clock, resource_settings, use_validator):
    exp = decode(chain[3])[1]["exp"]
    use_validator(leeway=10_000)  # configured absurdly; capped at MAX_LEEWAY
    clock.at(exp + MAX_LEEWAY - 5)
    assert call(client, chain[3]).status_code == 200
    clock.at(exp + MAX_LEEWAY + 5)
    assert_invalid_token(call(client, chain[3]), "expired")


@pytest.mark.rfc("9068-4")
def test_not_yet_valid_token(client, chain, clock, resource_settings, use_validator):
    use_validator(leeway=5)
    iat = decode(chain[3])[1]["iat"]
    clock.at(iat - 60)
    assert_invalid_token(call(client, chain[3]), "not valid yet")


@pytest.mark.rfc("9068-4")
def test_token_for_another_audience(client, chain, resource_settings, use_validator):
    use_validator()
    # The MCP server's own token, passed through instead of exchanged: refused.
    assert_invalid_token(call(client, chain[2]), "not addressed to this service")


@pytest.mark.rfc("9068-4")
def test_token_from_another_issuer(
    client, settings, cast, issue_user_token, exchange, resource_settings, use_validator
):
    # The same provider and keys under another issuer name: the signature verifies, `iss` does not.
    trusted = dict(settings.DELEGATION_IDP)
    settings.DELEGATION_IDP = {**trusted, "ISSUER": "http://impostor.example"}
    token = issue_user_token()
    for name, target in (("agent1", AGENT2), ("agent2", MCP), ("mcp-server1", cast.resource_server)):
        response = exchange(name, token, target)
        assert response.status_code == 200, response.content
        token = response.json()["access_token"]
    settings.DELEGATION_IDP = trusted
    assert decode(token)[1]["iss"] == "http://impostor.example"
    assert decode(token)[1]["aud"] == cast.resource_server
    use_validator()
    assert_invalid_token(call(client, token), "not issued by the trusted provider")


@pytest.mark.rfc("8725-3.1")
def test_unknown_kid_refreshes_the_jwks_once_per_interval(
    client, chain, cast, exchange, provider, clock, resource_settings, use_validator
):
    from delegation_idp.conf import idp_settings
    from delegation_idp.provider import rotation

    validator = use_validator(jwks_refresh_interval=5, jwks_cache_seconds=3600)
    assert call(client, chain[3]).status_code == 200
    assert validator.jwks.fetches == 1
    old_kid = decode(chain[3])[0]["kid"]

    # The provider rotates: a new key is published, then promoted; new tokens carry its kid.
    rotation.rotate_keys(force=True)
    later = timezone.now() + timedelta(seconds=idp_settings.JWKS_CACHE_SECONDS + 1)
    assert rotation.rotate_keys(now=later).promoted
    rotated = exchange("mcp-server1", chain[2], cast.resource_server, scope="tasks.read")
    assert rotated.status_code == 200, rotated.content
    new_token = rotated.json()["access_token"]
    assert decode(new_token)[0]["kid"] != old_kid

    # The cached JWKS (1 hour) does not know the kid: one refresh, then accepted.
    clock.offset += 10
    assert call(client, new_token, path="/api/whoami/").status_code == 200
    assert validator.jwks.fetches == 2
    # The old key is still published (retired), so older tokens keep working.
    assert call(client, chain[3]).status_code == 200

    # Invented kids: at most one refresh per interval, however many arrive.
    header, claims = decode(new_token)
    forged = [_with_kid(new_token, f"invented-{i}") for i in range(20)]
    for token in forged:
        assert_invalid_token(call(client, token), "unknown key")
    assert validator.jwks.fetches == 2  # the interval since the last refresh has not passed
    clock.offset += 6
    assert_invalid_token(call(client, forged[0]), "unknown key")
    assert validator.jwks.fetches == 3
    assert provider.count("/.well-known/jwks.json") == 3


def _with_kid(token: str, kid: str) -> str:
    import base64
    import json

    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    data["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


@pytest.mark.rfc("7662-2.2")
def test_revoked_token_refused_via_introspection(
    client, chain, cast, introspection_client, resource_settings, use_validator
):
    client_id, secret = introspection_client
    validator = use_validator(introspection="always", client_id=client_id, client_secret=secret)
    assert call(client, chain[3]).status_code == 200
    # agent1 revokes the user's token at the provider (RFC 7009): the whole chain below it goes.
    response = client.post(
        "/o/revoke_token/",
        {"token": chain[0], "token_type_hint": "access_token"},
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    assert response.status_code == 200
    assert validator.verify(chain[3]).jti  # the signature and claims are still fine...
    assert_invalid_token(call(client, chain[3]), "not active")  # ...but the provider says no


@pytest.mark.rfc("7662-2.1")
def test_introspection_fallback_when_redis_is_unreachable(
    client, chain, cast, introspection_client, provider, resource_settings, use_validator
):
    client_id, secret = introspection_client
    use_validator(
        introspection="fallback",
        client_id=client_id,
        client_secret=secret,
        revocation_redis_url="redis://127.0.0.1:1/0",  # nothing listens there
    )
    assert call(client, chain[3]).status_code == 200
    assert provider.count("/o/introspect/") == 1


def test_unreachable_redis_without_fallback_fails_closed(client, chain, resource_settings, use_validator):
    use_validator(revocation_redis_url="redis://127.0.0.1:1/0")
    response = call(client, chain[3])
    assert response.status_code == 503
    assert response.json()["detail"]


@pytest.mark.integration
@pytest.mark.rfc("7009-2")
def test_revoked_token_refused_via_redis(
    client,
    chain,
    cast,
    settings,
    rs_redis_url,
    resource_settings,
    use_validator,
    django_capture_on_commit_callbacks,
):
    from delegation_idp.lineage import publication

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "REVOCATION_REDIS_URL": rs_redis_url}
    use_validator(revocation_redis_url=rs_redis_url)
    assert call(client, chain[3]).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/o/revoke_token/",
            {"token": chain[0], "token_type_hint": "access_token"},
            HTTP_AUTHORIZATION=cast["agent1"].basic,
        )
    assert response.status_code == 200
    publication.publish_revocations()  # the periodic full publication, as beat runs it
    jti = decode(chain[3])[1]["jti"]
    import redis

    store = redis.Redis.from_url(rs_redis_url)
    assert store.exists(publication.key_for(jti)) == 1
    assert 0 < store.ttl(publication.key_for(jti)) <= 3600 + 60
    assert_invalid_token(call(client, chain[3]), "revoked")


@pytest.mark.integration
def test_stale_revocation_heartbeat_counts_as_unavailable(
    client, chain, rs_redis_url, resource_settings, use_validator, clock
):
    import redis

    store = redis.Redis.from_url(rs_redis_url)
    use_validator(revocation_redis_url=rs_redis_url, revocation_max_age=180)
    assert call(client, chain[3]).status_code == 503  # no heartbeat at all
    store.set("delegation_idp:revoked:@published", int(clock()))
    assert call(client, chain[3]).status_code == 200
    clock.offset = 181  # (the token itself lives for an hour)
    assert call(client, chain[3]).status_code == 503


@pytest.mark.rfc("9728-3.3")
def test_protected_resource_metadata(client, cast, resource_settings):
    """The document names the URL it describes (here the root of the site it was fetched
    from), not the identity URI the provider maps that URL to."""
    response = client.get("/.well-known/oauth-protected-resource")
    assert response.status_code == 200
    data = response.json()
    assert data["resource"] == "http://testserver" != cast.resource_server
    assert data["authorization_servers"] == ["http://testserver"]
    assert data["bearer_methods_supported"] == ["header"]
    assert data["scopes_supported"] == ["tasks.read", "tasks.write"]


@pytest.mark.rfc("9728-5.1")
def test_a_declared_path_is_challenged_with_its_own_document(
    client, settings, resource_settings, use_validator
):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "RESOURCE_PATHS": ["/api/whoami/"]}
    use_validator()
    url = challenge(call(client, None))["resource_metadata"]
    assert url == "http://testserver/.well-known/oauth-protected-resource/api/whoami/"
    assert (
        client.get(url.removeprefix("http://testserver")).json()["resource"]
        == "http://testserver/api/whoami/"
    )
    # A path outside it falls under the root resource.
    assert challenge(call(client, None, "/api/admin/"))["resource_metadata"] == METADATA_URL


@pytest.mark.rfc("9728-3.3")
def test_a_token_addressed_to_the_url_of_the_api_is_accepted(
    client, chain, settings, resource_settings, use_validator, readdress
):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "RESOURCE_PATHS": ["/api/whoami/"]}
    use_validator()
    accepted = call(client, readdress(chain[3], "http://testserver/api/whoami/"))
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["aud"] == ["http://testserver/api/whoami/"]
    refused = call(client, readdress(chain[3], "http://testserver/api/admin/"))
    assert refused.status_code == 401
    assert challenge(refused)["error"] == "invalid_token"


class HungRedis:
    """A revocation set whose every call times out, as a stopped Redis does after its
    socket timeout; counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def exists(self, *args: Any) -> int:
        import redis

        self.calls += 1
        raise redis.TimeoutError("Timeout reading from socket")

    def pipeline(self, **kwargs: Any) -> Any:
        return self

    def get(self, *args: Any) -> Any:
        return self

    def execute(self) -> Any:
        return self.exists()


def test_a_hung_revocation_set_costs_one_wait_then_none_until_it_may_answer_again(
    client, chain, resource_settings, make_validator, clock
):
    """The resource side's revocation-set look-up is behind a circuit breaker too: after one
    timeout, later requests take the fallback at once instead of each waiting it out."""
    hung = HungRedis()
    validator = make_validator(revocation_redis_url="redis://127.0.0.1:1/0", monotonic=clock)
    validator._redis = hung
    delegated = validator.verify(chain[3])
    assert [validator.is_revoked_in_redis(delegated.jti) for _ in range(5)] == [None] * 5
    assert hung.calls == 1
    clock.at(clock() + validator.config.revocation_breaker_seconds + 1)
    assert validator.is_revoked_in_redis(delegated.jti) is None
    assert hung.calls == 2  # one probe once the breaker's period is over
