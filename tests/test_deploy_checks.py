"""Deploy gate W103: agent secrets without a keyed-hash key."""

from django.core.checks import run_checks


def _ids():
    return {m.id for m in run_checks(include_deployment_checks=True) if m.id.startswith("delegation_idp.")}


def test_w103_fires_without_a_keyed_hash_key(settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "CLIENT_SECRET_HMAC_KEY": None}
    assert "delegation_idp.W103" in _ids()


def test_w103_quiet_with_a_keyed_hash_key(settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "CLIENT_SECRET_HMAC_KEY": "k" * 43}
    assert "delegation_idp.W103" not in _ids()
