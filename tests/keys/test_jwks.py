"""The JWKS endpoint and the provider's own verification by ``kid``."""

from __future__ import annotations

import json

import pytest

from delegation_idp import jose
from delegation_idp.models import SigningKey
from delegation_idp.provider import keys, rotation
from tests.helpers import assert_oauth_error, decode

PUBLIC = {"EC": {"kty", "crv", "x", "y"}, "RSA": {"kty", "n", "e"}, "OKP": {"kty", "crv", "x"}}


@pytest.mark.django_db
@pytest.mark.rfc("7517-5")
def test_jwks_has_public_members_only_for_every_published_state(client, idp):
    keys.ensure_current_key()
    for alg in ("RS256", "EdDSA"):
        idp(SIGNING_ALGORITHM=alg)
        SigningKey.objects.filter(state="next").update(state="retired")
        rotation.rotate_keys(force=True)
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/jwk-set+json"
    published = response.json()["keys"]
    assert {k["kty"] for k in published} == {"EC", "RSA", "OKP"}
    for jwk in published:
        assert set(jwk) == PUBLIC[jwk["kty"]] | {"kid", "alg", "use"}, jwk
        assert jwk["use"] == "sig"
        # kid is the RFC 7638 thumbprint of the public key.
        assert jose.public_key(jwk).jwk.thumbprint() == jwk["kid"]


@pytest.mark.django_db
def test_jwks_never_publishes_revoked_or_removed_keys(client, clock):
    first = keys.ensure_current_key().kid
    upcoming = rotation.rotate_keys(force=True).created
    rotation.revoke_key(upcoming)
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
    assert kids == [first]


@pytest.mark.django_db
def test_cache_control_and_etag_304(client, idp):
    idp(JWKS_CACHE_SECONDS=120)
    response = client.get("/.well-known/jwks.json")
    assert response["Cache-Control"] == "public, max-age=120"
    etag = response["ETag"]
    again = client.get("/.well-known/jwks.json", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag and again["Cache-Control"] == "public, max-age=120"
    assert client.get("/.well-known/jwks.json", HTTP_IF_NONE_MATCH=f'"other", {etag}').status_code == 304
    rotation.rotate_keys(force=True)  # the set changed: a new ETag and a full answer
    changed = client.get("/.well-known/jwks.json", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert len(changed.json()["keys"]) == 2


@pytest.mark.django_db
@pytest.mark.rfc("8414-2")
def test_metadata_names_this_jwks(client):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["jwks_uri"] == "http://testserver/.well-known/jwks.json"


@pytest.mark.django_db
def test_new_site_publishes_its_first_key_before_signing(client):
    assert SigningKey.objects.count() == 0
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
    assert kids == [SigningKey.objects.get(state="current").kid]


@pytest.mark.django_db
def test_keys_off_the_allow_list_are_neither_published_nor_used(client, idp, cast, user_token, exchange):
    idp(ALLOWED_ALGORITHMS=["RS256"])
    assert client.get("/.well-known/jwks.json").json()["keys"] == []
    assert keys.keyset.verification_key(decode(user_token)[0]["kid"]) is None
    assert_oauth_error(exchange("agent1", user_token, cast["agent2"].uri), 400, "invalid_request")


@pytest.mark.django_db
def test_a_token_signed_by_a_key_outside_the_set_is_refused(cast, user_token, exchange):
    """Same claims, same kid, another key: the key comes from our set, never from the token."""
    header, claims = decode(user_token)
    impostor = jose.generate_key("ES256")
    forged = jose.sign(claims, jose.SigningKey(kid=header["kid"], alg="ES256", jwk=impostor.jwk))
    assert_oauth_error(exchange("agent1", forged, cast["agent2"].uri), 400, "invalid_request")
    foreign = jose.sign(claims, impostor)  # its own kid, unknown to us
    assert_oauth_error(exchange("agent1", foreign, cast["agent2"].uri), 400, "invalid_request")


@pytest.mark.django_db
def test_unknown_kid_reloads_at_most_once_per_interval(idp, monkeypatch):
    idp(KEY_RELOAD_MIN_INTERVAL=5, KEY_CACHE_SECONDS=3600)
    keys.ensure_current_key()
    now = [1000.0]
    monkeypatch.setattr(keys.keyset, "monotonic", lambda: now[0])
    monkeypatch.setattr(keys.keyset, "_last_miss_reload", float("-inf"))
    keys.keyset.signing_key()
    loads = keys.keyset.loads
    for attempt in range(50):
        assert keys.keyset.verification_key(f"invented-{attempt}") is None
    assert keys.keyset.loads == loads + 1  # one reload for fifty invented kids
    now[0] += 5
    assert keys.keyset.verification_key("invented-again") is None
    assert keys.keyset.loads == loads + 2


@pytest.mark.django_db
def test_a_key_made_by_another_process_is_found_by_reloading(idp, monkeypatch):
    idp(KEY_RELOAD_MIN_INTERVAL=5, KEY_CACHE_SECONDS=3600)
    keys.ensure_current_key()
    keys.keyset.signing_key()  # this process's copy
    # Another process revokes the key: the new current key is unknown here.
    successor = rotation.revoke_key(keys.keyset.signing_key().kid).successor
    keys.keyset._loaded_at = keys.keyset.monotonic()  # pretend this process had not been told
    key = keys.keyset.verification_key(successor)
    assert key is not None and key.kid == successor


@pytest.mark.django_db
def test_published_copy_matches_the_view(client):
    keys.ensure_current_key()
    rotation.rotate_keys(force=True)
    served = json.loads(client.get("/.well-known/jwks.json").content)["keys"]
    assert served == keys.keyset.published()
