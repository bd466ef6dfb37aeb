"""The example site with short key timings, for the real-process key tests.

``KEYS_TEST_OPTIONS`` (JSON) overrides ``DELEGATION_IDP`` options,
``KEYS_TEST_TOKEN_SECONDS`` the access-token lifetime, and ``KEYS_TEST_QUEUE``
the Celery queue (one per test, so no other worker takes its tasks). Beat
schedules rotation only, with the period derived from these options.
"""

import json
import os

from delegation_idp.conf import rotation_check_seconds
from example_project.settings import *  # noqa: F403
from example_project.settings import CELERY_BEAT_SCHEDULE, DELEGATION_IDP, OAUTH2_PROVIDER

DELEGATION_IDP = {**DELEGATION_IDP, **json.loads(os.environ.get("KEYS_TEST_OPTIONS", "{}"))}
if os.environ.get("KEYS_TEST_TOKEN_SECONDS"):
    OAUTH2_PROVIDER = {
        **OAUTH2_PROVIDER,
        "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ["KEYS_TEST_TOKEN_SECONDS"]),
    }
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("KEYS_TEST_QUEUE", "celery")
CELERY_BEAT_SCHEDULE = {
    "rotate-signing-keys": {
        **CELERY_BEAT_SCHEDULE["rotate-signing-keys"],
        "schedule": rotation_check_seconds(DELEGATION_IDP),
    }
}
