"""The settings object: one namespaced setting, defaults, import strings, reload."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.test import override_settings

from delegation_idp import conf
from delegation_idp.conf import DEFAULTS, IMPORT_STRINGS, SETTING_NAME, IdpSettings, idp_settings
from delegation_idp.provider import tokens as claims

PACKAGE = Path(conf.__file__).resolve().parent


def subject_for_tests(user):
    return f"test:{user.pk}"


def test_defaults_apply_to_options_left_out(settings):
    settings.DELEGATION_IDP = {"ISSUER": "https://idp.example.com"}
    assert idp_settings.ISSUER == "https://idp.example.com"
    assert idp_settings.MAX_DELEGATION_DEPTH == DEFAULTS["MAX_DELEGATION_DEPTH"]
    assert idp_settings.JWT_ACCESS_TOKENS == "all"


def test_a_site_without_the_setting_gets_every_default(settings):
    del settings.DELEGATION_IDP
    for name in ("MAX_DELEGATION_DEPTH", "JWT_CLIENT_IDS", "KEY_ENCRYPTION_KEYS", "ISSUER"):
        assert getattr(idp_settings, name) == DEFAULTS[name]


def test_unknown_option_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOT_AN_OPTION"):
        idp_settings.NOT_AN_OPTION  # noqa: B018


def test_import_strings_are_imported(settings):
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "SUBJECT_RESOLVER": "tests.test_conf.subject_for_tests",
    }
    assert idp_settings.SUBJECT_RESOLVER is subject_for_tests
    assert "SUBJECT_RESOLVER" in IMPORT_STRINGS


def test_import_strings_accept_the_callable_itself(settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "SUBJECT_RESOLVER": subject_for_tests}
    assert idp_settings.SUBJECT_RESOLVER is subject_for_tests


def test_default_import_strings_resolve():
    fresh = IdpSettings(DEFAULTS, IMPORT_STRINGS)
    with override_settings(DELEGATION_IDP={}):
        assert fresh.SUBJECT_RESOLVER is claims.default_subject
        assert callable(fresh.AUDIT_WRITER)


def test_a_bad_import_string_names_the_option(settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "AUDIT_WRITER": "delegation_idp.nowhere.write"}
    with pytest.raises(ImportError, match=r"DELEGATION_IDP\['AUDIT_WRITER'\]"):
        idp_settings.AUDIT_WRITER  # noqa: B018


def test_values_are_cached_and_reloaded_on_setting_changed(settings):
    assert idp_settings.MAX_DELEGATION_DEPTH == 5
    assert "MAX_DELEGATION_DEPTH" in vars(idp_settings)  # cached after first access
    with override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, "MAX_DELEGATION_DEPTH": 3}):
        assert idp_settings.MAX_DELEGATION_DEPTH == 3
    assert idp_settings.MAX_DELEGATION_DEPTH == 5


def test_other_settings_changing_keeps_the_cache(settings):
    assert idp_settings.EXCHANGED_TOKEN_LIFETIME == DEFAULTS["EXCHANGED_TOKEN_LIFETIME"]
    settings.SOMETHING_ELSE = 1
    assert "EXCHANGED_TOKEN_LIFETIME" in vars(idp_settings)


def test_reload_drops_the_signing_key_cache(settings, monkeypatch):
    from delegation_idp.provider import keys

    calls = []
    monkeypatch.setattr(keys.keyset, "invalidate", lambda: calls.append(1))
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "KEY_CACHE_SECONDS": 1}
    assert calls


def _reads_of_django_settings(tree: ast.AST) -> list[tuple[int, str]]:
    """``settings.X`` and ``getattr(settings, "X")`` where X is DELEGATION_IDP or one of its options."""
    names = {SETTING_NAME, *DEFAULTS}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "settings"
            and node.attr in names
        ):
            found.append((node.lineno, node.attr))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "settings"
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in names
        ):
            found.append((node.lineno, node.args[1].value))
    return found


def test_nothing_else_reads_django_settings_for_the_apps_options():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "conf.py":
            continue
        for line, name in _reads_of_django_settings(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} reads settings.{name}")
    assert not offenders, "use delegation_idp.conf.idp_settings instead:\n" + "\n".join(offenders)


def test_the_scan_would_catch_a_direct_read():
    source = (
        "from django.conf import settings\n"
        "x = settings.DELEGATION_IDP['ISSUER']\n"
        "y = getattr(settings, 'ISSUER')\n"
    )
    assert sorted(_reads_of_django_settings(ast.parse(source))) == [(2, "DELEGATION_IDP"), (3, "ISSUER")]


def test_every_default_is_documented_by_a_comment():
    """Each option (or group of adjacent options) in DEFAULTS has a comment line right above it."""
    source = (PACKAGE / "conf.py").read_text()
    lines = source.splitlines()
    (node,) = [
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == "DEFAULTS"
    ]
    assert isinstance(node.value, ast.Dict)
    spans = [(key.lineno, value.end_lineno) for key, value in zip(node.value.keys, node.value.values)]
    covered = {line for first, last in spans for line in range(first, last + 1)}
    undocumented = []
    for key, (first, _last) in zip(node.value.keys, spans):
        above = first - 1
        while above in covered:
            above -= 1
        if not lines[above - 1].strip().startswith("#"):
            undocumented.append(ast.literal_eval(key))
    assert len(spans) == len(DEFAULTS)
    assert not undocumented, f"options without a comment in DEFAULTS: {undocumented}"
