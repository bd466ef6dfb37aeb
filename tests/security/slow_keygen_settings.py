"""The example site, with key generation slowed down (``SLOW_KEYGEN_SECONDS``), so a test can
kill a worker while it is certainly inside a rotation task."""

import os
import sys
import time

from example_project.settings import *  # noqa: F403


def _slow_down() -> None:
    from delegation_idp import jose

    real = jose.generate_key
    delay = float(os.environ.get("SLOW_KEYGEN_SECONDS", "0"))

    def generate_key(alg: str):  # type: ignore[no-untyped-def]
        print("slow key generation started", file=sys.stderr, flush=True)
        time.sleep(delay)
        return real(alg)

    jose.generate_key = generate_key


_slow_down()
