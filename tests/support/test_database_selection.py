"""``--database-tests-only`` (tests/conftest.py) keeps exactly the tests that reach the Django
test database: .ci/run's PostgreSQL cells rely on it to run those, and only those, again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_django.fixtures

from tests.conftest import DATABASE_FIXTURES, uses_the_test_database


class Item:
    def __init__(self, fixturenames: tuple[str, ...] = (), marked: bool = False) -> None:
        self.fixturenames = fixturenames
        self.marked = marked

    def get_closest_marker(self, name: str) -> Any:
        return object() if self.marked and name == "django_db" else None


@pytest.mark.parametrize("fixture", sorted(DATABASE_FIXTURES))
def test_a_test_reaching_the_database_through_a_fixture_is_kept(fixture: str) -> None:
    assert uses_the_test_database(Item(("cast", fixture, "client")))


def test_a_test_marked_django_db_is_kept() -> None:
    assert uses_the_test_database(Item(("tmp_path",), marked=True))


def test_the_fixtures_are_pytest_djangos_database_fixtures() -> None:
    # A misspelt name would keep nothing that asks for the real fixture.
    assert {"db", "transactional_db", "live_server"} <= DATABASE_FIXTURES
    assert all(callable(getattr(pytest_django.fixtures, name, None)) for name in DATABASE_FIXTURES)


def test_a_test_without_the_database_is_dropped() -> None:
    assert not uses_the_test_database(Item(("tmp_path", "postgres_url", "redis_url", "client")))


def test_this_suites_own_items_are_told_apart(request: pytest.FixtureRequest, db: Any) -> None:
    # This very test asks for ``db``: a real pytest item, kept.
    assert uses_the_test_database(request.node)


def test_the_option_deselects_through_pytests_own_collection() -> None:
    """The real hook, in a collection of this very file: only its database test is kept."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["--database-tests-only", str(Path(__file__).relative_to(root))],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    kept = [line for line in result.stdout.splitlines() if "::" in line]
    assert kept == [f"{Path(__file__).relative_to(root)}::test_this_suites_own_items_are_told_apart"], (
        result.stdout
    )
    assert "deselected" in result.stdout
