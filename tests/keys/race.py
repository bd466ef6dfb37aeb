"""One contender in a key-rotation race: ``python -m tests.keys.race ACTION AT NOW``.

Sets Django up (the database comes from ``DATABASE_URL``), opens its own
connection, waits until the wall-clock time ``AT`` so all contenders start
together, runs ``rotate`` / ``force`` / ``revoke-current`` with the given
``NOW`` (ISO time), and prints the result as JSON. ``RACE_SLOW`` (seconds) makes
every key write slower, so the contenders certainly overlap inside the locks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime


def main() -> None:
    import django

    django.setup()
    from django.db import connection

    from delegation_idp.models import SigningKey
    from delegation_idp.provider import rotation

    action, at, now = sys.argv[1], float(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
    slow = float(os.environ.get("RACE_SLOW", "0"))
    if slow:
        original_save = SigningKey.save

        def slow_save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(slow)
            return original_save(self, *args, **kwargs)

        SigningKey.save = slow_save  # type: ignore[method-assign]
    connection.ensure_connection()
    time.sleep(max(0.0, at - time.time()))
    if action == "revoke-current":
        kid = SigningKey.objects.get(state="current").kid
        result = rotation.revoke_key(kid, now=now)
        print(json.dumps({"revoked": kid, "successor": result.successor}))
    else:
        print(json.dumps(rotation.rotate_keys(now=now, force=action == "force").as_dict()))


if __name__ == "__main__":
    main()
