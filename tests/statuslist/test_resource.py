"""The resource side's status-list check (draft-ietf-oauth-status-list section 8.3): a revoked
entry refuses the token; a list that is tampered with, expired, signed by another key,
oversized or unreachable is refused, and the token then fails closed (503) unless the
service chose to fail open."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from delegation_idp import jose
from delegation_idp.lineage import revocation
from delegation_idp.provider import status_lists
from delegation_idp.resource_server.validation import (
    ProviderUnavailable,
    ResourceServerConfig,
    TokenError,
    TokenValidator,
)
from delegation_idp.statuslist import compress
from tests.conftest import PROVIDER_ISSUER, DjangoTransport
from tests.helpers import decode
from tests.statuslist.conftest import reference

pytestmark = [pytest.mark.django_db, pytest.mark.rfc("status-list-21-8.3")]


class Tampering(httpx.BaseTransport):
    """The provider, with its status-list answers passed through ``change`` when set."""

    def __init__(self) -> None:
        self.provider = DjangoTransport()
        self.change: Callable[[httpx.Response], httpx.Response] | None = None
        self.down = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        is_list = "/statuslists/" in request.url.path
        if is_list and self.down:
            raise httpx.ConnectError("refused", request=request)
        response = self.provider.handle_request(request)
        if is_list and self.change is not None:
            response = self.change(response)
        return response

    def lists_fetched(self) -> int:
        return sum(1 for _, path in self.provider.calls if "/statuslists/" in path)


@pytest.fixture
def transport(db: Any) -> Tampering:
    return Tampering()


@pytest.fixture
def validator(cast: Any, transport: Tampering, clock: Any):
    def make(**options: Any) -> TokenValidator:
        options.setdefault("revocation_modes", ("status_list",))
        resource = options.pop("resource", cast.resource_server)
        config = ResourceServerConfig(issuer=PROVIDER_ISSUER, resource=resource, **options)
        http = httpx.Client(transport=transport)
        return TokenValidator(config, http=http, clock=clock, monotonic=clock)

    return make


@pytest.fixture
def rs_token(chain: list[str]) -> str:
    """The seed's last hop: mcp-server1 -> the resource server."""
    return chain[-1]


def resign(response: httpx.Response, key: jose.SigningKey, **changes: Any) -> httpx.Response:
    claims = decode(response.text)[1]
    claims.update(changes)
    return httpx.Response(
        200,
        headers={"content-type": "application/statuslist+jwt"},
        content=jose.sign(claims, key, typ="statuslist+jwt"),
    )


def refusal_of(call: Callable[[], Any]) -> TokenError:
    with pytest.raises(TokenError) as refused:
        call()
    return refused.value


def test_a_valid_entry_passes_and_the_list_is_fetched_once_per_ttl(validator, rs_token, transport, clock):
    checker = validator()
    assert checker.validate(rs_token).jti == decode(rs_token)[1]["jti"]
    checker.validate(rs_token)
    assert transport.lists_fetched() == 1
    clock.at(clock() + 61)
    checker.validate(rs_token)
    assert transport.lists_fetched() == 2


def test_a_revoked_token_is_refused_once_the_list_is_signed_and_its_ttl_passed(validator, rs_token, clock):
    checker = validator()
    checker.validate(rs_token)
    revocation.revoke_subtree(decode(rs_token)[1]["jti"])
    status_lists.publish_status_lists()
    checker.validate(rs_token)  # the cached list, within its ttl
    clock.at(clock() + 61)
    refused = refusal_of(lambda: checker.validate(rs_token))
    assert (refused.status, refused.error, refused.reason) == (401, "invalid_token", "status_list_revoked")


def tampered_lst(response: httpx.Response) -> httpx.Response:
    header, payload, signature = response.text.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["status_list"]["lst"] = compress(bytes(1 << 17))
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return httpx.Response(200, headers=response.headers, content=f"{header}.{forged}.{signature}")


def foreign_key(response: httpx.Response) -> httpx.Response:
    key = jose.generate_key("ES256")
    kid = decode(response.text)[0]["kid"]
    key = jose.SigningKey(kid=kid, alg=key.alg, jwk=key.jwk)  # the provider's kid, another key
    return resign(response, key)


def expired(response: httpx.Response) -> httpx.Response:
    from delegation_idp.provider.keys import keyset

    return resign(response, keyset.signing_key(), iat=1000, exp=2000)


def other_subject(response: httpx.Response) -> httpx.Response:
    from delegation_idp.provider.keys import keyset

    return resign(response, keyset.signing_key(), sub="http://testserver/o/statuslists/another")


