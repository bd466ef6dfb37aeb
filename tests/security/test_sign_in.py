"""User sign-in brute-force protection: wrong passwords count per (username, source
address) and per address, in the throttle cache, at the site's login page and at
django-oauth-toolkit's password grant alike; a lockout stays at the address it came from."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import override_settings

from delegation_idp import checks
from delegation_idp.models import AuditEvent
from tests.helpers import assert_oauth_error, snapshot, with_idp

ATTACKER = "203.0.113.77"
ELSEWHERE = "198.51.100.30"
PER_USER = 5
PER_ADDRESS = 10


@pytest.fixture(autouse=True)
def _limits():
    with with_idp(
        SIGN_IN_FAILURE_LIMIT=PER_USER, SIGN_IN_ADDRESS_FAILURE_LIMIT=PER_ADDRESS, SIGN_IN_FAILURE_WINDOW=900
    ):
        yield


@pytest.fixture
def credentials(cast: Any) -> dict[str, str]:
    return dict(cast.data["user"])


@pytest.fixture
def login(client: Any):
    def post(username: str, password: str, address: str = ATTACKER) -> Any:
        client.logout()
        return client.post(
            "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address
        )

    return post


def signed_in(client: Any) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def password_client(db: Any):
    """A confidential client allowed the password grant (enabled here explicitly)."""
    from oauth2_provider.models import get_application_model

    app = get_application_model().objects.create(
        name="password-grant",
        client_type="confidential",
        authorization_grant_type="password",
        client_secret="password-grant-secret",
        hash_client_secret=True,
    )
    with override_settings(
        OAUTH2_PROVIDER={**settings.OAUTH2_PROVIDER, "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False}
    ):
        yield app


@pytest.fixture
def password_grant(client: Any, password_client: Any):
    def post(username: str, password: str, address: str = ATTACKER) -> Any:
        form = {
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": password_client.client_id,
            "client_secret": "password-grant-secret",
        }
        body = urlencode(form)
        return client.post(
            "/o/token/", body, content_type="application/x-www-form-urlencoded", REMOTE_ADDR=address
        )

    return post


def assert_login_locked(response: Any) -> None:
    assert response.status_code == 429, response.status_code
    assert int(response["Retry-After"]) == 900
    assert response["Cache-Control"].startswith("no-store")
    assert b"Too many failed sign-in attempts" in response.content


# -- the login page ----------------------------------------------------------------------


def test_twenty_wrong_passwords_at_the_login_page_are_stopped(client, login, credentials):
    statuses = [login(credentials["username"], f"wrong-{n}").status_code for n in range(20)]
    assert statuses[:PER_USER] == [200] * PER_USER, statuses  # the form's own error
    assert set(statuses[PER_USER:]) == {429}, statuses
    # The right password does not get in from this address during the lockout ...
    assert_login_locked(login(**credentials))
    assert not signed_in(client)
    # ... but the user is not locked out everywhere: from their own address they sign in.
    response = login(**credentials, address=ELSEWHERE)
    assert response.status_code == 302, response.status_code
    assert signed_in(client)


def test_password_spraying_from_one_address_is_stopped(client, login, django_user_model, credentials):
    """One wrong password for each of twenty usernames: the per-address count stops it."""
    statuses = [login(f"user{n}@example.com", "Winter2026!").status_code for n in range(20)]
    assert statuses[:PER_ADDRESS] == [200] * PER_ADDRESS, statuses
    assert set(statuses[PER_ADDRESS:]) == {429}, statuses
    assert_login_locked(login(**credentials))
    assert login(**credentials, address=ELSEWHERE).status_code == 302


def test_a_successful_sign_in_clears_that_users_count_at_that_address(client, login, credentials):
    for n in range(PER_USER - 1):
        assert login(credentials["username"], f"wrong-{n}").status_code == 200
    assert login(**credentials).status_code == 302
    for n in range(PER_USER - 1):
        assert login(credentials["username"], f"again-{n}").status_code == 200
    assert login(**credentials).status_code == 302


def test_the_admin_login_is_covered_too(client, credentials):
    for n in range(PER_USER):
        client.post(
            "/admin/login/", {"username": credentials["username"], "password": f"x{n}"}, REMOTE_ADDR=ATTACKER
        )
    response = client.post("/admin/login/", credentials, REMOTE_ADDR=ATTACKER)
    assert_login_locked(response)


# -- the password grant --------------------------------------------------------------------


@pytest.mark.rfc("6749-5.2")
def test_twenty_wrong_passwords_at_the_password_grant_are_stopped(password_grant, credentials):
    before = snapshot()
    responses = [password_grant(credentials["username"], f"wrong-{n}") for n in range(20)]
    for response in responses[:PER_USER]:
        assert_oauth_error(response, 400, "invalid_grant")
    for response in responses[PER_USER:]:
        assert_oauth_error(response, 429, "slow_down")
        assert int(response["Retry-After"]) == 900
    locked = password_grant(**credentials)
    assert_oauth_error(locked, 429, "slow_down")
    assert snapshot() == before
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and (event.decision, event.reason) == ("denied", "sign_in_locked")
    # From another address the user's client still gets its token.
    response = password_grant(**credentials, address=ELSEWHERE)
    assert response.status_code == 200, response.content


def test_the_login_page_and_the_password_grant_share_one_count(login, password_grant, credentials):
    for n in range(3):
        assert login(credentials["username"], f"page-{n}").status_code == 200
    for n in range(PER_USER - 3):
        assert_oauth_error(password_grant(credentials["username"], f"grant-{n}"), 400, "invalid_grant")
    assert_oauth_error(password_grant(**credentials), 429, "slow_down")
    assert_login_locked(login(**credentials))


# -- configuration ---------------------------------------------------------------------------


def test_the_example_site_is_configured():
    assert settings.AUTHENTICATION_BACKENDS == ["delegation_idp.provider.signin.SignInLockoutModelBackend"]
    assert "delegation_idp.provider.signin.SignInLockoutMiddleware" in settings.MIDDLEWARE
    assert not [m for m in checks.check_sign_in_lockout(None) if m.id.startswith("delegation_idp.")]


def test_a_check_warns_when_the_backend_is_missing_or_not_first():
    model = "django.contrib.auth.backends.ModelBackend"
    for backends in (
        [model],
        [model, "delegation_idp.provider.signin.SignInLockoutBackend"],
        ["no.such.Backend"],
    ):
        with override_settings(AUTHENTICATION_BACKENDS=backends):
            ids = [m.id for m in checks.check_sign_in_lockout(None)]
        assert "delegation_idp.W004" in ids


def test_a_check_warns_when_the_middleware_is_missing():
    middleware = [m for m in settings.MIDDLEWARE if "SignInLockout" not in m]
    with override_settings(MIDDLEWARE=middleware):
        ids = [m.id for m in checks.check_sign_in_lockout(None)]
    assert ids == ["delegation_idp.W005"]


def test_no_warning_when_sign_in_lockout_is_turned_off():
    with (
        with_idp(SIGN_IN_FAILURE_LIMIT=None, SIGN_IN_ADDRESS_FAILURE_LIMIT=None),
        override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]),
    ):
        assert checks.check_sign_in_lockout(None) == []
