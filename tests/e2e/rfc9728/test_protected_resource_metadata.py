"""RFC 9728 protected resource metadata of ``delegation_idp.resource_server``, black-box over HTTP.

The site is the resource side's test site (tests/resource_server/urls.py): the provider and a
DRF API guarded by ``DelegatedTokenAuthentication`` on one test server, the metadata view
mounted at the root as a resource server mounts it. ``resource_settings`` configures the
resource identifier (``RESOURCE_SERVER_URI``) and its scopes, as a site's settings would.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import decode

pytestmark = [pytest.mark.urls("tests.resource_server.urls"), pytest.mark.rfc("9728-2")]

WELL_KNOWN = "/.well-known/oauth-protected-resource"
BEARER_METHODS = {"header", "body", "query"}  # RFC 9728 section 2, from RFC 6750


def challenge(response: Any) -> dict[str, str]:
    header = response["WWW-Authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', header))


def metadata_url_for(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known suffix goes between the host and the path of the
    resource identifier, a terminating slash after the host removed."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/") if parts.path != "/" else ""
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{path}"


def path_of(url: str) -> str:
    return urlsplit(url).path


def with_resource(settings: Any, resource: str | None, **options: Any) -> None:
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "RESOURCE_SERVER_URI": resource, **options}


@pytest.mark.rfc("9728-3.2")
def test_metadata_is_a_json_object_with_the_fields_section_2_defines(client, cast, resource_settings):
    response = client.get(WELL_KNOWN)
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == "application/json"
    data = response.json()
    # resource: REQUIRED, the resource identifier (an https URL without a fragment).
    assert data["resource"] == cast.resource_server
    resource = urlsplit(data["resource"])
    assert resource.scheme == "https" and resource.netloc and not resource.fragment
    # authorization_servers: issuer identifiers of the servers that issue its tokens.
    assert data["authorization_servers"] == ["http://testserver"]
    # scopes_supported: RECOMMENDED; bearer_methods_supported: values from RFC 6750.
    assert data["scopes_supported"] == ["tasks.read", "tasks.write"]
    assert data["bearer_methods_supported"] == ["header"]
    assert set(data["bearer_methods_supported"]) <= BEARER_METHODS
    # Section 3.2: claims with zero elements are omitted; nothing is sent as null.
    assert all(value not in (None, [], "") for value in data.values()), data


@pytest.mark.rfc("9728-3.2")
def test_claims_with_zero_elements_are_omitted(client, cast, settings):
    with_resource(settings, cast.resource_server, RESOURCE_SCOPES_SUPPORTED=[])
    data = client.get(WELL_KNOWN).json()
    assert "scopes_supported" not in data
    assert data["resource"] == cast.resource_server


@pytest.mark.rfc("9728-2")
def test_each_authorization_server_is_an_issuer_with_rfc8414_metadata(client, resource_settings):
    """A client follows ``authorization_servers`` to RFC 8414 metadata whose ``issuer`` is the
    listed identifier (RFC 8414 section 3.3), and whose token endpoint it can use."""
    for issuer in client.get(WELL_KNOWN).json()["authorization_servers"]:
        parts = urlsplit(issuer)
        assert parts.scheme in ("http", "https") and not parts.query and not parts.fragment
        server = client.get(f"/.well-known/oauth-authorization-server{parts.path.rstrip('/')}")
        assert server.status_code == 200
        assert server.json()["issuer"] == issuer
        assert server.json()["token_endpoint"].startswith(issuer)


@pytest.mark.rfc("9728-3.3")
@pytest.mark.parametrize(
    "resource",
    [
        "https://resource-server.example.com",
        "https://resource-server.example.com/",
        "https://resource-server.example.com/api",
        "https://resource-server.example.com/api/v1",
    ],
)
def test_the_metadata_at_the_url_formed_from_the_identifier_names_that_identifier(resource, client, settings):
    """Section 3.1 forms the URL from the resource identifier; section 3.3: the ``resource``
    found there MUST be identical to the identifier the URL was formed from."""
    with_resource(settings, resource)
    response = client.get(path_of(metadata_url_for(resource)))
    assert response.status_code == 200
    assert response.json()["resource"] == resource


@pytest.mark.rfc("9728-5.1")
@pytest.mark.parametrize(
    "resource", ["https://resource-server.example.com", "https://resource-server.example.com/api/v1"]
)
def test_the_challenge_without_a_token_names_the_resource_metadata(resource, client, settings):
    """A 401 without a token: ``Bearer`` with ``resource_metadata``, the URL formed as in
    section 3.1, where the metadata names this resource."""
    with_resource(settings, resource)
    response = client.get("/api/whoami/")
    assert response.status_code == 401
    params = challenge(response)
    assert "error" not in params  # RFC 6750 section 3.1: no error code without a token
    assert path_of(params["resource_metadata"]) == path_of(metadata_url_for(resource))
    assert params["resource_metadata"].startswith("http://testserver/")
    assert client.get(path_of(params["resource_metadata"])).json()["resource"] == resource


@pytest.mark.rfc("9728-5.1")
def test_the_challenge_to_a_refused_token_names_the_resource_metadata_too(
    client, cast, chain, resource_settings, use_validator
):
    """An invalid token (401 invalid_token: here one addressed to another party) and a token
    without the required scope (403 insufficient_scope) are challenged with the same
    ``resource_metadata``."""
    use_validator()
    expected = "http://testserver" + WELL_KNOWN
    wrong_audience = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {chain[2]}")
    assert wrong_audience.status_code == 401
    assert challenge(wrong_audience)["error"] == "invalid_token"
    assert challenge(wrong_audience)["resource_metadata"] == expected
    lacking = client.get("/api/admin/", HTTP_AUTHORIZATION=f"Bearer {chain[3]}")
    assert lacking.status_code == 403
    assert challenge(lacking)["error"] == "insufficient_scope"
    assert challenge(lacking)["resource_metadata"] == expected


@pytest.mark.rfc("9728-5.1")
def test_a_configured_metadata_url_is_named_as_it_is(client, cast, settings):
    """A site that serves its metadata elsewhere (behind a proxy, another host) says where."""
    url = "https://resource-server.example.com/.well-known/oauth-protected-resource"
    with_resource(settings, cast.resource_server, RESOURCE_METADATA_URL=url)
    assert challenge(client.get("/api/whoami/"))["resource_metadata"] == url


@pytest.mark.rfc("9728-5")
def test_a_client_finds_its_way_in_from_the_challenge_alone(
    client, cast, chain, exchange, resource_settings, use_validator
):
    """The MCP server holds agent2's token and knows nothing but the API's URL: the challenge
    leads to the metadata, the metadata to the authorization server, whose token endpoint
    exchanges the token for one addressed to the ``resource`` (RFC 8707), which the API takes."""
    use_validator()
    first = client.get("/api/whoami/")
    metadata = client.get(path_of(challenge(first)["resource_metadata"])).json()
    issuer = metadata["authorization_servers"][0]
    server = client.get("/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == issuer
    assert path_of(server["token_endpoint"]) == "/o/token/"
    issued = exchange("mcp-server1", chain[2], None, resource=metadata["resource"])
    assert issued.status_code == 200, issued.content
    token = issued.json()["access_token"]
    assert decode(token)[1]["aud"] == metadata["resource"]
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response.json()["actors"] == [cast["mcp-server1"].uri, cast["agent2"].uri, cast["agent1"].uri]


@pytest.mark.rfc("9728-3")
def test_metadata_is_public_and_read_only(client, cast, resource_settings):
    """Anyone may read it (no credentials), and it is only read: other methods are refused."""
    assert client.get(WELL_KNOWN).status_code == 200
    assert client.head(WELL_KNOWN).status_code == 200
    for method in (client.post, client.put, client.delete):
        assert method(WELL_KNOWN).status_code == 405


def test_a_site_without_a_resource_identifier_serves_no_metadata(client, settings):
    with_resource(settings, None)
    assert client.get(WELL_KNOWN).status_code == 404
