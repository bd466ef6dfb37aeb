"""The rotation task, its beat schedule, and its period derived from settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from delegation_idp import tasks
from delegation_idp.conf import rotation_check_seconds
from delegation_idp.models import SigningKey
from tests.procs import ROOT


def test_period_defaults_to_one_jwks_cache_lifetime(idp):
    assert rotation_check_seconds() == 300.0
    idp(JWKS_CACHE_SECONDS=60)
    assert rotation_check_seconds() == 60.0
    idp(KEY_ROTATION_CHECK_SECONDS=15)
    assert rotation_check_seconds() == 15.0
    assert rotation_check_seconds({"JWKS_CACHE_SECONDS": 42}) == 42.0
    assert rotation_check_seconds({}) == 300.0


def test_example_beat_schedule_follows_the_settings(tmp_path):
    """The example site's beat entry is derived from DELEGATION_IDP, not a constant."""
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.CELERY_BEAT_SCHEDULE['rotate-signing-keys']))"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "IDP_JWKS_CACHE_SECONDS": "42",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    entry = json.loads(out)
    assert entry == {"task": "delegation_idp.tasks.rotate_keys", "schedule": 42.0}


@pytest.mark.django_db
def test_task_is_a_thin_wrapper_of_the_service():
    result = tasks.rotate_keys.delay(force=True).get()
    assert result["created"] == SigningKey.objects.get(state="next").kid
    assert tasks.rotate_keys.delay().get()["created"] is None  # idempotent
    assert tasks.rotate_keys.name == "delegation_idp.tasks.rotate_keys"
