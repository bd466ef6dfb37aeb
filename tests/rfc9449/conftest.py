"""Fixtures for the DPoP core: a client's key, a policy with its own replay store, a clock."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from delegation_idp.rfc9449 import ALGORITHMS, MemoryReplayStore, ProofPolicy, check_proof
from tests.support.dpop import Prover

URL = "https://api.example.com/tasks/"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"  # the shape only: never verified here


@pytest.fixture
def prover() -> Prover:
    return Prover()


@pytest.fixture
def policy() -> ProofPolicy:
    return ProofPolicy(algorithms=ALGORITHMS, replay=MemoryReplayStore(), max_age=60, leeway=5)


@pytest.fixture
def check(policy: ProofPolicy):
    """check_proof for a GET of URL at the current time; keywords override."""

    def run(*proofs: str, **options: Any):
        arguments: dict[str, Any] = {"method": "GET", "url": URL, "now": time.time(), "policy": policy}
        overrides = options.pop("policy_changes", None)
        if overrides:
            arguments["policy"] = replace(policy, **overrides)
        arguments.update(options)
        return check_proof(list(proofs), **arguments)

    return run
