"""Runs the existing-site suite (``tests_existing_site/``) on its own settings module.

That suite needs a different ``AUTH_USER_MODEL`` and Application model, which
cannot change inside this process, so it runs in a subprocess: on SQLite here,
and on PostgreSQL as an integration test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_existing_site_suite(**env: str) -> tuple[dict[str, int], str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    environment.update(env)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests_existing_site",
            "--ds=tests_existing_site.settings",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}
    assert result.returncode == 0, output[-6000:]
    return counts, output


def assert_all_passed(counts: dict[str, int], output: str) -> None:
    assert counts.get("passed", 0) >= 13, output[-3000:]
    assert not counts.get("failed") and not counts.get("error") and not counts.get("errors"), output[-3000:]
    assert not counts.get("skipped"), output[-3000:]


def test_existing_site_suite_passes_on_sqlite():
    assert_all_passed(*run_existing_site_suite())


@pytest.mark.integration
def test_existing_site_suite_passes_on_postgresql(postgres_url: str):
    # Its own test database (settings append "_existing_site"), never another run's.
    base = os.environ.get("TEST_DATABASE_NAME") or f"test_dropin_{os.getpid()}"
    assert_all_passed(*run_existing_site_suite(DATABASE_URL=postgres_url, TEST_DATABASE_NAME=base))
