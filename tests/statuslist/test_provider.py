"""The provider's Token Status Lists (draft-ietf-oauth-status-list): every JWT carries an entry,
no two tokens share one, revocation reaches the signed list, and the lists are served as
sections 8 and 9 say."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from delegation_idp import jose
from delegation_idp.lineage import revocation
from delegation_idp.models import AuditEvent, StatusList, StatusListBlock, TokenLineage
from delegation_idp.provider import status_lists
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.status_list_allocation import new_list_fields
from tests.helpers import assert_oauth_error, decode, with_idp
from tests.statuslist.conftest import independent_status, reference

pytestmark = pytest.mark.django_db

MEDIA = "application/statuslist+jwt"


@pytest.mark.rfc("status-list-21-6.2")
def test_every_jwt_carries_a_status_entry_stored_with_its_lineage(cast, user_token, exchange):
    child = exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"]
    for token in (user_token, child):
        idx, uri = reference(token)
        assert uri.startswith("http://testserver/o/statuslists/")
        row = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
        assert (row.status_idx, row.status_list.slug) == (idx, uri.rsplit("/", 1)[1])
        assert 0 <= idx < row.status_list.size


def test_without_status_lists_tokens_carry_none(cast, issue_user_token, client):
    with with_idp(STATUS_LIST=False):
        status_lists.reset()
        assert not status_lists.enabled()
        assert "status" not in decode(issue_user_token())[1]
        metadata = client.get("/.well-known/oauth-authorization-server").json()
        assert "status_list_aggregation_endpoint" not in metadata
    status_lists.reset()


@pytest.mark.rfc("status-list-21-13.3")
def test_entries_are_never_handed_out_twice(settings):
    with with_idp(STATUS_LIST_SIZE=4096, STATUS_LIST_BLOCK_SIZE=64):
        status_lists.reset()
        entries = [status_lists.allocate() for _ in range(3 * 4096 + 100)]
    pairs = {(e.list_number, e.idx) for e in entries}
    assert len(pairs) == len(entries)
    assert len({e.list_number for e in entries}) == 4
    assert all(0 <= e.idx < 4096 for e in entries)
    # A process that dies loses the rest of its block; the next process never reuses it.
    status_lists.reset()
    with with_idp(STATUS_LIST_SIZE=4096, STATUS_LIST_BLOCK_SIZE=64):
        after_restart = [status_lists.allocate() for _ in range(500)]
    assert not pairs & {(e.list_number, e.idx) for e in after_restart}


@pytest.mark.rfc("status-list-21-12.5")
def test_tokens_issued_one_after_another_get_unrelated_indices():
    indices = [status_lists.allocate().idx for _ in range(200)]
    steps = [b - a for a, b in zip(indices, indices[1:], strict=False)]
    assert sum(abs(step) <= 8 for step in steps) < 3
    assert sorted(indices) != indices


def test_a_list_row_lost_with_its_transaction_comes_back_the_same():
    """Lists are derived from their number: a rolled-back creation is recreated identically,
    so entries handed out meanwhile still name the list that serves them."""
    entry = status_lists.allocate()
    row = StatusList.objects.get(pk=entry.list_number)
    slug, key = row.slug, row.permutation_key
    StatusList.objects.filter(pk=entry.list_number).delete()
    status_lists.reset()
    StatusListBlock.objects.all().delete()
    again, _ = StatusList.objects.get_or_create(
        number=entry.list_number, defaults=new_list_fields(entry.list_number)
    )
    assert (again.slug, again.permutation_key) == (slug, key)


@pytest.mark.rfc("status-list-21-5.1")
def test_the_signed_list_is_a_statuslist_jwt_of_the_managed_keys(user_token, fetch_list):
    idx, uri = reference(user_token)
    response = fetch_list(uri, accept=MEDIA)
    assert response.status_code == 200
    assert response["Content-Type"] == MEDIA
    token = response.content.decode()
    header, claims = jose.verify(
        token,
        keyset.verification_key,
        algorithms=["ES256", "RS256", "EdDSA"],
        max_bytes=1 << 20,
        max_header_bytes=1024,
        max_json_depth=8,
        expected_typ="statuslist+jwt",
    )
    assert header["typ"] == "statuslist+jwt"
    assert claims["sub"] == uri
    assert claims["iss"] == "http://testserver"
    assert claims["exp"] - claims["iat"] == 3600 and claims["ttl"] == 60
    assert claims["status_list"]["bits"] == 1
    assert claims["status_list"]["aggregation_uri"] == "http://testserver/o/statuslists/"


@pytest.mark.rfc("status-list-21-4.1")
def test_a_revoked_subtree_reads_revoked_in_the_published_list(cast, chain, published_status):
    root, child, *below = chain
    assert [published_status(t) for t in chain] == [0] * len(chain)
    revocation.revoke_subtree(decode(child)[1]["jti"])
    assert published_status(root) == 0
    assert [published_status(t) for t in [child, *below]] == [1] * (1 + len(below))


def test_revocation_marks_its_lists_in_its_own_transaction(user_token, published_status):
    number = TokenLineage.objects.get(jti=decode(user_token)[1]["jti"]).status_list_id
    status_lists.publish_status_lists()
    before = StatusList.objects.get(pk=number)
    assert not before.is_dirty
    with pytest.raises(RuntimeError), transaction.atomic():
        revocation.revoke_subtree(decode(user_token)[1]["jti"])
        assert StatusList.objects.get(pk=number).version == before.version + 1
        raise RuntimeError("rolled back")
    assert StatusList.objects.get(pk=number).version == before.version
    assert published_status(user_token) == 0


@pytest.mark.rfc("status-list-21-13.7")
def test_a_crash_between_the_revocation_and_the_signing_loses_nothing(
    user_token, published_status, monkeypatch
):
    """The revocation commits; the process dies before any list is signed (here: the queued
    publication never runs). The list stays marked, and the next publication signs it."""
    monkeypatch.setattr(status_lists, "request_publication", lambda: None)
    assert published_status(user_token) == 0
    revocation.revoke_subtree(decode(user_token)[1]["jti"])
    row = StatusList.objects.filter(version__gt=0).get()
    assert row.is_dirty
    assert independent_status(row.token, reference(user_token)[0]) == 0  # not signed yet
    assert status_lists.publish_status_lists() == 1
    assert published_status(user_token, publish=False) == 1
    assert status_lists.publish_status_lists() == 0  # nothing left to sign


@pytest.mark.rfc("status-list-21-8.2")
def test_etag_and_cache_control_from_ttl(user_token, fetch_list):
    _, uri = reference(user_token)
    first = fetch_list(uri)
    assert first.status_code == 200
    assert first["Cache-Control"] == "public, max-age=60"
    assert first["Access-Control-Allow-Origin"] == "*"
    again = fetch_list(uri, if_none_match=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"] and not again.content
    revocation.revoke_subtree(decode(user_token)[1]["jti"])
    status_lists.publish_status_lists()
    changed = fetch_list(uri, if_none_match=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]


@pytest.mark.rfc("status-list-21-8.1")
@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("", 200),
        ("application/statuslist+jwt", 200),
        ("application/statuslist+cwt;q=1, application/statuslist+jwt;q=0.5", 200),
        ("*/*", 200),
        ("application/*", 200),
        ("application/statuslist+cwt", 406),
        ("application/json", 406),
        ("application/statuslist+jwt;q=0, */*", 406),
    ],
)
def test_content_negotiation_offers_the_jwt_form_only(user_token, fetch_list, accept, status):
    _, uri = reference(user_token)
    before = AuditEvent.objects.count()
    response = fetch_list(uri, accept=accept) if accept else fetch_list(uri)
    if status == 200:
        assert response.status_code == 200 and response["Content-Type"] == MEDIA
        assert response["Vary"] == "Accept"
    else:
        body = assert_oauth_error(response, 406, "invalid_request")
        assert "statuslist+jwt" in body["error_description"]
        assert AuditEvent.objects.count() == before + 1
        assert AuditEvent.objects.latest("pk").reason == "status_list_not_acceptable"


@pytest.mark.rfc("status-list-21-8.4")
def test_historical_resolution_is_not_implemented(user_token, fetch_list):
    _, uri = reference(user_token)
    assert_oauth_error(fetch_list(uri + "?time=1686925000"), 501, "invalid_request")


def test_unknown_lists_and_other_methods_are_json_errors_with_an_audit_record(db, client):
    before = AuditEvent.objects.count()
    assert_oauth_error(client.get("/o/statuslists/nope"), 404, "invalid_request")
    assert_oauth_error(client.get("/o/statuslists/" + "x" * 300), 404, "invalid_request")
    # A NUL byte would be a database error on PostgreSQL: a slug of the wrong shape is unknown
    # before any query.
    assert_oauth_error(client.get("/o/statuslists/%00" + "a" * 21), 404, "invalid_request")
    response = client.post("/o/statuslists/nope")
    assert_oauth_error(response, 405, "invalid_request")
    assert AuditEvent.objects.count() == before + 4
    assert {e.reason for e in AuditEvent.objects.all()} >= {"status_list_not_found", "method_not_allowed"}


@pytest.mark.rfc("status-list-21-9.1")
def test_the_metadata_names_the_aggregation_and_it_lists_every_live_list(user_token, client):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    endpoint = metadata["status_list_aggregation_endpoint"]
    assert endpoint == "http://testserver/o/statuslists/"
    response = client.get(endpoint.removeprefix("http://testserver"))
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status_lists": [reference(user_token)[1]]}


def test_lists_retire_once_replaced_and_all_their_tokens_expired(user_token, fetch_list):
    _, uri = reference(user_token)
    number = TokenLineage.objects.get(jti=decode(user_token)[1]["jti"]).status_list_id
    later = timezone.now() + timedelta(days=2)
    assert status_lists.retire_status_lists(later) == 0  # the current list is never retired
    StatusList.objects.create(number=number + 10**6, **new_list_fields(number + 10**6))
    assert status_lists.retire_status_lists() == 0  # replaced just now: processes may still use it
    StatusList.objects.filter(number=number + 10**6).update(created_at=timezone.now() - timedelta(hours=1))
    assert status_lists.retire_status_lists() == 0  # its token is still live
    assert status_lists.retire_status_lists(later) == 1
    assert fetch_list(uri).status_code == 404
    assert uri not in json.loads(fetch_list("http://testserver/o/statuslists/").content)["status_lists"]


def test_the_publication_task_and_command(user_token, capsys):
    from django.core.management import call_command

    from delegation_idp import tasks

    revocation.revoke_subtree(decode(user_token)[1]["jti"])
    assert tasks.publish_status_lists() == {"signed": 1}
    assert tasks.publish_status_lists(force=True) == {"signed": 1}
    assert tasks.retire_status_lists() == {"retired": 0}
    call_command("publish_status_lists", "--force", "--retire")
    assert capsys.readouterr().out.strip() == "signed=1 retired=0"


def test_a_list_is_signed_again_before_it_expires(user_token, fetch_list):
    _, uri = reference(user_token)
    fetch_list(uri)
    row = StatusList.objects.get()
    assert status_lists.publish_status_lists() == 0
    later = row.signed_at + timedelta(seconds=1801)
    assert status_lists.publish_status_lists(later) == 1


# -- allocation against retirement and rollbacks; signing against key changes ------------------


def _another_process_starts_a_list() -> StatusList:
    block = StatusListBlock.objects.create().pk - 1
    return StatusList.objects.create(number=block, **new_list_fields(block))


@pytest.mark.rfc("status-list-21-13.1")
def test_a_list_the_sweep_retired_gets_no_more_entries():
    """A thread that started a list goes on to its next block; meanwhile another process
    started a newer list and the sweep retired the first. No entry of a block reserved after
    the retirement names the retired list (the block in hand finishes: the sweep's wait
    covers it)."""
    with with_idp(STATUS_LIST_SIZE=4096, STATUS_LIST_BLOCK_SIZE=64):
        status_lists.reset()
        first = status_lists.allocate()
        _another_process_starts_a_list()
        StatusList.objects.filter(pk=first.list_number).update(retired_at=timezone.now())
        later = [status_lists.allocate() for _ in range(64)]
    status_lists.reset()
    retired = set(StatusList.objects.filter(retired_at__isnull=False).values_list("number", flat=True))
    assert first.list_number in retired
    assert later[62].list_number == first.list_number  # the rest of the first block
    assert later[63].list_number not in retired  # the next block: the newer list


def test_entries_after_a_rolled_back_reservation_name_a_list_that_is_served(fetch_list):
    """The block and the list were reserved in a transaction that rolled back (as under
    ATOMIC_REQUESTS): the next entry comes from a reservation that exists."""
    status_lists.reset()
    with pytest.raises(RuntimeError), transaction.atomic():
        lost = status_lists.allocate()
        raise RuntimeError("the request failed")
    assert not StatusList.objects.filter(pk=lost.list_number).exists()
    entry = status_lists.allocate()
    assert StatusList.objects.filter(pk=entry.list_number, retired_at__isnull=True).exists()
    assert fetch_list(entry.uri).status_code == 200


def test_the_transaction_that_reserved_a_block_uses_it_without_reserving_again():
    status_lists.reset()
    with transaction.atomic():
        status_lists.allocate()
        blocks = StatusListBlock.objects.count()
        for _ in range(20):
            status_lists.allocate()
        assert StatusListBlock.objects.count() == blocks


def test_threads_reserve_blocks_of_their_own(transactional_db):
    """Each thread's connection sees only what it committed: each thread takes its own block,
    and no two threads share an entry."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip(
            "concurrent writers from threads need PostgreSQL (SQLite's test database locks its tables)"
        )
    status_lists.reset()
    entries: list[status_lists.Allocation] = []

    def work() -> None:
        try:
            got = [status_lists.allocate() for _ in range(300)]
            with lock:
                entries.extend(got)
        finally:
            connection.close()

    lock = threading.Lock()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(entries) == 1200
    assert len({(e.list_number, e.idx) for e in entries}) == 1200
    assert StatusListBlock.objects.count() >= 4 * (300 // 256 + 1)  # each thread its own blocks
    status_lists.reset()


def _signed_by(row: StatusList) -> str:
    return str(decode(row.token)[0]["kid"])


def test_revoking_a_key_signs_every_list_again_with_its_successor(user_token, cast):
    """A list with no live token of the key (here: its only token already revoked) is still
    signed by it; the key's revocation must not leave verifiers a list whose kid is gone."""
    from delegation_idp.provider import rotation

    revocation.revoke_subtree(decode(user_token)[1]["jti"])
    status_lists.publish_status_lists()
    _, uri = reference(user_token)
    row = StatusList.objects.get(slug=uri.rsplit("/", 1)[1])
    old_kid = _signed_by(row)
    result = rotation.revoke_key(old_kid)
    status_lists.publish_status_lists()
    row.refresh_from_db()
    assert _signed_by(row) == result.successor != old_kid


def test_a_worker_whose_key_cache_is_behind_signs_with_the_current_key(user_token):
    """Another process revoked the key and promoted a new one; this worker's key cache still
    holds the old key."""
    from delegation_idp.models import SigningKey
    from delegation_idp.provider.keys import new_key

    old = keyset.signing_key()
    SigningKey.objects.filter(kid=old.kid).update(state=SigningKey.REVOKED, private_key=b"")
    successor = new_key(SigningKey.CURRENT, timezone.now())
    _, uri = reference(user_token)
    row = status_lists.sign_list(StatusList.objects.get(slug=uri.rsplit("/", 1)[1]))
    assert _signed_by(row) == successor.kid


def test_a_rotation_signs_every_list_again_with_the_new_key(user_token):
    """Lists are signed anew at a promotion, so none is still served signed by the retired
    key when that key leaves the key set (the retention counts access tokens only)."""
    from delegation_idp.provider import rotation

    status_lists.publish_status_lists()
    _, uri = reference(user_token)
    row = StatusList.objects.get(slug=uri.rsplit("/", 1)[1])
    old_kid = _signed_by(row)
    rotation.rotate_keys(force=True)
    result = rotation.rotate_keys(timezone.now() + timedelta(days=1))
    assert result.retired == old_kid and result.promoted
    status_lists.publish_status_lists()
    row.refresh_from_db()
    assert _signed_by(row) == result.promoted


def test_the_list_endpoint_signs_a_list_left_due_by_a_key_revocation(user_token, fetch_list):
    """The publication queued by the revocation never ran (its broker down): the list is
    behind its version, and the endpoint signs it before serving it."""
    from delegation_idp.provider import rotation

    revocation.revoke_subtree(decode(user_token)[1]["jti"])
    status_lists.publish_status_lists()
    _, uri = reference(user_token)
    old_kid = decode(fetch_list(uri).content.decode())[0]["kid"]
    successor = rotation.revoke_key(old_kid).successor
    assert decode(fetch_list(uri).content.decode())[0]["kid"] == successor


def test_manual_transactions_never_use_a_rolled_back_reservation(transactional_db):
    status_lists.reset()
    transaction.set_autocommit(False)
    try:
        status_lists.allocate()
        transaction.rollback()
        entry = status_lists.allocate()
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
        status_lists.reset()
    assert StatusList.objects.filter(pk=entry.list_number).exists()
