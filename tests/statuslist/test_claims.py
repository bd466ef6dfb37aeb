"""The claims of the draft: the referenced token's ``status`` (section 6.2) and the Status
List Token's (section 5.1), checked as section 8.3 says."""

from __future__ import annotations

import pytest

from delegation_idp.statuslist import (
    Reference,
    StatusListError,
    list_token_claims,
    reference_claim,
    reference_of,
    validate_list_claims,
)

URI = "https://idp.example.com/o/statuslists/abc"
ISSUER = "https://idp.example.com"


@pytest.mark.rfc("status-list-21-6.2")
def test_a_reference_reads_back():
    claims = {"status": reference_claim(7, URI)}
    assert claims["status"] == {"status_list": {"idx": 7, "uri": URI}}
    assert reference_of(claims) == Reference(7, URI)
    assert reference_of({}) is None


@pytest.mark.rfc("status-list-21-6.2")
@pytest.mark.parametrize(
    "status",
    [
        "x",
        {},
        {"status_list": []},
        {"status_list": {"idx": -1, "uri": URI}},
        {"status_list": {"idx": True, "uri": URI}},
        {"status_list": {"idx": 1.5, "uri": URI}},
        {"status_list": {"idx": 1}},
        {"status_list": {"idx": 1, "uri": "ftp://x/y"}},
        {"status_list": {"idx": 1, "uri": URI + "#frag"}},
    ],
)
def test_a_malformed_reference_is_refused(status):
    with pytest.raises(StatusListError) as refused:
        reference_of({"status": status})
    assert refused.value.reason == "bad_reference"


def claims(**overrides):
    base = list_token_claims(uri=URI, issuer=ISSUER, iat=1000, exp=2000, ttl=60, lst="eNrbuRgAAhcBXQ")
    base.update(overrides)
    return base


@pytest.mark.rfc("status-list-21-5.1")
def test_the_list_token_claims_of_the_draft():
    made = claims()
    assert set(made) >= {"sub", "iat", "exp", "ttl", "status_list"}
    assert validate_list_claims(made, uri=URI, issuer=ISSUER, now=1500, leeway=0) == (1, "eNrbuRgAAhcBXQ", 60)


@pytest.mark.rfc("status-list-21-8.3")
@pytest.mark.parametrize(
    ("overrides", "now", "reason"),
    [
        ({"sub": URI + "x"}, 1500, "sub_mismatch"),
        ({"iss": "https://other.example.com"}, 1500, "bad_iss"),
        ({}, 2500, "expired"),
        ({"iat": 9999}, 1500, "malformed"),
        ({"ttl": 0}, 1500, "malformed"),
        ({"ttl": "60"}, 1500, "malformed"),
        ({"status_list": {"bits": 3, "lst": "x"}}, 1500, "malformed"),
        ({"status_list": {"bits": 1}}, 1500, "malformed"),
        ({"status_list": None}, 1500, "malformed"),
    ],
)
def test_a_list_token_that_breaks_a_rule_is_refused(overrides, now, reason):
    with pytest.raises(StatusListError) as refused:
        validate_list_claims(claims(**overrides), uri=URI, issuer=ISSUER, now=now, leeway=0)
    assert refused.value.reason == reason


def test_a_huge_ttl_is_capped():
    assert validate_list_claims(claims(ttl=10**9), uri=URI, issuer=ISSUER, now=1500, leeway=0)[2] == 86400
