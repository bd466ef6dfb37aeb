"""The official ``mcp`` SDK (2.3) as the client, unmodified, against the resource server's
RFC 9728 metadata.

The SDK's ``OAuthClientProvider`` does what a stock MCP client does on a 401: it reads
``resource_metadata`` from the challenge, fetches the document, checks it against the URL it
called (``_validate_resource_match``: ``check_resource_allowed`` on
``resource_url_from_server_url(server_url)``, RFC 9728 section 3.3 / RFC 8707), follows
``authorization_servers`` to RFC 8414 metadata and sends the user to the authorization
endpoint with ``resource=<the document's resource>``. When the document named the identity
URI (``https://resource-server.example.com``) instead of the URL, the SDK stopped with
"Protected resource ... does not match expected ...".

No other installed library validates RFC 9728 documents (Authlib 1.9 and
requests-oauth2client 1.8 do not), so the SDK is the peer here.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx2
import pytest
from mcp.client.auth.utils import handle_protected_resource_response
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url

pytestmark = [pytest.mark.urls("tests.resource_server.urls"), pytest.mark.rfc("9728-3.3")]

WELL_KNOWN = "/.well-known/oauth-protected-resource"
IDENTITY = "https://resource-server.example.com"


def sdk_accepts(document: bytes, server_url: str) -> bool:
    """The SDK's own parsing and resource check of a document fetched for ``server_url``."""
    response = httpx2.Response(200, content=document, headers={"Content-Type": "application/json"})
    metadata = asyncio.run(handle_protected_resource_response(response))
    assert metadata is not None, document  # the SDK's model accepts the document
    return check_resource_allowed(
        requested_resource=resource_url_from_server_url(server_url),
        configured_resource=str(metadata.resource),
    )


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://testserver/api/whoami/"),
        ({"RESOURCE_PATHS": ["/api/"]}, "http://testserver/api/whoami/"),
        ({}, "http://testserver/api/whoami/"),
        ({"RESOURCE_URL": "http://testserver/api/whoami/"}, "http://testserver/api/whoami/"),
    ],
)
def test_the_sdk_client_accepts_the_metadata_and_asks_for_the_url_it_called(
    options, url, configure, mcp_sdk_discovery
):
    configure(**options)
    found = mcp_sdk_discovery(url)
    assert found.error is None, found.error
    # It went from the 401 to the document the challenge named, then to the provider's metadata.
    statuses = [status for status, _ in found.calls]
    assert statuses[:3] == [401, 200, 200], found.calls
    assert urlsplit(found.calls[1][1]).path.startswith(WELL_KNOWN)
    assert urlsplit(found.calls[2][1]).path == "/.well-known/oauth-authorization-server"
    # It accepted the document, and would ask the provider for a token for what it named.
    named = str(found.metadata.resource)
    assert check_resource_allowed(requested_resource=url, configured_resource=named)
    assert found.resource == named
    assert found.authorization_url.startswith("http://testserver/o/authorize/")


def test_the_sdk_client_asks_for_exactly_the_url_when_the_site_declares_it(configure, mcp_sdk_discovery):
    """RFC 9728 section 3.3 in its strict form: the ``resource`` reached from a challenge is
    the URL the client called, and that is the RFC 8707 ``resource`` the client asks for."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    found = mcp_sdk_discovery("http://testserver/api/whoami/")
    assert found.error is None, found.error
    assert found.resource == "http://testserver/api/whoami/" == str(found.metadata.resource)


@pytest.mark.parametrize(
    ("path", "server_url"),
    [
        (WELL_KNOWN, "http://testserver"),
        (WELL_KNOWN, "http://testserver/api/whoami/"),
        (WELL_KNOWN + "/api/whoami/", "http://testserver/api/whoami/"),
        (WELL_KNOWN + "/api/whoami", "http://testserver/api/whoami"),
    ],
)
def test_the_sdk_check_accepts_each_document_for_the_url_it_describes(path, server_url, client, configure):
    configure(RESOURCE_PATHS=["/api/whoami/"])
    response = client.get(path)
    assert response.status_code == 200
    assert sdk_accepts(response.content, server_url)


def test_the_sdk_check_is_not_a_formality(client, configure):
    """The same check refuses a document naming the identity URI, as the site's documents did
    before they named the URL clients use: the peer test can fail."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    document = client.get(WELL_KNOWN + "/api/whoami/").json()
    forged = httpx2.Response(200, json={**document, "resource": IDENTITY}).content
    assert not sdk_accepts(forged, "http://testserver/api/whoami/")
