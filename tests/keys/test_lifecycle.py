"""The life of a signing key, next -> current -> retired -> removed, under a controllable clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from delegation_idp.models import AuditEvent, SigningKey, TokenLineage
from delegation_idp.provider import keys, rotation
from tests.helpers import assert_oauth_error, decode

CACHE = 300  # JWKS_CACHE_SECONDS default
PERIOD = 7 * 24 * 3600  # KEY_ROTATION_PERIOD default


def kid_of(token: str) -> str:
    return decode(token)[0]["kid"]


def states() -> dict[str, str]:
    return dict(SigningKey.objects.values_list("kid", "state"))


@pytest.mark.django_db
def test_full_life_of_a_key(clock, cast, issue_user_token, exchange, introspect, jwks):
    t0 = clock.now()
    first = keys.ensure_current_key()
    assert rotation.rotate_keys().changed is False  # nothing due on a new site
    assert jwks() == [first.kid]

    # Not due until one JWKS cache lifetime before the period ends.
    clock.advance(PERIOD - CACHE - 1)
    assert rotation.rotate_keys().created is None

    # Due: a next key is published, not signing yet.
    clock.advance(1)
    result = rotation.rotate_keys()
    second = result.created
    assert second and result.promoted is None
    assert states() == {first.kid: "current", second: "next"}
    assert sorted(jwks()) == sorted([first.kid, second])
    assert rotation.rotate_keys().changed is False  # idempotent

    # Tokens issued now are signed by the current key, and the next is already published.
    old_user_token = issue_user_token()
    assert kid_of(old_user_token) == first.kid

    # One JWKS cache lifetime later the next key takes over.
    clock.advance(CACHE - 1)
    assert rotation.rotate_keys().promoted is None
    clock.advance(1)
    result = rotation.rotate_keys()
    assert (result.promoted, result.retired) == (second, first.kid)
    assert states() == {first.kid: "retired", second: "current"}
    retired = SigningKey.objects.get(kid=first.kid)
    assert retired.retired_at == clock.now()
    assert retired.remove_after == clock.now() + rotation.retention_after_retirement()

    # The old key stays published; its token still exchanges and introspects as active.
    assert first.kid in jwks()
    assert introspect(old_user_token)["active"] is True
    response = exchange("agent1", old_user_token, cast["agent2"].uri)
    assert response.status_code == 200, response.content
    new_token = response.json()["access_token"]
    assert kid_of(new_token) == second  # new tokens carry the new kid
    assert kid_of(issue_user_token()) == second
    assert introspect(new_token, "agent2")["active"] is True

    # Published for as long as the old token lives (plus skew and caches).
    old_exp = TokenLineage.objects.get(jti=decode(old_user_token)[1]["jti"]).expires_at
    clock.to(old_exp)
    rotation.rotate_keys()
    assert first.kid in jwks()
    clock.to(retired.remove_after - timedelta(seconds=1))
    assert rotation.rotate_keys().removed == ()
    assert first.kid in jwks()

    # Retirement ends: unpublished, even before a rotation deletes it ...
    clock.to(retired.remove_after)
    assert first.kid not in jwks()
    response = exchange("agent1", old_user_token, cast["agent2"].uri)
    assert_oauth_error(response, 400, "invalid_request")
    assert AuditEvent.objects.filter(reason="subject_unknown_kid").count() == 1
    # ... and then deleted with its private key.
    assert rotation.rotate_keys().removed == (first.kid,)
    assert first.kid not in states()
    assert introspect(old_user_token) == {"active": False}
    assert_oauth_error(exchange("agent1", old_user_token, cast["agent2"].uri), 400, "invalid_request")
    assert clock.now() - t0 > timedelta(seconds=PERIOD)


@pytest.mark.django_db
def test_retired_key_stays_while_a_longer_lived_token_lives(
    clock, idp, cast, issue_user_token, exchange, jwks
):
    """Lifetimes shortened after a token was issued: removal waits for the token anyway."""
    first = keys.ensure_current_key()
    token = issue_user_token()  # lives ACCESS_TOKEN_EXPIRE_SECONDS (3600 s)
    rotation.rotate_keys(force=True)
    clock.advance(CACHE)
    assert rotation.rotate_keys().retired == first.kid

    short = {**django_settings.OAUTH2_PROVIDER, "ACCESS_TOKEN_EXPIRE_SECONDS": 60}
    from django.test import override_settings

    with override_settings(OAUTH2_PROVIDER=short):
        from oauth2_provider.settings import oauth2_settings

        oauth2_settings.reload()
        try:
            # The plan said remove after 60 s of life; the token says otherwise.
            SigningKey.objects.filter(kid=first.kid).update(
                remove_after=clock.now() + rotation.retention_after_retirement()
            )
            clock.advance(rotation.retention_after_retirement().total_seconds())
            result = rotation.rotate_keys()
            assert result.removed == () and result.extended == (first.kid,)
            assert first.kid in jwks()
            assert exchange("agent1", token, cast["agent2"].uri).status_code == 200
            exp = TokenLineage.objects.get(jti=decode(token)[1]["jti"]).expires_at
            clock.to(exp + timedelta(seconds=30 + CACHE))  # skew + JWKS cache
            assert rotation.rotate_keys().removed == (first.kid,)
        finally:
            oauth2_settings.reload()


@pytest.mark.django_db
def test_force_publishes_next_first_and_never_two_next_keys(clock):
    current = keys.ensure_current_key()
    created = rotation.rotate_keys(force=True).created
    assert created and rotation.rotate_keys(force=True).created is None
    assert SigningKey.objects.filter(state="next").count() == 1
    upcoming = SigningKey.objects.get(kid=created)
    assert upcoming.activates_at == clock.now() + timedelta(seconds=CACHE)
    assert keys.keyset.signing_key().kid == current.kid


@pytest.mark.django_db
def test_new_key_uses_the_configured_algorithm(clock, idp):
    keys.ensure_current_key()
    idp(SIGNING_ALGORITHM="EdDSA")
    created = rotation.rotate_keys(force=True).created
    assert SigningKey.objects.get(kid=created).alg == "EdDSA"


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(min_value=1, max_value=3 * 24 * 3600)),
        st.tuples(st.just("rotate"), st.booleans()),
        st.tuples(st.just("sign"), st.integers(min_value=60, max_value=3600)),
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.django_db
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_invariants_hold_for_any_sequence(operations, clock):
    """Exactly one current key, at most one next, and the key of every live token published."""
    SigningKey.objects.all().delete()
    TokenLineage.objects.all().delete()
    keys.keyset.invalidate()
    start = clock.now()
    signed: list[tuple[str, object]] = []
    for number, (operation, value) in enumerate(operations):
        if operation == "advance":
            clock.advance(value)
        elif operation == "rotate":
            rotation.rotate_keys(force=value)
        else:
            kid = keys.keyset.signing_key().kid
            exp = clock.now() + timedelta(seconds=value)
            TokenLineage.objects.create(
                jti=f"t{number}",
                root_jti=f"t{number}",
                path=f"t{number}",
                grant_type="test",
                subject="s",
                client_id="c",
                kid=kid,
                issued_at=clock.now(),
                expires_at=exp,
            )
            signed.append((kid, exp))
        rotation.rotate_keys()  # beat runs between any two events
        assert SigningKey.objects.filter(state="current").count() == 1
        assert SigningKey.objects.filter(state="next").count() <= 1
        published = {jwk["kid"] for jwk in keys.published_jwks()}
        margin = timedelta(seconds=30 + CACHE)
        for kid, exp in signed:
            if clock.now() <= exp + margin:  # type: ignore[operator]
                assert kid in published, (kid, clock.now() - start)
        assert keys.keyset.signing_key().kid in published
