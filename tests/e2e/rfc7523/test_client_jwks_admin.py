"""A party's client JWK set is checked when it is saved in the Django admin (RFC 7517 section 5,
RFC 7518 sections 3 and 6): only public signing keys this provider can verify client assertions
with are stored, and every other set is refused with a message that says what is wrong."""

from __future__ import annotations

import functools
import html
import json
from typing import Any

import pytest
from django.urls import reverse
from jwcrypto import jwk

from delegation_idp.models import Party

pytestmark = [pytest.mark.rfc("7517-5"), pytest.mark.django_db]


@functools.cache
def private(kind: str) -> jwk.JWK:
    if kind.startswith("RSA"):
        return jwk.JWK.generate(kty="RSA", size=int(kind[3:]))
    if kind == "oct":
        return jwk.JWK.generate(kty="oct", size=256)
    if kind == "Ed25519":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519")
    return jwk.JWK.generate(kty="EC", crv=kind)


def public(kind: str, **members: Any) -> dict[str, Any]:
    data = json.loads(private(kind).export_public())
    return {**data, **members}


@pytest.fixture
def party() -> Party:
    return Party.objects.create(uri="https://keys.example.com", name="Keys", kind=Party.AGENT)


def save_jwks(admin_client: Any, party: Party, jwks: Any) -> Any:
    """Post the party's change form with ``jwks`` (JSON text, or a value to serialise)."""
    return admin_client.post(
        reverse("admin:delegation_idp_party_change", args=[party.pk]),
        {
            "uri": party.uri,
            "name": party.name,
            "kind": party.kind,
            "contact": "",
            "enabled": "on",
            "application": "",
            "jwks": jwks if isinstance(jwks, str) else json.dumps(jwks),
            "resource_prefixes": "",
            "delegation_rules-TOTAL_FORMS": "0",
            "delegation_rules-INITIAL_FORMS": "0",
            "delegation_rules-MIN_NUM_FORMS": "0",
            "delegation_rules-MAX_NUM_FORMS": "1000",
        },
    )


def ec_with_bad_point() -> dict[str, Any]:
    return public("P-256", x="AAAA", kid="broken")


BAD = {
    "not_an_object": ("[1, 2]", 'A JWK set is a JSON object with a "keys" list'),
    "keys_not_a_list": ({"keys": {"kty": "EC"}}, 'A JWK set is a JSON object with a "keys" list'),
    "private_members": (
        {"keys": [json.loads(private("P-256").export_private())]},
        "it holds private key members (d); register the public key only.",
    ),
    "private_rsa": (
        {"keys": [json.loads(private("RSA2048").export_private())]},
        "it holds private key members (d, p, q, dp, dq, qi)",
    ),
    "symmetric": (
        {"keys": [json.loads(private("oct").export())]},
        "a symmetric (oct) key is a shared secret",
    ),
    "unknown_kty": ({"keys": [{"kty": "XYZ", "kid": "x"}]}, 'unknown key type "XYZ"'),
    "unknown_crv": ({"keys": [public("P-256", crv="P-192")]}, 'unsupported curve "P-192" for EC'),
    "alg_off_the_allow_list": (
        {"keys": [public("RSA2048", alg="PS256")]},
        'alg "PS256" is not allowed here (allowed: ES256, EdDSA, RS256).',
    ),
    "alg_none": ({"keys": [public("RSA2048", alg="none")]}, 'alg "none" is not allowed here'),
    "alg_of_another_type": (
        {"keys": [public("P-256", alg="RS256")]},
        'alg "RS256" does not fit this EC key (it signs with ES256).',
    ),
    "no_allowed_alg_for_the_curve": (
        {"keys": [public("P-521")]},
        "no allowed algorithm signs with this key (needs one of ES512",
    ),
    "duplicate_kids": (
        {"keys": [public("P-256", kid="k"), public("Ed25519", kid="k")]},
        'Key 2 (kid "k"): another key has the same kid; each kid names one key.',
    ),
    "weak_rsa": (
        {"keys": [public("RSA1024", kid="old")]},
        'Key 1 (kid "old"): an RSA key of 1024 bits is too weak; at least 2048 are required.',
    ),
    "unloadable": ({"keys": [ec_with_bad_point()]}, 'Key 1 (kid "broken"): it is not a valid JWK'),
    "kid_not_a_string": ({"keys": [public("P-256", kid=7)]}, "kid must be a non-empty string"),
    "encryption_key": ({"keys": [public("P-256", use="enc")]}, 'a client key signs ("sig")'),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_jwk_set_is_refused_with_a_clear_message(admin_client: Any, party: Party, case: str) -> None:
    jwks, message = BAD[case]
    response = save_jwks(admin_client, party, jwks)
    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors["jwks"]
    assert any(message in error for error in errors), errors
    assert html.escape(message) in response.content.decode()
    party.refresh_from_db()
    assert party.jwks is None


def test_every_problem_of_a_set_is_listed(admin_client: Any, party: Party) -> None:
    jwks = {"keys": [public("RSA1024", kid="a"), public("P-256", alg="RS256", kid="a")]}
    errors = save_jwks(admin_client, party, jwks).context["adminform"].form.errors["jwks"]
    assert [error.split(":")[0] for error in errors] == [
        'Key 1 (kid "a")',
        'Key 2 (kid "a")',
        'Key 2 (kid "a")',
    ]


@pytest.mark.rfc("7517-4.4")
def test_public_signing_keys_with_and_without_alg_are_saved(admin_client: Any, party: Party) -> None:
    jwks = {
        "keys": [
            public("P-256", kid="ec", use="sig"),
            public("RSA2048", kid="rsa"),  # no alg: RS256 from the header, within the allow-list
            public("RSA3072", kid="rsa-2", alg="RS256"),
            public("Ed25519"),  # no kid either: chosen by its type when the header names none
        ]
    }
    response = save_jwks(admin_client, party, jwks)
    assert response.status_code == 302, response.context["adminform"].form.errors
    party.refresh_from_db()
    assert party.jwks == jwks


def test_an_empty_field_means_no_keys(admin_client: Any, party: Party) -> None:
    Party.objects.filter(pk=party.pk).update(jwks={"keys": [public("P-256")]})
    assert save_jwks(admin_client, party, "").status_code == 302
    party.refresh_from_db()
    assert party.jwks is None
