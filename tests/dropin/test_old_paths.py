"""The dotted paths sites put in their settings before the package was laid out by role keep
working: each is the same object as its new path, it warns once (DeprecationWarning), and
the hook checks E001 to E004 accept both spellings."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest
from django.test import override_settings
from django.utils.module_loading import import_string
from oauth2_provider.settings import oauth2_settings

from delegation_idp import checks

OLD_AND_NEW = [
    ("delegation_idp.views.TokenView", "delegation_idp.provider.views.TokenView"),
    ("delegation_idp.health.HealthView", "delegation_idp.provider.health.HealthView"),
    ("delegation_idp.server.DelegationServer", "delegation_idp.provider.server.DelegationServer"),
    (
        "delegation_idp.validators.DelegationValidator",
        "delegation_idp.provider.validators.DelegationValidator",
    ),
    (
        "delegation_idp.backends.DelegationOAuthLibCore",
        "delegation_idp.provider.backends.DelegationOAuthLibCore",
    ),
    ("delegation_idp.claims.generate_access_token", "delegation_idp.provider.tokens.generate_access_token"),
    ("delegation_idp.claims.email_subject", "delegation_idp.provider.tokens.email_subject"),
    (
        "delegation_idp.signin.SignInLockoutMiddleware",
        "delegation_idp.provider.signin.SignInLockoutMiddleware",
    ),
    (
        "delegation_idp.signin.SignInLockoutModelBackend",
        "delegation_idp.provider.signin.SignInLockoutModelBackend",
    ),
    (
        "delegation_idp.contrib.drf.DelegatedTokenAuthentication",
        "delegation_idp.resource_server.drf.DelegatedTokenAuthentication",
    ),
    (
        "delegation_idp.contrib.validation.TokenValidator",
        "delegation_idp.resource_server.validation.TokenValidator",
    ),
    (
        "delegation_idp.contrib.mcp.DelegationTokenVerifier",
        "delegation_idp.resource_server.mcp.DelegationTokenVerifier",
    ),
]


@pytest.mark.parametrize(("old", "new"), OLD_AND_NEW, ids=[old for old, _ in OLD_AND_NEW])
def test_an_old_path_is_the_new_object_and_warns(old, new):
    module = old.rsplit(".", 1)[0]
    sys.modules.pop(module, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.import_module(module)
    assert any(issubclass(w.category, DeprecationWarning) and module in str(w.message) for w in caught)
    assert import_string(old) is import_string(new)


GENERATOR_MODULE = {"delegation_idp.": "claims", "delegation_idp.provider.": "tokens"}


def hooks(prefix: str) -> dict[str, str]:
    return {
        "OAUTH2_SERVER_CLASS": f"{prefix}server.DelegationServer",
        "OAUTH2_VALIDATOR_CLASS": f"{prefix}validators.DelegationValidator",
        "OAUTH2_BACKEND_CLASS": f"{prefix}backends.DelegationOAuthLibCore",
        "ACCESS_TOKEN_GENERATOR": f"{prefix}{GENERATOR_MODULE[prefix]}.generate_access_token",
    }


@pytest.mark.parametrize("prefix", ["delegation_idp.", "delegation_idp.provider."])
def test_the_hook_checks_accept_the_old_and_the_new_paths(settings, prefix):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **hooks(prefix)}
    oauth2_settings.reload()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert [m.id for m in checks.check_hooks(None)] == []
    finally:
        oauth2_settings.reload()


def test_the_hook_checks_refuse_a_path_of_something_else(settings):
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "OAUTH2_VALIDATOR_CLASS": "oauth2_provider.oauth2_validators.OAuth2Validator",
    }
    oauth2_settings.reload()
    try:
        assert "delegation_idp.E002" in [m.id for m in checks.check_hooks(None)]
    finally:
        oauth2_settings.reload()


def test_the_lockout_middleware_check_accepts_the_old_path():
    with override_settings(MIDDLEWARE=["delegation_idp.signin.SignInLockoutMiddleware"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert "delegation_idp.W005" not in [m.id for m in checks.check_sign_in_lockout(None)]
    with override_settings(MIDDLEWARE=[]):
        assert "delegation_idp.W005" in [m.id for m in checks.check_sign_in_lockout(None)]
