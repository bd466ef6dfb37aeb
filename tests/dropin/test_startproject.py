"""docs/installation.md as pasted, on a brand-new ``django-admin startproject`` site.

The page's marked blocks (``tests/dropin/walkthrough.py``) run in document order as one
bash script in a temporary folder outside the checkout: startproject, the settings and URL
blocks appended, the login template written, the key generated, migrate, check, the first
user, two agents and a rule from the command line, runserver, the user's login and consent
with curl and a cookie jar, the code redeemed with PKCE, and the token exchange. The package
is the wheel built as step 1 says, installed with ``pip install --no-deps --target``: its
folder comes first on ``PYTHONPATH`` for every process, ahead of this checkout's editable
install, and the test proves that the wheel is what gets imported. The one change to the
page's text is its port: 8000 becomes a free one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from delegation_idp import jose
from tests.conftest import IN_CI, free_port
from tests.dropin import walkthrough

pytestmark = pytest.mark.integration

AGENT1 = "https://agent1.example.com"
AGENT2 = "https://agent2.example.com"
EXCHANGE_ANSWER_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# Run after the page's blocks, in the site's directory and environment (its key included).
AFTER = """
if python manage.py check --fail-level WARNING > ../check.txt 2>&1; then echo 0; else echo 1; fi > ../check.rc
python manage.py shell --verbosity 0 \\
    -c 'from delegation_idp.conf import idp_settings; print(idp_settings.JWT_ACCESS_TOKENS)' > ../jwt_mode.txt
"""


def require_tools(*names: str) -> None:
    """Skip with a message on a machine without the page's tools; fail in CI."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"the walkthrough needs {', '.join(missing)} on PATH"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(f"{message}; this test runs in CI (CI=true), where it is required")


@pytest.fixture
def installed(built_wheel: Path, tmp_path: Path) -> dict[str, str]:
    """An environment where ``python`` imports delegation_idp from the wheel, not the checkout.

    The wheel goes into a folder of its own (``--no-deps --target``); its dependencies are
    this interpreter's. ``python`` and ``django-admin`` on ``PATH`` are this interpreter.
    """
    require_tools("bash", "curl", "openssl")
    target = tmp_path / "site-packages"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(built_wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (
        ("python", f'exec {sys.executable} "$@"'),
        ("django-admin", 'exec python -m django "$@"'),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{command}\n")
        (bin_dir / name).chmod(0o755)
    # Nothing of this test run's environment (DJANGO_SETTINGS_MODULE, DATABASE_URL, IDP_*).
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "TERM")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(target))
    return {**env, "DROPIN_SITE_PACKAGES": str(target)}


def run_walkthrough(folder: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    script = walkthrough.script(walkthrough.snippets(), port=port) + AFTER
    (folder / "walkthrough.sh").write_text(script)
    # A process group of its own: runserver, started in the background, is ended with it.
    return subprocess.Popen(
        ["bash", str(folder / "walkthrough.sh")],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def exchange_answer(output: str) -> dict[str, Any]:
    """The token endpoint's JSON answer to the exchange, as the page's last block prints it."""
    for line in reversed(output.splitlines()):
        if line.startswith("{") and "issued_token_type" in line:
            return dict(json.loads(line))
    raise AssertionError(f"no exchange answer in the walkthrough's output:\n{output[-4000:]}")


def verified_claims(token: str, issuer: str) -> dict[str, Any]:
    """The token's claims, verified by a key of the site's own JWKS (chosen by kid)."""
    keys = {k["kid"]: jose.public_key(k) for k in httpx.get(f"{issuer}/.well-known/jwks.json").json()["keys"]}
    _, claims = jose.verify(
        token,
        keys.get,
        algorithms=["ES256", "RS256", "EdDSA"],
        max_bytes=8192,
        max_header_bytes=1024,
        max_json_depth=16,
    )
    return claims


def test_the_installation_page_as_pasted_gives_a_working_exchange(installed: dict[str, str], tmp_path: Path):
    folder = tmp_path / "walk"
    folder.mkdir()
    env = {k: v for k, v in installed.items() if k != "DROPIN_SITE_PACKAGES"}
    where = subprocess.run(
        ["python", "-c", "import delegation_idp; print(delegation_idp.__file__)"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert where.stdout.strip().startswith(installed["DROPIN_SITE_PACKAGES"] + os.sep), where

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    process = run_walkthrough(folder, env, port)
    try:
        output, _ = process.communicate(timeout=240)
        site = folder / "mysite"
        log = (site / "runserver.log").read_text() if (site / "runserver.log").exists() else ""
        assert process.returncode == 0, f"{output[-6000:]}\n--- runserver.log ---\n{log[-4000:]}"

        answer = exchange_answer(output)
        assert answer["issued_token_type"] == EXCHANGE_ANSWER_TYPE
        assert answer["token_type"] == "Bearer"
        claims = verified_claims(answer["access_token"], issuer)
        with sqlite3.connect(site / "db.sqlite3") as db:
            (alice,) = db.execute("SELECT id FROM auth_user WHERE username = 'alice'").fetchone()
        assert claims["iss"] == issuer
        assert claims["sub"] == str(alice)
        assert claims["aud"] == AGENT2
        assert claims["act"] == {"sub": AGENT1}
        assert set(claims["scope"].split()) == {"read", "write"}

        # The browser's way in: the printed authorization address sends a signed-out user to
        # the login page, which brings them back to it.
        (authorize,) = [line for line in output.splitlines() if line.startswith(f"{issuer}/o/authorize/?")]
        to_login = httpx.get(authorize)
        assert to_login.status_code == 302, to_login.text
        assert to_login.headers["Location"].startswith("/accounts/login/?next=/o/authorize/")
        login_page = httpx.get(f"{issuer}{to_login.headers['Location']}")
        assert login_page.status_code == 200
        assert 'name="next" value="/o/authorize/?' in login_page.text

        # The pasted site has no system check message at all, and the safe start is on.
        checked = (folder / "check.txt").read_text()
        assert (folder / "check.rc").read_text().strip() == "0", checked
        assert (folder / "jwt_mode.txt").read_text().split()[-1:] == ["agents"]
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
