"""An unmodified MCP client logs in to the demo MCP server and calls its tool.

The official ``mcp`` SDK's ``OAuthClientProvider``, as an MCP host would configure it for a
pre-registered public client: the MCP server's 401 sends it to the MCP server's protected
resource metadata (RFC 9728), from there to the provider's metadata (RFC 8414), then through
the authorization code flow with S256 PKCE and ``resource`` = the MCP server's URL
(RFC 8707); it checks the authorization response's ``iss`` (RFC 9207) and redeems the code.
The user signs in and consents at the provider's own pages (a headless browser). The tool
then exchanges the token it received for one addressed to the resource server (RFC 8693):
the resource server sees the chain mcp-server1 <- the stock client.
"""

from __future__ import annotations

import asyncio

import pytest
from oauth2_provider.settings import oauth2_settings

from example_project.demo_services import launch

pytestmark = pytest.mark.integration

MCP = "https://mcp-server1.example.com"
STOCK = "https://stock-mcp-client.example.com"
RS = "https://resource-server.example.com"
USER = "user@example.com"


@pytest.mark.rfc("9728-3")
@pytest.mark.rfc("8707-2")
@pytest.mark.rfc("9207-2")
def test_an_unmodified_mcp_sdk_client_logs_in_and_calls_the_tool(mcp_demo):
    mcp_url, stock = mcp_demo.ports.mcp_url, mcp_demo.stock

    def the_user_reads(page: launch.Page) -> None:
        """What the user consents to is on the page: the resource the token is for and
        each scope asked for (in the words the site gives it)."""
        assert mcp_url in page.text, f"the consent page does not name the resource: {page.text!r}"
        for scope in stock["scope"].split():
            assert oauth2_settings.SCOPES[scope] in page.text, f"{scope} not named: {page.text!r}"

    try:
        login = asyncio.run(launch.sdk_login(mcp_url, stock, mcp_demo.user, check_consent=the_user_reads))
    except Exception as exc:
        for role in ("mcp-server1", "resource-server"):
            exc.add_note(f"{role}'s log:\n{mcp_demo.running.log(role)[-2000:]}")
        raise

    # What the SDK asked for: its pre-registered client, PKCE S256, the MCP server's URL as
    # the RFC 8707 resource, the scope the protected resource metadata advertises.
    request = login.authorization_request
    assert request["client_id"] == stock["client_id"]
    assert request["redirect_uri"] == stock["redirect_uri"]
    assert request["code_challenge_method"] == "S256"
    assert request["resource"] == mcp_url
    assert request["scope"] == stock["scope"]
    assert login.consent is not None
    # The authorization response carried iss (the SDK compared it with the metadata's issuer).
    assert login.authorization_response == ["code", "iss", "state"]

    # The token the SDK obtained and sent: the user's, addressed to the MCP server's URL,
    # issued to the stock client, with nobody acting yet.
    claims = login.token_claims
    assert claims["iss"] == mcp_demo.issuer
    assert claims["sub"] == USER
    assert claims["aud"] == mcp_url
    assert claims["client_id"] == stock["client_id"]
    assert claims["scope"] == stock["scope"]
    assert "act" not in claims

    assert login.tools == ["list_tasks"]
    result = login.result
    received = result["received"]
    assert received["jti"] == claims["jti"]  # the MCP server received exactly that token
    assert received["sub"] == USER and received["actors"] == [] and received["aud"] == [mcp_url]

    # The MCP server exchanged it (never passed it on); the resource server saw the chain,
    # with the client that addressed the token to the MCP server as the upstream actor:
    # act = {"sub": mcp-server1, "act": {"sub": the stock client}}.
    assert result["downstream_status"] == 200
    seen = result["downstream"]["saw"]
    assert seen["jti"] == result["sent"]["jti"] != claims["jti"]
    assert seen["sub"] == USER
    assert seen["aud"] == [RS]
    assert seen["actors"] == [MCP, STOCK]
    assert seen["depth"] == 2
    assert result["downstream"]["through"] == f"{MCP} <- {STOCK}"
