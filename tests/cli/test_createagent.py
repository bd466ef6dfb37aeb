"""``manage.py createagent`` says what to run next: an agent without rules can exchange nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError

from tests.cli.conftest import run


@pytest.mark.parametrize("kind", ["agent", "mcp_server"])
def test_an_agent_without_rules_gets_a_warning_naming_the_next_command(db: Any, kind: str) -> None:
    result = run("createagent", "https://bot.example.com", "--kind", kind)
    assert "client_secret (shown once)" in result.stdout and "Warning" not in result.stdout
    assert "has no delegation rules yet" in result.stderr
    assert "invalid_target (reason no_rule)" in result.stderr
    assert "python manage.py createrule https://bot.example.com --audience" in result.stderr
    assert "python manage.py explain https://bot.example.com" in result.stderr


def test_the_warning_leaves_json_output_one_document(db: Any) -> None:
    result = run("createagent", "https://bot.example.com", "--json")
    assert result.json()["uri"] == "https://bot.example.com"
    assert "createrule https://bot.example.com" in result.stderr


def test_a_resource_server_gets_no_warning(db: Any) -> None:
    result = run("createagent", "https://api.example.com", "--kind", "resource_server")
    assert result.stderr == ""


def test_a_second_registration_points_at_reissue_secret(db: Any) -> None:
    run("createagent", "https://bot.example.com")
    with pytest.raises(CommandError, match=r"uri: .*`manage.py reissue_secret https://bot.example.com`"):
        run("createagent", "https://bot.example.com")