def as_jwt_type(response: httpx.Response) -> httpx.Response:
    from delegation_idp.provider.keys import keyset

    claims = decode(response.text)[1]
    return httpx.Response(200, headers=response.headers, content=jose.sign(claims, keyset.signing_key()))


def oversized(response: httpx.Response) -> httpx.Response:
    return httpx.Response(200, headers=response.headers, content=response.content + b" " * (300 * 1024))


def bomb(response: httpx.Response) -> httpx.Response:
    from delegation_idp.provider.keys import keyset

    claims = decode(response.text)[1]
    claims["status_list"]["lst"] = compress(bytes(64 << 20))
    return resign(response, keyset.signing_key(), status_list=claims["status_list"])


def wrong_media(response: httpx.Response) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/jwt"}, content=response.content)


CASES = {
    "tampered": (tampered_lst, "status_list_signature"),
    "wrongly signed": (foreign_key, "status_list_signature"),
    "typ at+jwt": (as_jwt_type, "status_list_signature"),
    "expired": (expired, "status_list_expired"),
    "another list's sub": (other_subject, "status_list_subject_mismatch"),
    "oversized": (oversized, "status_list_too_large"),
    "zlib bomb": (bomb, "status_list_too_large"),
    "another media type": (wrong_media, "status_list_malformed"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_bad_list_fails_closed_by_default(validator, rs_token, transport, case):
    transport.change, reason = CASES[case]
    refused = refusal_of(lambda: validator().validate(rs_token))
    assert isinstance(refused, ProviderUnavailable)
    assert (refused.status, refused.reason) == (503, reason)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_bad_list_lets_the_token_through_when_the_service_fails_open(validator, rs_token, transport, case):
    transport.change = CASES[case][0]
    assert validator(status_list_fail_open=True).validate(rs_token).jti == decode(rs_token)[1]["jti"]


def test_a_cached_list_serves_while_it_cannot_be_refreshed_up_to_the_stale_bound(
    validator, rs_token, transport, clock
):
    checker = validator(status_list_stale_seconds=120)
    checker.validate(rs_token)
    transport.down = True
    clock.at(clock() + 61 + 100)  # ttl passed, within the stale bound
    checker.validate(rs_token)
    clock.at(clock() + 30)  # past ttl + stale bound
    refused = refusal_of(lambda: checker.validate(rs_token))
    assert (refused.status, refused.reason) == (503, "status_list_unavailable")


def test_a_failed_fetch_is_not_retried_at_once(validator, rs_token, transport):
    checker = validator()
    transport.down = True
    for _ in range(5):
        refusal_of(lambda: checker.validate(rs_token))
    assert checker.status_lists.fetches == 0
    assert transport.lists_fetched() == 0  # the connection failed once, then was not tried again


@pytest.mark.rfc("status-list-21-6.2")
def test_a_token_without_a_status_entry_is_refused(validator, cast, issue_user_token):
    from tests.helpers import with_idp

    with with_idp(STATUS_LIST=False):
        status_lists.reset()
        token = issue_user_token()
    status_lists.reset()
    checker = validator(resource=decode(token)[1]["aud"])
    delegated = checker.verify(token)
    refused = refusal_of(lambda: checker.check_status_list(delegated))
    assert (refused.status, refused.reason) == (401, "status_list_reference_invalid")


def test_a_list_outside_the_issuer_is_never_fetched(validator, rs_token, transport):
    checker = validator(status_list_uri_prefixes=("https://lists.example.com/",))
    delegated = checker.verify(rs_token)
    refused = refusal_of(lambda: checker.check_status_list(delegated))
    assert refused.reason == "status_list_reference_invalid"
    assert transport.lists_fetched() == 0


def test_an_index_past_the_list_is_refused(validator, rs_token, transport, settings):
    idx, _ = reference(rs_token)

    def short_list(response: httpx.Response) -> httpx.Response:
        from delegation_idp.provider.keys import keyset

        return resign(response, keyset.signing_key(), status_list={"bits": 1, "lst": compress(bytes(1))})

    transport.change = short_list
    refused = refusal_of(lambda: validator().validate(rs_token))
    assert (refused.status, refused.reason) == (401, "status_list_reference_invalid")


@pytest.mark.parametrize(
    ("modes", "asks"),
    [
        (("status_list",), {"list"}),
        (("introspection",), {"introspection"}),
        (("status_list", "introspection"), {"list", "introspection"}),
    ],
)
def test_the_modes_ask_what_they_name_and_nothing_else(validator, rs_token, transport, cast, modes, asks):
    from example_project.demo_services.cast import register_introspection_client

    client_id, secret = register_introspection_client(cast.resource_server)
    validator(revocation_modes=modes, client_id=client_id, client_secret=secret).validate(rs_token)
    paths = [path for _, path in transport.provider.calls]
    asked = {"list" for p in paths if "/statuslists/" in p} | {
        "introspection" for p in paths if "introspect" in p
    }
    assert asked == asks


def test_modes_are_checked_when_configured():
    with pytest.raises(ValueError):
        ResourceServerConfig(
            issuer=PROVIDER_ISSUER, resource="https://rs.example.com", revocation_modes=("crl",)
        )
    with pytest.raises(ValueError):
        ResourceServerConfig(
            issuer=PROVIDER_ISSUER, resource="https://rs.example.com", revocation_modes=("redis",)
        )
    with pytest.raises(ValueError):
        ResourceServerConfig(
            issuer=PROVIDER_ISSUER, resource="https://rs.example.com", revocation_modes=("introspection",)
        )


def test_a_django_resource_server_takes_the_modes_from_its_settings(resource_settings):
    from delegation_idp.resource_server import site
    from tests.helpers import with_idp

    assert site.config_from_settings().revocation_modes is None
    with with_idp(
        RESOURCE_REVOCATION_MODES=["status_list"],
        RESOURCE_STATUS_LIST_FAIL_OPEN=True,
        RESOURCE_STATUS_LIST_STALE_SECONDS=10,
    ):
        config = site.config_from_settings()
    assert config.revocation_modes == ("status_list",)
    assert config.status_list_fail_open and config.status_list_stale_seconds == 10


def test_no_content_coding_is_asked_for_or_accepted(validator, rs_token, transport):
    """The size bound counts the bytes as sent: a gzip-coded list would be inflated by the
    HTTP client before any count, so it is refused, and identity is what is asked for."""
    import gzip

    asked: list[str] = []

    def gzipped(response: httpx.Response) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "application/statuslist+jwt", "content-encoding": "gzip"},
            content=gzip.compress(response.content),
        )

    original = transport.handle_request

    def recording(request: httpx.Request) -> httpx.Response:
        if "/statuslists/" in request.url.path:
            asked.append(request.headers.get("accept-encoding", ""))
        return original(request)

    transport.handle_request = recording  # type: ignore[method-assign]
    transport.change = gzipped
    refused = refusal_of(lambda: validator().validate(rs_token))
    assert (refused.status, refused.reason) == (503, "status_list_malformed")
    assert asked == ["identity"]


