"""Findings of the security review of leg 2, each refused with its exact error, no token and
an audit record (these failed before the fix: a superuser signed in by another organisation's
assertion, a 500 on an ``exp`` too large for a float, a day-long ID-JAG accepted)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from delegation_idp.models import TrustedIssuer
from tests.helpers import snapshot
from tests.idjag.test_redeeming_refusals import refused

pytestmark = pytest.mark.usefixtures("trusted")


def test_a_new_trusted_issuer_creates_users_just_in_time_by_default():
    issuer = TrustedIssuer(
        issuer="https://other.example.com", name="Other", jwks_uri="https://other.example.com/j"
    )
    assert issuer.user_mapping == TrustedIssuer.JUST_IN_TIME


@pytest.mark.parametrize("flag", ["is_staff", "is_superuser"])
def test_an_assertion_never_signs_in_a_local_administrator(flag: str, redeem, make_id_jag):
    admin = get_user_model().objects.create_user("root-admin", password="x", **{flag: True})
    before = snapshot()
    refused(
        redeem(make_id_jag(sub=admin.get_username())), before, 400, "invalid_grant", "id_jag_unknown_user"
    )


def test_users_are_matched_by_a_unique_field_only(trusted: Any):
    trusted.user_field = "email"  # Django's email is not unique: two accounts may share it
    with pytest.raises(ValidationError) as raised:
        trusted.full_clean()
    assert "user_field" in raised.value.message_dict
    trusted.user_field = "username"
    trusted.full_clean()


@pytest.mark.parametrize(
    ("case", "exp"),
    [("too-large-for-a-float", 10**400), ("a-day-long", None)],
    ids=["too-large-for-a-float", "a-day-long"],
)
def test_an_expiry_out_of_bounds_is_refused_not_a_500(case: str, exp: Any, redeem, make_id_jag):
    before = snapshot()
    if exp is None:
        exp = int(time.time()) + 86400
    refused(redeem(make_id_jag(exp=exp)), before, 400, "invalid_grant", "id_jag_expired")


def test_an_over_long_subject_is_refused(redeem, make_id_jag, trusted: Any):
    TrustedIssuer.objects.filter(pk=trusted.pk).update(user_mapping=TrustedIssuer.JUST_IN_TIME)
    before = snapshot()
    refused(redeem(make_id_jag(sub="s" * 300)), before, 400, "invalid_grant", "id_jag_malformed")
