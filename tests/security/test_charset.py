"""A form body in a charset that is unknown or not UTF-8 is an RFC 6749 ``invalid_request``
(JSON, ``no-store``) at every endpoint that reads a form, audited as ``bad_encoding``;
never Django's bare HTML 400 or a ``server_error``."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import AuditEvent
from tests.helpers import assert_oauth_error, snapshot

CHARSETS = ["latin-9x", "utf-16", "iso-8859-1", "utf8", "no-such-charset"]


def post(client: Any, path: str, body: bytes, charset: str, agent: Any) -> Any:
    return client.generic(
        "POST",
        path,
        body,
        content_type=f"application/x-www-form-urlencoded; charset={charset}",
        HTTP_AUTHORIZATION=agent.basic,
    )


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize("charset", CHARSETS)
def test_token_endpoint_refuses_a_foreign_charset(charset, clients, client):
    before, events = snapshot(), AuditEvent.objects.count()
    response = post(client, "/o/token/", b"grant_type=client_credentials", charset, clients["plain-client"])
    assert_oauth_error(response, 400, "invalid_request")
    assert snapshot() == before
    assert AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.decision, event.error, event.reason) == ("denied", "invalid_request", "bad_encoding")


@pytest.mark.rfc("7662-2.3")
@pytest.mark.parametrize("charset", CHARSETS)
def test_introspection_refuses_a_foreign_charset(charset, cast, client, user_token):
    response = post(client, "/o/introspect/", f"token={user_token}".encode(), charset, cast["agent1"])
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.rfc("7009-2.2.1")
@pytest.mark.parametrize("charset", CHARSETS)
def test_revocation_refuses_a_foreign_charset(charset, cast, client, user_token):
    response = post(client, "/o/revoke_token/", f"token={user_token}".encode(), charset, cast["agent1"])
    assert_oauth_error(response, 400, "invalid_request")
    active = client.post(
        "/o/introspect/", {"token": user_token}, HTTP_AUTHORIZATION=cast["agent1"].basic
    ).json()
    assert active["active"] is True


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"'])
def test_utf8_spelled_any_way_is_accepted(charset, clients, client):
    response = post(client, "/o/token/", b"grant_type=client_credentials", charset, clients["plain-client"])
    assert response.status_code == 200, response.content
