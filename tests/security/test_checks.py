"""Deployment security gates: each ``deploy=True`` check fires with
its stable id and a hint; the example site's production settings pass
``manage.py check --deploy`` with none of ours raised; the tokens a request carries
never reach error reports or logs."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from typing import Any
from urllib.parse import urlencode

import oauthlib
import pytest
from django.conf import settings
from django.core.signals import got_request_exception
from django.test import RequestFactory, override_settings
from django.views.debug import SafeExceptionReporterFilter

from delegation_idp import checks
from delegation_idp.models import AuditEvent
from delegation_idp.provider.views import TokenView
from tests import procs
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import assert_oauth_error, snapshot

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
REDIS_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://x",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
UNBOUNDED_REDIS_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}
}
LOCMEM_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The same, with DPoP proofs and ID-JAG jti values remembered in a shared cache: only the
# throttle cache is process-local (a process-local replay cache is W105's and W109's).
LOCMEM_THROTTLE_CACHE = {**LOCMEM_CACHE, "dpop": REDIS_CACHE["default"]}
SHARED_REPLAY = {"DPOP_REPLAY_CACHE_ALIAS": "dpop", "ID_JAG_REPLAY_CACHE_ALIAS": "dpop"}


def deploy_ids(*, idp: dict[str, Any] | None = None, oauth2: dict[str, Any] | None = None, **django: Any):
    overrides: dict[str, Any] = {"CACHES": REDIS_CACHE, **django}
    if idp is not None:
        overrides["DELEGATION_IDP"] = {**settings.DELEGATION_IDP, **idp}
    if oauth2 is not None:
        overrides["OAUTH2_PROVIDER"] = {**settings.OAUTH2_PROVIDER, **oauth2}
    with override_settings(**overrides):
        messages = checks.check_deploy(None)
    for message in messages:
        assert message.hint and message.id.startswith("delegation_idp.")
    return [m.id for m in messages]


SAFE = {
    "DEBUG": False,
    "idp": {"ISSUER": "https://idp.example.com", "THROTTLE_RATES": {"client": "600/min"}},
    "oauth2": {"ALLOWED_REDIRECT_URI_SCHEMES": ["https"], "ACCESS_TOKEN_EXPIRE_SECONDS": 3600},
}


def with_safe(**changes: Any) -> dict[str, Any]:
    merged = {**SAFE, "idp": dict(SAFE["idp"]), "oauth2": dict(SAFE["oauth2"])}
    for key, value in changes.items():
        if key in ("idp", "oauth2"):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def test_safe_production_configuration_raises_nothing():
    assert deploy_ids(**SAFE) == []


@pytest.mark.parametrize(
    ("label", "changes", "expected"),
    [
        ("http-issuer", {"idp": {"ISSUER": "http://idp.example.com"}}, "delegation_idp.E101"),
        (
            "access-lifetime-too-long",
            {"oauth2": {"ACCESS_TOKEN_EXPIRE_SECONDS": 7 * 86400}},
            "delegation_idp.E102",
        ),
        ("access-lifetime-too-short", {"oauth2": {"ACCESS_TOKEN_EXPIRE_SECONDS": 5}}, "delegation_idp.E102"),
        ("exchanged-lifetime-too-long", {"idp": {"EXCHANGED_TOKEN_LIFETIME": 86400}}, "delegation_idp.E102"),
        (
            "leaky-exception-filter",
            {"DEFAULT_EXCEPTION_REPORTER_FILTER": "tests.security.test_checks.LeakyFilter"},
            "delegation_idp.E103",
        ),
        (
            "http-redirects",
            {"oauth2": {"ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"]}},
            "delegation_idp.W101",
        ),
        (
            "process-local-throttle-cache",
            {"CACHES": LOCMEM_THROTTLE_CACHE, "idp": SHARED_REPLAY},
            "delegation_idp.W102",
        ),
        # A hung Redis would hold every request for as long as the socket waits: the circuit
        # breaker bounds only waits that end.
        ("throttle-cache-without-socket-timeout", {"CACHES": UNBOUNDED_REDIS_CACHE}, "delegation_idp.W104"),
    ],
)
def test_each_deploy_gate_fires(label, changes, expected):
    assert deploy_ids(**with_safe(**changes)) == [expected]


def test_https_issuer_is_not_required_in_debug():
    assert deploy_ids(**with_safe(DEBUG=True, idp={"ISSUER": "http://127.0.0.1:8000"})) == []


def test_oauthlib_debug_mode_is_an_error():
    oauthlib.set_debug(True)
    try:
        assert deploy_ids(**SAFE) == ["delegation_idp.E104"]
    finally:
        oauthlib.set_debug(False)


def test_process_local_cache_is_fine_without_throttling():
    changes = with_safe(CACHES=LOCMEM_THROTTLE_CACHE, idp={"THROTTLE_RATES": {}, **SHARED_REPLAY})
    assert deploy_ids(**changes) == []


def test_a_process_local_cache_warns_for_dpop_and_id_jag_replay_too():
    """The whole cache process-local: throttles, DPoP proofs and ID-JAG jti values alike would
    count per process."""
    assert deploy_ids(**with_safe(CACHES=LOCMEM_CACHE)) == [
        "delegation_idp.W102",
        "delegation_idp.W105",
        "delegation_idp.W109",
    ]


@pytest.mark.parametrize(
    ("idp", "expected"),
    [
        ({"ALLOWED_ALGORITHMS": ["ES256", "HS256"]}, "delegation_idp.E013"),
        ({"SIGNING_ALGORITHM": "none", "ALLOWED_ALGORITHMS": ["none"]}, "delegation_idp.E013"),
        ({"KEY_ENCRYPTION_KEYS": []}, "delegation_idp.E005"),
    ],
)
def test_symmetric_algorithms_and_missing_key_encryption_keys_are_errors(idp, expected):
    with override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, **idp}):
        ids = [m.id for m in checks.check_policy_options(None) + checks.check_keys(None)]
    assert expected in ids


class LeakyFilter:
    """An exception reporter filter that hides nothing (for E103)."""


def production_env(tmp_path) -> dict[str, str]:
    env = procs.site_env(
        tmp_path,
        issuer="https://idp.example.com",
        redis_url="redis://127.0.0.1:6379/6",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="idp.example.com",
        IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32),
    )
    # Production defaults: HTTPS redirect and secure cookies on.
    env.pop("DJANGO_SECURE_SSL_REDIRECT", None)
    env.pop("DJANGO_SECURE_COOKIES", None)
    return env


def test_example_production_settings_pass_check_deploy(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=procs.ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "delegation_idp." not in output, output


def test_example_production_settings_without_redis_warn_about_throttling(tmp_path):
    env = production_env(tmp_path)
    env.pop("REDIS_URL")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=procs.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "delegation_idp.W102" in result.stdout + result.stderr


# -- tokens out of error reports and logs ------------------------------------------------------


def hostile_form(token: str) -> dict[str, str]:
    return {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "actor_token": token + "-actor",
        "actor_token_type": ACCESS_TOKEN_TYPE,
        "client_assertion": token + "-assertion",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "audience": "https://agent2.example.com",
    }


def test_sensitive_parameters_are_hidden_from_error_reports(cast, user_token):
    request = RequestFactory().post(
        "/o/token/", urlencode(hostile_form(user_token)), content_type="application/x-www-form-urlencoded"
    )
    TokenView.as_view()(request)
    cleansed = SafeExceptionReporterFilter().get_post_parameters(request)
    for name in ("subject_token", "actor_token", "client_assertion"):
        assert cleansed[name] != request.POST[name]
        assert user_token not in cleansed[name]


def test_an_unhandled_error_never_reaches_django_error_reports(
    cast, user_token, token_endpoint, caplog, monkeypatch
):
    """Frame variables of django-oauth-toolkit and oauthlib hold the raw body: the token view
    answers a JSON 500 itself, logs without them, and audits the attempt."""
    from delegation_idp.rfc8693 import grant

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(grant, "decide", explode)
    reported: list[Any] = []

    def receiver(**kwargs: Any) -> None:
        reported.append(kwargs)

    got_request_exception.connect(receiver)
    caplog.set_level(logging.DEBUG)
    before_tokens, before_events = snapshot(), AuditEvent.objects.count()
    try:
        response = token_endpoint(
            {
                k: v
                for k, v in hostile_form(user_token).items()
                if not k.startswith(("actor", "client_assertion"))
            },
            cast["agent1"],
        )
    finally:
        got_request_exception.disconnect(receiver)
    assert_oauth_error(response, 500, "server_error")
    assert reported == []
    assert snapshot() == before_tokens
    event = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == before_events + 1
    assert (event.decision, event.error, event.reason) == ("denied", "server_error", "unhandled_exception")
    assert "RuntimeError" in caplog.text
    assert user_token not in caplog.text
    assert user_token.split(".")[2] not in caplog.text


def test_tokens_never_logged_on_any_refusal(ctx, client, caplog):
    """Run the adversarial matrix with every logger at DEBUG: no token in any record."""
    from .test_matrix import MATRIX, send

    caplog.set_level(logging.DEBUG)
    token = ctx.user_token
    for family, case in MATRIX:
        if family != "authz":  # those change the cast (disable, revoke) as they build
            send(client, case.build(ctx), ctx)
    assert token.split(".")[2] not in caplog.text
    assert token.split(".")[1] not in caplog.text
