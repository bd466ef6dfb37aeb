"""Repository hygiene enforced by the test command: lint, format, migrations, checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_lint_is_clean():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_migrations_name_django_oauth_toolkits_models_through_its_settings_object():
    """makemigrations writes ``settings.OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL`` for a swappable
    model of django-oauth-toolkit, a setting that sites which keep DOT's models never define
    (its default lives in ``oauth2_settings``): such a migration breaks every one of them."""
    offending = [
        path.name
        for path in sorted((ROOT / "delegation_idp" / "migrations").glob("*.py"))
        if "settings.OAUTH2_PROVIDER_" in path.read_text()
    ]
    assert offending == []


def test_system_checks_pass_for_the_example_site():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_with_django_stubs_is_clean(tmp_path):
    """The package is annotated and type-checks ([tool.mypy] in pyproject.toml)."""
    result = run("mypy", "--cache-dir", str(tmp_path / "mypy-cache"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_and_sdist_build_and_pass_twine_check(tmp_path):
    """The wheel is built from the sdist, so the sdist is complete; both pass twine --strict."""
    import tarfile
    import zipfile

    import delegation_idp

    out = tmp_path / "dist"
    result = run("build", "--outdir", str(out), ".")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = delegation_idp.__version__
    (wheel,) = out.glob(f"delegation_idp-{version}-py3-none-any.whl")
    (sdist,) = out.glob(f"delegation_idp-{version}.tar.gz")
    result = run("twine", "check", "--strict", str(wheel), str(sdist))
    assert result.returncode == 0, result.stdout + result.stderr

    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "delegation_idp/py.typed",
        "delegation_idp/migrations/0001_initial.py",
        "delegation_idp/management/commands/createagent.py",
        f"delegation_idp-{version}.dist-info/licenses/LICENSE",
    ):
        assert required in names, required
    assert not any(n.startswith(("tests", "example_project")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"delegation_idp-{version}.dist-info/METADATA").decode()
    for classifier in ("Framework :: Django :: 5.2", "Framework :: Django :: 6.0", "Typing :: Typed"):
        assert f"Classifier: {classifier}" in metadata

    members = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert {
        "CHANGELOG.md",
        "LICENSE",
        "tox.ini",
        "tests/conftest.py",
        "tests_existing_site/settings.py",
    } <= members


def test_changelog_has_an_entry_for_this_version():
    import delegation_idp

    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{delegation_idp.__version__}]" in changelog