def test_while_one_thread_refreshes_a_list_the_others_use_the_copy_in_hand(
    validator, rs_token, transport, clock
):
    """Stale-while-revalidate: past the ttl, one request fetches the list again; requests for
    the same list meanwhile answer from the cached copy instead of queueing behind the fetch."""
    import threading

    checker = validator(status_list_stale_seconds=120)
    checker.validate(rs_token)
    delegated = checker.verify(rs_token)
    body = transport.provider.handle_request(
        httpx.Request("GET", reference(rs_token)[1], headers={"accept": "application/statuslist+jwt"})
    )
    body.read()
    entered, release = threading.Event(), threading.Event()

    def slow(response: httpx.Response) -> httpx.Response:
        entered.set()
        release.wait(30)
        return httpx.Response(
            200, headers={"content-type": "application/statuslist+jwt"}, content=body.content
        )

    transport.provider.handle_request = lambda request: httpx.Response(200)  # type: ignore[method-assign]
    transport.change = slow
    clock.at(clock() + 61)  # the ttl passed: the next check refreshes
    refresher = threading.Thread(target=checker.check_status_list, args=(delegated,))
    refresher.start()
    assert entered.wait(10)
    other = threading.Thread(target=checker.check_status_list, args=(delegated,))
    other.start()
    other.join(10)
    try:
        assert not other.is_alive(), "the second check waited for the refresh"
        assert refresher.is_alive()
    finally:
        release.set()
        refresher.join(10)
        other.join(10)
    assert checker.status_lists.fetches == 2


def test_a_django_resource_server_takes_the_list_prefixes_from_its_settings(resource_settings):
    from delegation_idp.resource_server import site
    from tests.helpers import with_idp

    assert site.config_from_settings().status_list_uri_prefixes == ()
    with with_idp(RESOURCE_STATUS_LIST_URI_PREFIXES=["https://lists.example.com/statuslists/"]):
        config = site.config_from_settings()
    assert config.status_list_uri_prefixes == ("https://lists.example.com/statuslists/",)


def test_one_prefix_string_is_refused_rather_than_read_as_its_characters():
    with pytest.raises(ValueError):
        ResourceServerConfig(
            issuer=PROVIDER_ISSUER,
            resource="https://rs.example.com",
            status_list_uri_prefixes="https://lists.example.com/",  # type: ignore[arg-type]
        )
