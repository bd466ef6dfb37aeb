"""Every system check id fires for the misconfiguration it names, with a hint."""

from __future__ import annotations

import pytest
from django.urls import include, path
from oauth2_provider import urls as dot_urls

from delegation_idp import checks

from .conftest import IDP_URLS, WELLKNOWN_URLS, urlconf

KEK = "ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="
HOOKS = [
    ("OAUTH2_SERVER_CLASS", "delegation_idp.E001", "oauthlib.oauth2.Server"),
    ("OAUTH2_VALIDATOR_CLASS", "delegation_idp.E002", "oauth2_provider.oauth2_validators.OAuth2Validator"),
    ("OAUTH2_BACKEND_CLASS", "delegation_idp.E003", "oauth2_provider.oauth2_backends.OAuthLibCore"),
    (
        "ACCESS_TOKEN_GENERATOR",
        "delegation_idp.E004",
        "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    ),
]


def test_the_test_site_passes_every_check(check_ids):
    for check in (
        checks.check_hooks,
        checks.check_option_names,
        checks.check_keys,
        checks.check_issuer_and_urls,
        checks.check_policy_options,
        checks.check_rfc9700,
        checks.check_metrics,
    ):
        assert check_ids(check) == []


RFC9700_GATES = [
    ("COMPLIANT_BCP_RFC9700_PKCE_METHOD", "delegation_idp.E019"),
    ("COMPLIANT_BCP_RFC9700_PASSWORD_GRANT", "delegation_idp.E020"),
    ("COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS", "delegation_idp.E021"),
]


@pytest.mark.parametrize(("name", "check_id"), RFC9700_GATES)
def test_each_rfc9700_gate_left_off_is_an_error(check_ids, name, check_id):
    assert check_ids(checks.check_rfc9700, oauth2={name: False}) == [check_id]


def test_a_site_installed_without_the_rfc9700_gates_fails_the_check(check_ids, settings):
    # django-oauth-toolkit's defaults: every gate off.
    settings.OAUTH2_PROVIDER = {
        k: v for k, v in settings.OAUTH2_PROVIDER.items() if not k.startswith("COMPLIANT_BCP_RFC9700_")
    }
    assert check_ids(checks.check_rfc9700) == [check_id for _, check_id in RFC9700_GATES]


@pytest.mark.parametrize(("name", "check_id", "other"), HOOKS)
def test_a_missing_hook_is_reported(check_ids, settings, name, check_id, other):
    oauth2 = {k: v for k, v in settings.OAUTH2_PROVIDER.items() if k != name}
    settings.OAUTH2_PROVIDER = oauth2  # django-oauth-toolkit's default comes back
    assert check_ids(checks.check_hooks) == [check_id]


@pytest.mark.parametrize(("name", "check_id", "other"), HOOKS)
def test_a_wrong_hook_is_reported(check_ids, name, check_id, other):
    assert check_ids(checks.check_hooks, oauth2={name: other}) == [check_id]


@pytest.mark.parametrize(("name", "check_id", "other"), HOOKS)
def test_an_unimportable_hook_is_reported_not_raised(check_ids, name, check_id, other):
    assert check_ids(checks.check_hooks, oauth2={name: "delegation_idp.nowhere.Nothing"}) == [check_id]


def test_a_subclass_of_a_hook_is_accepted(check_ids):
    assert check_ids(checks.check_hooks, oauth2={"OAUTH2_SERVER_CLASS": "tests.dropin.hooks.MyServer"}) == []


def test_a_generator_overridden_through_extra_server_kwargs_is_reported(check_ids):
    from oauthlib.oauth2.rfc6749.tokens import random_token_generator

    extra = {"EXTRA_SERVER_KWARGS": {"token_generator": random_token_generator}}
    assert check_ids(checks.check_hooks, oauth2=extra) == ["delegation_idp.E004"]


def test_missing_key_encryption_key(check_ids):
    assert check_ids(checks.check_keys, idp={"KEY_ENCRYPTION_KEYS": []}) == ["delegation_idp.E005"]


def test_malformed_key_encryption_key(check_ids):
    assert check_ids(checks.check_keys, idp={"KEY_ENCRYPTION_KEYS": [KEK, "not-a-key"]}) == [
        "delegation_idp.E006"
    ]


def test_key_encryption_key_equal_to_secret_key(check_ids):
    ids = check_ids(checks.check_keys, idp={"KEY_ENCRYPTION_KEYS": [KEK]}, SECRET_KEY=KEK)
    assert ids == ["delegation_idp.E007"]


@pytest.mark.parametrize(
    "issuer",
    [None, "", "idp.example.com", "ftp://idp.example.com", "https://idp.example.com?x=1", "https://"],
)
def test_issuer_not_an_absolute_url(check_ids, issuer):
    assert check_ids(checks.check_issuer_and_urls, idp={"ISSUER": issuer}) == ["delegation_idp.E008"]


def test_issuer_with_a_path_does_not_match_root_metadata(check_ids):
    ids = check_ids(checks.check_issuer_and_urls, idp={"ISSUER": "http://testserver/tenant"})
    assert ids == ["delegation_idp.E009"]


def test_urls_not_included(check_ids):
    ids = check_ids(checks.check_issuer_and_urls, ROOT_URLCONF=urlconf(path("o/", include(dot_urls))))
    assert ids == ["delegation_idp.E010"]


def test_metadata_not_at_the_root(check_ids):
    conf = urlconf(IDP_URLS, path("auth/", include("delegation_idp.wellknown_urls")))
    assert check_ids(checks.check_issuer_and_urls, ROOT_URLCONF=conf) == ["delegation_idp.E011"]


def test_token_endpoint_is_django_oauth_toolkits(check_ids):
    conf = urlconf(path("o/", include(dot_urls)), WELLKNOWN_URLS)
    assert check_ids(checks.check_issuer_and_urls, ROOT_URLCONF=conf) == ["delegation_idp.E012"]


def test_metadata_route_shadowed_by_django_oauth_toolkits(check_ids):
    shadow = path("", include((dot_urls.metadata_urlpatterns, "dot_metadata")))
    conf = urlconf(IDP_URLS, shadow, WELLKNOWN_URLS)
    assert check_ids(checks.check_issuer_and_urls, ROOT_URLCONF=conf) == ["delegation_idp.E017"]
    # Ours first: django-oauth-toolkit's routes are never reached.
    conf = urlconf(IDP_URLS, WELLKNOWN_URLS, shadow)
    assert check_ids(checks.check_issuer_and_urls, ROOT_URLCONF=conf) == []


def test_oidc_issuer_differs_from_ours(check_ids):
    ids = check_ids(checks.check_issuer_and_urls, oauth2={"OIDC_ISS_ENDPOINT": "http://other.example"})
    assert ids == ["delegation_idp.E018"]
    assert check_ids(checks.check_issuer_and_urls, oauth2={"OIDC_ISS_ENDPOINT": "http://testserver/"}) == []


def test_issuer_host_not_allowed(check_ids):
    ids = check_ids(checks.check_issuer_and_urls, ALLOWED_HOSTS=["elsewhere.example"], DEBUG=False)
    assert ids == ["delegation_idp.W001"]


def test_misspelt_option(check_ids):
    assert check_ids(checks.check_option_names, idp={"ISUER": "x", "MAX_DEPTH": 3}) == [
        "delegation_idp.W002",
        "delegation_idp.W002",
    ]


@pytest.mark.parametrize(
    ("idp", "expected"),
    [
        ({"ALLOWED_ALGORITHMS": ["ES256", "HS256"]}, ["delegation_idp.E013"]),
        ({"ALLOWED_ALGORITHMS": ["ES256", "PS999"]}, ["delegation_idp.E014"]),
        ({"SIGNING_ALGORITHM": "RS256", "ALLOWED_ALGORITHMS": ["ES256"]}, ["delegation_idp.E015"]),
        ({"MAX_DELEGATION_DEPTH": 0}, ["delegation_idp.E016"]),
    ],
)
def test_policy_options(check_ids, idp, expected):
    assert check_ids(checks.check_policy_options, idp=idp) == expected


def test_deploy_gates(check_ids):
    assert "delegation_idp.E101" in check_ids(checks.check_deploy, DEBUG=False)
    assert "delegation_idp.E102" in check_ids(checks.check_deploy, idp={"EXCHANGED_TOKEN_LIFETIME": 86400})
    ids = check_ids(checks.check_deploy, DEFAULT_EXCEPTION_REPORTER_FILTER="tests.dropin.hooks.LeakyFilter")
    assert "delegation_idp.E103" in ids
    assert "delegation_idp.W101" in check_ids(
        checks.check_deploy, oauth2={"ALLOWED_REDIRECT_URI_SCHEMES": ["http"]}
    )


def test_every_check_id_is_documented():
    """Ids are part of the public interface: each is explained in the docs (docs/*.md or the README)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    ids = set(re.findall(r'"(?:delegation_idp\.)?([EW]\d{3})"', Path(checks.__file__).read_text()))
    assert {"E001", "E004", "E005", "E008", "E017", "E018", "W002"} <= ids
    docs = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    missing = sorted(i for i in ids if f"delegation_idp.{i}" not in docs and f"{i}" not in docs)
    assert not missing, f"check ids not documented: {missing}"


# -- who may register a client ------------------------------------------------------------


def test_the_test_site_registers_no_client_by_self_service(check_ids):
    assert check_ids(checks.check_client_registration) == []


def test_django_oauth_toolkits_management_views_are_reported(check_ids):
    """They let every signed-in user register a client and choose its client_id."""
    site = urlconf(path("o/", include((dot_urls.management_urlpatterns, "oauth2_provider"))), WELLKNOWN_URLS)
    assert check_ids(checks.check_client_registration, ROOT_URLCONF=site) == ["delegation_idp.E022"]
    stock = urlconf(path("o/", include("oauth2_provider.urls")), WELLKNOWN_URLS)
    assert "delegation_idp.E022" in check_ids(checks.check_client_registration, ROOT_URLCONF=stock)


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (("oauth2_provider.dcr.IsAuthenticatedDCRPermission",), []),
        ((), []),  # django-oauth-toolkit refuses everyone
        (("oauth2_provider.dcr.AllowAllDCRPermission",), ["delegation_idp.E023"]),
        (
            ("oauth2_provider.dcr.AllowAllDCRPermission", "oauth2_provider.dcr.IsAuthenticatedDCRPermission"),
            [],  # every class must pass
        ),
    ],
)
def test_dynamic_registration_open_to_anonymous_registrants_is_reported(check_ids, classes, expected):
    oauth2 = {"DCR_ENABLED": True, "DCR_REGISTRATION_PERMISSION_CLASSES": classes}
    assert check_ids(checks.check_client_registration, idp={"CLIENT_REGISTRATION": "dcr"}, oauth2=oauth2) == (
        expected
    )


def test_an_unknown_registration_mode_and_a_half_enabled_one_are_reported(check_ids):
    assert check_ids(checks.check_client_registration, idp={"CLIENT_REGISTRATION": "open"}) == [
        "delegation_idp.E024"
    ]
    dcr_off = {"DCR_ENABLED": False}  # the example site turns it on
    assert check_ids(
        checks.check_client_registration, idp={"CLIENT_REGISTRATION": "dcr"}, oauth2=dcr_off
    ) == ["delegation_idp.W006"]


def test_cimd_without_the_registration_rule_permission_is_reported(check_ids):
    """django-oauth-toolkit's default CIMD permission admits every host: every client id that is
    an https URL makes the provider fetch it and register a client."""
    default = {
        "CIMD_ENABLED": True,
        "CIMD_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.cimd.AllowAllCIMDPermission",),
    }
    governed = {
        "CIMD_ENABLED": True,
        "CIMD_REGISTRATION_PERMISSION_CLASSES": (
            "delegation_idp.provider.self_registered.RegistrationRulePermission",
        ),
    }
    assert "delegation_idp.W007" in check_ids(checks.check_client_registration, oauth2=default)
    assert "delegation_idp.W007" not in check_ids(checks.check_client_registration, oauth2=governed)
    assert "delegation_idp.W007" not in check_ids(
        checks.check_client_registration, oauth2={**default, "CIMD_ENABLED": False}
    )


TOKEN = "a-metrics-token-of-more-than-32-characters"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"METRICS": False}, []),
        ({"METRICS": True, "METRICS_TOKEN": TOKEN}, []),
        ({"METRICS": True, "METRICS_ALLOWED_ADDRESSES": ["10.0.0.0/8", "::1"]}, []),
        ({"METRICS": True}, ["delegation_idp.E027"]),
        ({"METRICS": True, "METRICS_TOKEN": ""}, ["delegation_idp.E027"]),
        (
            {"METRICS": True, "METRICS_TOKEN": TOKEN, "METRICS_ALLOWED_ADDRESSES": ["10.0.0.0/33"]},
            ["delegation_idp.E028"],
        ),
        ({"METRICS": True, "METRICS_ALLOWED_ADDRESSES": ["localhost"]}, ["delegation_idp.E028"]),
        ({"METRICS": True, "METRICS_TOKEN": b"bytes"}, ["delegation_idp.E028"]),
        # Off, nothing is served: nothing to say.
        ({"METRICS": False, "METRICS_ALLOWED_ADDRESSES": ["localhost"]}, []),
    ],
)
def test_metrics_protection(check_ids, options, expected):
    assert check_ids(checks.check_metrics, idp=options) == expected


def test_a_short_metrics_token_is_a_deploy_warning(check_ids):
    assert "delegation_idp.W106" in check_ids(
        checks.check_deploy, idp={"METRICS": True, "METRICS_TOKEN": "x" * 31}
    )
    assert "delegation_idp.W106" not in check_ids(
        checks.check_deploy, idp={"METRICS": True, "METRICS_TOKEN": TOKEN}
    )


def test_oidc_keys_must_be_rsa(check_ids):
    """E037: OpenID Connect on needs an RSA key (its ID tokens, and ID-JAG subjects, use it)."""
    from delegation_idp import jose

    assert check_ids(checks.check_oidc_keys) == []
    assert check_ids(checks.check_oidc_keys, oauth2={"OIDC_RSA_PRIVATE_KEY": ""}) == ["delegation_idp.E037"]
    ec = jose.generate_key("ES256").jwk.export_to_pem(private_key=True, password=None).decode()
    assert check_ids(checks.check_oidc_keys, oauth2={"OIDC_RSA_PRIVATE_KEY": ec}) == ["delegation_idp.E037"]
    assert check_ids(checks.check_oidc_keys, oauth2={"OIDC_RSA_PRIVATE_KEYS_INACTIVE": ["no pem"]}) == [
        "delegation_idp.E037"
    ]
    assert check_ids(checks.check_oidc_keys, oauth2={"OIDC_ENABLED": False, "OIDC_RSA_PRIVATE_KEY": ""}) == []
