"""Private keys at rest: encrypted with a key-encryption key that is not SECRET_KEY."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from delegation_idp import jose
from delegation_idp.models import SigningKey
from delegation_idp.provider import keys, rotation
from tests.settings import TEST_KEK


@pytest.mark.django_db
@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_the_database_alone_never_yields_the_private_key(idp, alg):
    idp(SIGNING_ALGORITHM=alg)
    row = keys.ensure_current_key()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT private_key, public_jwk FROM delegation_idp_signingkey WHERE kid = %s", [row.kid]
        )
        blob, public = cursor.fetchone()
    blob = bytes(blob)
    private = json.loads(keys.keyset.signing_key().jwk.export_private())
    assert private["d"].encode() not in blob and b'"d"' not in blob
    assert "d" not in json.loads(public) if isinstance(public, str) else "d" not in public
    with pytest.raises(jose.JoseError, match="no key-encryption key"):
        jose.decrypt_private_key(blob, alg, [Fernet.generate_key()])
    assert jose.decrypt_private_key(blob, alg, [TEST_KEK]).kid == row.kid


@pytest.mark.django_db
def test_key_encryption_keys_rotate_by_prepending(idp):
    old = keys.ensure_current_key()
    new_kek = Fernet.generate_key().decode()
    idp(KEY_ENCRYPTION_KEYS=[new_kek, TEST_KEK])
    assert keys.keyset.signing_key().kid == old.kid  # still decrypts with the old KEK
    created = rotation.rotate_keys(force=True).created
    blob = bytes(SigningKey.objects.get(kid=created).private_key)
    assert jose.decrypt_private_key(blob, "ES256", [new_kek]).kid == created  # encrypted with the first
    with pytest.raises(jose.JoseError):
        jose.decrypt_private_key(blob, "ES256", [TEST_KEK])


@pytest.mark.django_db
def test_a_private_key_moved_to_another_row_is_refused():
    current = keys.ensure_current_key()
    other = rotation.rotate_keys(force=True).created
    stolen = SigningKey.objects.get(kid=other).private_key
    SigningKey.objects.filter(kid=current.kid).update(private_key=stolen)
    keys.keyset.invalidate()
    with pytest.raises(keys.KeyMismatch):
        keys.keyset.signing_key()
