"""docs/installation.md and the pages that point at it agree with the code and each other.

Fast checks of the walkthrough's text; ``test_startproject.py`` runs it on a new site.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.dropin import walkthrough

ROOT = walkthrough.ROOT
SETTINGS = "mysite/settings.py"


def settings_block() -> ast.Module:
    (block,) = walkthrough.of_kind("append", SETTINGS)
    return ast.parse(block.body)


def delegation_idp_dict(module: ast.Module) -> dict[str, ast.expr]:
    for node in module.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DELEGATION_IDP" for t in node.targets
        ):
            assert isinstance(node.value, ast.Dict)
            return {
                key.value: value
                for key, value in zip(node.value.keys, node.value.values, strict=True)
                if isinstance(key, ast.Constant)
            }
    raise AssertionError("the settings block sets no DELEGATION_IDP")


def environment_names(node: ast.AST) -> set[str]:
    """Names read as ``os.environ[NAME]`` or ``os.environ.get(NAME, ...)`` inside ``node``."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and ast.unparse(sub.value) == "os.environ":
            names.add(sub.slice)
        if isinstance(sub, ast.Call) and ast.unparse(sub.func) == "os.environ.get":
            names.add(sub.args[0])
    return {n.value for n in names if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_every_marker_is_a_block_the_walkthrough_knows():
    kinds = [s.kind for s in walkthrough.snippets()]
    assert kinds.count("install") == 1 and kinds.count("serve") == 1
    assert {s.path for s in walkthrough.of_kind("append")} == {SETTINGS, "mysite/urls.py"}
    assert [s.path for s in walkthrough.of_kind("write")] == ["templates/registration/login.html"]


def test_a_marker_without_its_block_is_an_error():
    with pytest.raises(ValueError, match="markers"):
        walkthrough.snippets("<!-- dropin:shell -->\ntext, no fence\n")
    with pytest.raises(ValueError, match="unknown block kind"):
        walkthrough.snippets("<!-- dropin:run -->\n```sh\ntrue\n```\n")


def test_the_install_block_builds_the_wheel_as_the_test_fixture_does():
    """built_wheel (tests/dropin/conftest.py) runs ``python -m build --wheel``: the page's command."""
    (block,) = walkthrough.of_kind("install")
    commands = [line.split("#")[0].strip() for line in block.body.splitlines()]
    assert "python -m build --wheel" in commands
    assert any(re.fullmatch(r"python -m pip install \S*dist/delegation_idp-\*\.whl", c) for c in commands)


def test_the_settings_block_imports_os_before_reading_the_environment():
    module = settings_block()
    imports = [
        n.lineno for n in module.body if isinstance(n, ast.Import) and any(a.name == "os" for a in n.names)
    ]
    uses = [n.lineno for n in ast.walk(module) if isinstance(n, ast.Name) and n.id == "os"]
    assert imports and uses and min(imports) < min(uses)


def test_the_settings_block_starts_with_agents_only_jwts():
    options = delegation_idp_dict(settings_block())
    assert ast.literal_eval(options["JWT_ACCESS_TOKENS"]) == "agents"


def test_the_key_encryption_keys_variable_has_one_name_everywhere():
    """The page, the example site and the production pages read the same variable."""
    options = delegation_idp_dict(settings_block())
    (name,) = environment_names(options["KEY_ENCRYPTION_KEYS"])
    assert name == "IDP_KEY_ENCRYPTION_KEYS"
    assert name in environment_names(ast.parse((ROOT / "example_project" / "settings.py").read_text()))
    # The page generates it before anything runs manage.py.
    shell = "\n".join(s.body for s in walkthrough.snippets() if s.kind == "shell")
    assert f"export {name}=" in shell.split("manage.py", 1)[0]
    for page in ("README.md", "docs/deployment.md", "docs/installation.md", "docs/keys.md"):
        text = (ROOT / page).read_text()
        assert not re.search(r"IDP_KEY_ENCRYPTION_KEY(?!S)", text), page


def test_the_login_url_is_mounted_by_the_urls_block():
    module = settings_block()
    (login_url,) = [
        ast.literal_eval(n.value)
        for n in module.body
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "LOGIN_URL" for t in n.targets)
    ]
    (urls,) = walkthrough.of_kind("append", "mysite/urls.py")
    prefix = re.search(r'path\("([^"]*)", include\("django.contrib.auth.urls"\)\)', urls.body)
    assert prefix and login_url == f"/{prefix[1]}login/"


def test_the_walkthrough_migrates_the_whole_project():
    shell = "\n".join(s.body for s in walkthrough.of_kind("shell"))
    assert re.search(r"^python manage.py migrate$", shell, re.MULTILINE)
    assert not re.search(r"manage.py migrate \w", (ROOT / "docs" / "installation.md").read_text())


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_no_page_says_to_install_from_an_index_the_package_is_not_on(page: str):
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    fenced = "\n".join(re.findall(r"^```\w*\n(.*?)^```$", path.read_text(), re.MULTILINE | re.DOTALL))
    assert not re.search(r"pip install \"?delegation[-_]idp\b", fenced), page


def test_the_readme_points_at_the_installation_page_and_names_only_existing_scripts():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Installing into an existing site", 1)[1].split("\n## ", 1)[0]
    assert "docs/installation.md" in section
    assert "DELEGATION_IDP = {" not in section  # one walkthrough, the tested one
    for script in re.findall(r"\b((?:scripts|bench|example_project)/[\w/]+\.py)\b", readme):
        assert Path(ROOT / script).exists(), script
