"""``manage.py createagent``: registering parties for automation."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from oauth2_provider.models import get_application_model

from delegation_idp.models import Party


def run(*args: str) -> str:
    out = StringIO()
    call_command("createagent", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_registers_an_agent_and_prints_the_secret_once():
    out = run("https://bot.example.com", "--name", "Bot", "--contact", "ops@example.com")
    client_id = out.split("client_id: ")[1].split()[0]
    secret = out.split("client_secret (shown once): ")[1].split()[0]
    party = Party.objects.get(uri="https://bot.example.com")
    assert (party.name, party.kind, party.contact, party.enabled) == ("Bot", "agent", "ops@example.com", True)
    app = party.application
    assert app.client_id == client_id and app.client_type == "confidential"
    assert app.authorization_grant_type == "client-credentials"
    assert app.client_secret != secret and secret not in app.client_secret


@pytest.mark.django_db
def test_json_output_and_authorization_code_client():
    data = json.loads(
        run(
            "https://coder.example.com",
            "--redirect-uris",
            "https://coder.example.com/cb",
            "--client-id",
            "coder",
            "--json",
        )
    )
    assert (
        data["uri"] == "https://coder.example.com"
        and data["kind"] == "agent"
        and data["client_id"] == "coder"
    )
    assert data["client_secret"]
    app = get_application_model().objects.get(client_id="coder")
    assert app.authorization_grant_type == "authorization-code" and app.name == "coder.example.com"


@pytest.mark.django_db
def test_resource_server_gets_no_client_and_keeps_its_prefixes():
    data = json.loads(
        run(
            "https://api.example.com",
            "--kind",
            "resource_server",
            "--resource-prefix",
            "https://api.example.com/v1",
            "--resource-prefix",
            "https://files.example.com",
            "--json",
        )
    )
    assert data["client_id"] == "" and data["client_secret"] is None
    party = Party.objects.get(uri="https://api.example.com")
    assert party.application is None
    assert party.prefixes() == ["https://api.example.com/v1", "https://files.example.com"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args,message",
    [
        (["http://bot.example.com"], "uri"),
        (["https://bot.example.com?x=1"], "uri"),
        (
            [
                "https://api.example.com",
                "--kind",
                "resource_server",
                "--resource-prefix",
                "http://x.example.com",
            ],
            "http",
        ),
    ],
)
def test_invalid_input_is_an_error_and_creates_nothing(args, message):
    Application = get_application_model()
    before = Application.objects.count()
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not Party.objects.exists() and Application.objects.count() == before


@pytest.mark.django_db
def test_duplicate_uri_is_an_error():
    run("https://bot.example.com")
    with pytest.raises(CommandError, match="uri"):
        run("https://bot.example.com")
    assert Party.objects.count() == 1 and get_application_model().objects.count() == 1
