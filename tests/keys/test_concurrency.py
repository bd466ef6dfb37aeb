"""Concurrent rotations on PostgreSQL: never zero and never two current keys.

Each contender is a separate process with its own connection, all released at
the same instant; ``RACE_SLOW`` holds each one inside its transaction for a
while so the others certainly wait on the row locks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.procs import ROOT, manage, scratch_database, site_env

CONTENDERS = 4


@pytest.fixture
def race_database(postgres_url, tmp_path):
    with scratch_database(postgres_url, "test_keys_race") as url:
        env = site_env(tmp_path, issuer="http://127.0.0.1:9", database_url=url)
        manage(env, "migrate", "--no-input")
        yield url, env


def race(env, actions, now, slow=0.0):
    """Start one process per action, release them together, return their JSON results."""
    at = time.time() + 4  # every contender has set Django up and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.keys.race", action, str(at), now.isoformat()],
            cwd=ROOT,
            env={**env, "RACE_SLOW": str(slow)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for action in actions
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def key_states(url):
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT kid, state FROM delegation_idp_signingkey").fetchall()
    return {kid: state for kid, state in rows}


def count(states, state):
    return sum(1 for s in states.values() if s == state)


@pytest.mark.integration
@pytest.mark.parametrize("slow", [0.0, 0.3])
def test_concurrent_rotations_leave_exactly_one_current_key(race_database, slow):
    url, env = race_database
    t0 = datetime.now(UTC)

    # A new site: every contender wants to create the first key and a next key.
    results = race(env, ["force"] * CONTENDERS, t0, slow)
    states = key_states(url)
    assert count(states, "current") == 1 and count(states, "next") == 1, states
    assert sum(1 for r in results if r["created"]) == 1, results

    # The next key's time has come: all promote at once, only one promotion happens.
    results = race(env, ["rotate"] * CONTENDERS, t0 + timedelta(seconds=301), slow)
    promoted = [r["promoted"] for r in results if r["promoted"]]
    assert len(promoted) == 1, results
    states = key_states(url)
    assert count(states, "current") == 1 and count(states, "retired") == 1, states
    assert states[promoted[0]] == "current"

    # Rotations racing an emergency revocation of the current key.
    later = t0 + timedelta(seconds=302)
    race(env, ["force"], later)  # a published next key the revocation may hand over to
    results = race(env, ["revoke-current", "rotate", "force", "rotate"], later + timedelta(seconds=301), slow)
    states = key_states(url)
    revoked = results[0]["revoked"]
    assert states[revoked] == "revoked", states  # never resurrected by a rotation
    assert count(states, "current") == 1, states
    assert count(states, "next") <= 1, states
