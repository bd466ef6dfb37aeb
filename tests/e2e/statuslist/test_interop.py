"""Interop: a decoder written from draft-ietf-oauth-status-list alone reads the lists this
provider publishes. It shares no code with the project: the JWS payload split by hand, ``lst``
base64url-decoded and inflated with ``zlib`` (section 4.1, step 4), each entry read from its
byte with index 0 in the least significant bit (section 4.1, step 3)."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from delegation_idp.lineage import revocation
from delegation_idp.models import TokenLineage
from delegation_idp.provider import status_lists

pytestmark = [pytest.mark.django_db, pytest.mark.rfc("status-list-21-4.1")]


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def statuses(list_token: str, indices: list[int]) -> dict[int, int]:
    header = json.loads(b64url_decode(list_token.split(".")[0]))
    assert header["typ"] == "statuslist+jwt"  # section 5.1
    claims = json.loads(b64url_decode(list_token.split(".")[1]))
    bits = claims["status_list"]["bits"]
    array = zlib.decompress(b64url_decode(claims["status_list"]["lst"]))
    per_byte = 8 // bits
    return {i: (array[i // per_byte] >> ((i % per_byte) * bits)) & ((1 << bits) - 1) for i in indices}


def test_an_independent_decoder_reads_exactly_the_revoked_entries(client, issue_user_token):
    for _ in range(12):
        issue_user_token()
    rows = list(TokenLineage.objects.filter(parent_jti="").order_by("pk"))
    assert len(rows) == 12 and len({r.status_list_id for r in rows}) == 1
    revoked = rows[::3]
    for row in revoked:
        revocation.revoke_subtree(row.jti)
    status_lists.publish_status_lists()
    uri = status_lists.list_uri(rows[0].status_list.slug)
    response = client.get(uri.removeprefix("http://testserver"), HTTP_ACCEPT="application/statuslist+jwt")
    assert response.status_code == 200
    read = statuses(response.content.decode(), [r.status_idx for r in rows])
    assert read == {r.status_idx: int(r in revoked) for r in rows}


def test_the_draft_examples_read_with_the_same_decoder():
    """Section 4.1's two examples, as the draft prints them, through the decoder above."""

    def token_for(compressed_hex: str, bits: int) -> str:
        lst = base64.urlsafe_b64encode(bytes.fromhex(compressed_hex)).rstrip(b"=").decode()
        segment = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
        return (
            f"{segment({'typ': 'statuslist+jwt'})}.{segment({'status_list': {'bits': bits, 'lst': lst}})}.x"
        )

    one = statuses(token_for("78dadbb918000217015d", 1), list(range(16)))
    assert [one[i] for i in range(16)] == [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    two = statuses(token_for("78da3be9f2130003df0207", 2), list(range(12)))
    assert [two[i] for i in range(12)] == [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]
