"""An unmodified MCP client whose client id is the URL of its metadata document (a client ID
metadata document, as the MCP authorization specification prefers) logs in and calls the tool.

Nobody registered it: the provider advertises ``client_id_metadata_document_supported``, the
SDK sends its document's URL as ``client_id``, and the provider fetches the document over
https from a local server whose certificate a test CA signed, with django-oauth-toolkit's
fetcher (tests.support.cimd: loopback counted as public, every other check as shipped). A
registration rule admits the host and lets such clients reach mcp-server1 with
``tasks.read``; the client becomes a party marked as registered by CIMD. mcp-server1 passes
the task on under a rule "directly from a user token", which covers the hop the user
authorized on the consent page, and the resource server sees the client in the chain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from delegation_idp.models import AuditEvent, DelegationRule, Party, RegistrationRule
from example_project.demo_services import launch
from tests.conftest import free_port
from tests.support.tls import Document

pytestmark = pytest.mark.integration

MCP = "https://mcp-server1.example.com"
RS = "https://resource-server.example.com"


@pytest.fixture
def metadata_document(https_documents: Any, settings: Any, monkeypatch: Any) -> dict[str, str]:
    from django.core.cache import cache

    cache.clear()
    url = https_documents.url("/mcp-client/metadata.json")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    https_documents.documents["/mcp-client/metadata.json"] = Document(
        {
            "client_id": url,
            "client_name": "A stock MCP client nobody registered",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(https_documents.authority.ca_path))
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "CIMD_METADATA_FETCHER": "tests.support.cimd.LoopbackTestFetcher",
    }
    return {"client_id": url, "redirect_uri": redirect_uri, "scope": "tasks.read", "uri": url}


@pytest.mark.rfc("9728-3")
@pytest.mark.rfc("8707-2")
@pytest.mark.rfc("9207-2")
def test_an_mcp_sdk_client_with_a_metadata_document_url_logs_in_and_calls_the_tool(
    mcp_demo, metadata_document, https_documents
):
    mcp_url, client = mcp_demo.ports.mcp_url, metadata_document
    mcp_server = Party.objects.get(uri=MCP)
    rule = RegistrationRule.objects.create(
        via=Party.BY_CIMD, hosts="localhost", max_scope="tasks.read", description="MCP clients on localhost"
    )
    rule.audiences.set([mcp_server])
    onward = DelegationRule.objects.create(
        actor=mcp_server,
        max_scope="tasks.read",
        allow_direct_from_user=True,
        description="for users' clients",
    )
    onward.audiences.set([Party.objects.get(uri=RS)])

    def the_user_reads(page: launch.Page) -> None:
        assert mcp_url in page.text and client["client_id"] in page.text, page.text
        assert "registered itself" in page.text, page.text

    try:
        login = asyncio.run(
            launch.sdk_login(
                mcp_url,
                client,
                mcp_demo.user,
                check_consent=the_user_reads,
                client_metadata_url=client["client_id"],
            )
        )
    except Exception as exc:
        for role in ("mcp-server1", "resource-server"):
            exc.add_note(f"{role}'s log:\n{mcp_demo.running.log(role)[-2000:]}")
        raise

    assert login.authorization_request["client_id"] == client["client_id"]
    assert login.authorization_request["resource"] == mcp_url
    assert login.authorization_response == ["code", "iss", "state"]
    assert [seen.path for seen in https_documents.requests] == ["/mcp-client/metadata.json"]

    party = Party.objects.get(uri=client["client_id"])
    assert (party.registration, party.kind, party.enabled) == (Party.BY_CIMD, Party.AGENT, True)
    arrived = AuditEvent.objects.filter(event="registration", decision="granted").last()
    assert arrived is not None and arrived.client_id == client["client_id"]

    claims = login.token_claims
    assert (claims["aud"], claims["client_id"], claims["scope"]) == (
        mcp_url,
        client["client_id"],
        "tasks.read",
    )
    assert "act" not in claims
    assert login.tools == ["list_tasks"]
    seen = login.result["downstream"]["saw"]
    assert seen["aud"] == [RS]
    assert seen["actors"] == [MCP, client["client_id"]]
