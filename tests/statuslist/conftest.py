"""Fixtures of the Token Status List tests, and a decoder written from the draft alone."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import pytest

from tests.helpers import decode


def independent_status(list_token: str, idx: int) -> int:
    """The status of ``idx`` in a Status List Token, read as draft-ietf-oauth-status-list says
    and with nothing of this project: the JWT's payload (section 5.1), ``lst`` base64url
    (section 4.2), inflated with ZLIB (section 4.1, step 4), then ``bits`` bits per entry
    packed from the least significant bit of each byte (section 4.1, step 3)."""
    payload = list_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    bits = claims["status_list"]["bits"]
    lst = claims["status_list"]["lst"]
    array = zlib.decompress(base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4)))
    position = idx * bits
    return (array[position // 8] >> (position % 8)) & ((1 << bits) - 1)


def reference(token: str) -> tuple[int, str]:
    entry = decode(token)[1]["status"]["status_list"]
    return entry["idx"], entry["uri"]


@pytest.fixture
def fetch_list(client: Any):
    """GET a list's URI at the provider (Django's test client); the response."""

    def fetch(uri: str, **headers: Any) -> Any:
        return client.get(uri.removeprefix("http://testserver"), headers=headers)

    return fetch


@pytest.fixture
def published_status(fetch_list: Any):
    """The status of a token as the provider publishes it now, read by the independent decoder."""
    from delegation_idp.provider import status_lists

    def status(token: str, *, publish: bool = True) -> int:
        if publish:
            status_lists.publish_status_lists()
        idx, uri = reference(token)
        response = fetch_list(uri, accept="application/statuslist+jwt")
        assert response.status_code == 200, response.content
        return independent_status(response.content.decode(), idx)

    return status
