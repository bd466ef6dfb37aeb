"""RFC 9728 protected resource metadata of ``delegation_idp.resource_server``, black-box over HTTP.

The site is the resource side's test site (tests/resource_server/urls.py): the provider and a
DRF API guarded by ``DelegatedTokenAuthentication`` on one test server, the metadata view
mounted at the root as a resource server mounts it. ``configure`` sets the resource options
as a site's settings would: the identity URI (``RESOURCE_SERVER_URI``, the audience the
provider maps the service to) is the seed's ``https://resource-server.example.com``; the URL
clients use is ``RESOURCE_URL``, or derived from the request.
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
IDENTITY = "https://resource-server.example.com"


def challenge(response: Any) -> dict[str, str]:
    header = response["WWW-Authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', header))


def metadata_url_for(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known suffix goes between the host and the path of the
    resource identifier, a terminating slash after the host removed."""
    parts = urlsplit(resource)
    path = parts.path if parts.path != "/" else ""
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{path}"


def fetch(client: Any, url: str, **extra: Any) -> Any:
    """GET ``url`` on the test site as a client that typed it: host, port and scheme."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = str(parts.port or (443 if secure else 80))
    return client.get(parts.path, secure=secure, HTTP_HOST=parts.netloc, SERVER_PORT=port, **extra)


def assert_not_found(response: Any) -> None:
    assert response.status_code == 404
    assert response["Content-Type"].split(";")[0] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json()["error"] in ("not_found", "not_configured")
    assert "resource" not in response.json()


# -- section 2: the document --------------------------------------------------------------------


@pytest.mark.rfc("9728-3.2")
def test_metadata_is_a_json_object_with_the_fields_section_2_defines(client, configure):
    configure()
    response = client.get(WELL_KNOWN)
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == "application/json"
    data = response.json()
    # resource: REQUIRED, the resource identifier: here the root resource of the origin the
    # document was fetched from (no RESOURCE_URL), never the identity URI it is mapped to.
    assert data["resource"] == "http://testserver" != IDENTITY
    assert not urlsplit(data["resource"]).fragment
    # authorization_servers: issuer identifiers of the servers that issue its tokens.
    assert data["authorization_servers"] == ["http://testserver"]
    # scopes_supported: RECOMMENDED; bearer_methods_supported: values from RFC 6750.
    assert data["scopes_supported"] == ["tasks.read", "tasks.write"]
    assert data["bearer_methods_supported"] == ["header"]
    assert set(data["bearer_methods_supported"]) <= BEARER_METHODS
    # Section 3.2: claims with zero elements are omitted; nothing is sent as null.
    assert all(value not in (None, [], "") for value in data.values()), data


@pytest.mark.rfc("9728-3.2")
def test_claims_with_zero_elements_are_omitted(client, configure):
    configure(RESOURCE_SCOPES_SUPPORTED=[])
    data = client.get(WELL_KNOWN).json()
    assert "scopes_supported" not in data
    assert data["resource"] == "http://testserver"


@pytest.mark.rfc("9728-2")
def test_each_authorization_server_is_an_issuer_with_rfc8414_metadata(client, configure):
    """A client follows ``authorization_servers`` to RFC 8414 metadata whose ``issuer`` is the
    listed identifier (RFC 8414 section 3.3), and whose token endpoint it can use."""
    configure()
    for issuer in client.get(WELL_KNOWN).json()["authorization_servers"]:
        parts = urlsplit(issuer)
        assert parts.scheme in ("http", "https") and not parts.query and not parts.fragment
        server = client.get(f"/.well-known/oauth-authorization-server{parts.path.rstrip('/')}")
        assert server.status_code == 200
        assert server.json()["issuer"] == issuer
        assert server.json()["token_endpoint"].startswith(issuer)


# -- sections 3.1 and 3.3: the document at the URL formed from an identifier names it ---------


@pytest.mark.rfc("9728-3.3")
@pytest.mark.parametrize(
    "resource",
    [
        "https://api.example.com",
        "https://api.example.com/",
        "https://api.example.com/api",
        "https://api.example.com/api/v1",
        "https://api.example.com/api/tasks/",
        "https://api.example.com:8443/tasks",
    ],
)
def test_the_metadata_at_the_url_formed_from_the_configured_url_names_it(
    resource, client, settings, configure
):
    """Section 3.1 forms the URL from the resource identifier; section 3.3: the ``resource``
    found there MUST be identical to the identifier the URL was formed from. With
    ``RESOURCE_URL`` set, that holds whatever host the request named."""
    configure(RESOURCE_URL=resource)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "api.example.com"]
    for response in (
        fetch(client, metadata_url_for(resource)),
        client.get(urlsplit(metadata_url_for(resource)).path),
    ):
        assert response.status_code == 200, response.content
        assert response.json()["resource"] == resource


@pytest.mark.rfc("9728-3.3")
def test_the_root_document_names_the_root_of_the_configured_url(client, configure):
    configure(RESOURCE_URL="https://api.example.com/api/tasks/")
    assert client.get(WELL_KNOWN).json()["resource"] == "https://api.example.com"


@pytest.mark.rfc("9728-3.3")
@pytest.mark.parametrize(
    "url",
    [
        "http://testserver/api/whoami/",
        "http://testserver/api/whoami",  # the identifier as the client spells it
        "https://testserver/api/whoami/",
        "http://localhost/api/whoami/",  # another host ALLOWED_HOSTS lists
        "http://testserver",
        "https://localhost",
    ],
)
def test_without_a_configured_url_the_document_names_the_url_it_was_fetched_for(url, client, configure):
    """The origin is the request's (scheme and a host Django accepted), the path the one the
    suffix names: the document for ``http://testserver/api/whoami/`` says exactly that."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    response = fetch(client, metadata_url_for(url))
    assert response.status_code == 200, response.content
    assert response.json()["resource"] == url


@pytest.mark.rfc("9728-3.1")
@pytest.mark.parametrize(
    "path",
    [
        WELL_KNOWN + "/api/other/",  # not declared
        WELL_KNOWN + "/api/whoami/more/",  # below a declared path: not the identifier itself
        WELL_KNOWN + "/api",  # above one
        WELL_KNOWN + "/api/whoamix/",
        WELL_KNOWN + "/",  # a path of just "/" is the root, whose document has no suffix
        WELL_KNOWN + "/resource-server.example.com",  # the identity URI is not a URL of this site
        WELL_KNOWN + "//api/whoami/",
    ],
)
def test_a_suffix_naming_no_declared_resource_is_not_found(path, client, configure):
    configure(RESOURCE_PATHS=["/api/whoami/"], RESOURCE_URL="https://api.example.com/api/v1")
    assert_not_found(client.get(path))


@pytest.mark.rfc("9728-3.1")
@pytest.mark.parametrize(
    "path", [WELL_KNOWN + "/api/v2", WELL_KNOWN + "/api/v1x", WELL_KNOWN + "/api/v1/tasks"]
)
def test_only_the_configured_urls_path_has_a_document_of_its_own(path, client, configure):
    configure(RESOURCE_URL="https://api.example.com/api/v1")
    assert client.get(WELL_KNOWN + "/api/v1").json()["resource"] == "https://api.example.com/api/v1"
    assert_not_found(client.get(path))


@pytest.mark.rfc("9728-3.1")
def test_a_metadata_url_with_a_query_names_no_resource_of_this_site(client, configure):
    """A query in the metadata URL is the identifier's query (section 3.1); the site names
    no resource with a query, so it does not pretend to."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    assert client.get(WELL_KNOWN + "/api/whoami/").status_code == 200
    assert_not_found(client.get(WELL_KNOWN + "/api/whoami/", {"x": "1"}))
    assert_not_found(client.get(WELL_KNOWN, {"x": "1"}))


# -- the host a document is derived from ------------------------------------------------------


@pytest.mark.rfc("9728-7.3")
def test_a_host_django_refuses_gets_no_document(client, configure):
    configure(RESOURCE_PATHS=["/api/whoami/"])
    response = client.get(WELL_KNOWN + "/api/whoami/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400  # Django's DisallowedHost: ALLOWED_HOSTS does not list it
    assert b"resource" not in response.content


@pytest.mark.rfc("9728-7.3")
@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["*"], "evil.example.com"),
        ([".example.com"], "evil.example.com"),
        (["testserver"], "testserver:8443"),
    ],
)
def test_a_host_let_in_by_a_pattern_or_naming_another_port_is_not_claimed(
    allowed, host, client, settings, configure
):
    """``*`` and ``.example.com`` let any (sub)domain in; Django compares hosts without their
    port. Neither makes the name this service's: no document names it (so no client is told to
    get tokens for it here), and the challenge does not point at one."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    settings.ALLOWED_HOSTS = allowed
    assert_not_found(client.get(WELL_KNOWN + "/api/whoami/", HTTP_HOST=host))
    assert_not_found(client.get(WELL_KNOWN, HTTP_HOST=host))
    refused = client.get("/api/whoami/", HTTP_HOST=host)
    assert refused.status_code == 401
    assert "resource_metadata" not in challenge(refused)


@pytest.mark.rfc("9728-7.3")
def test_the_bare_domain_of_a_pattern_is_listed_by_it(client, settings, configure):
    configure(RESOURCE_PATHS=["/api/whoami/"])
    settings.ALLOWED_HOSTS = [".example.com"]
    response = client.get(WELL_KNOWN + "/api/whoami/", HTTP_HOST="example.com")
    assert response.json()["resource"] == "http://example.com/api/whoami/"


# -- section 5.1: the challenge leads to the document naming what was called -----------------


@pytest.mark.rfc("9728-5.1")
@pytest.mark.parametrize(
    ("options", "resource"),
    [
        ({}, "http://testserver"),  # nothing declared: the root resource, a prefix of the URL
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://testserver/api/whoami/"),  # the URL itself
        ({"RESOURCE_PATHS": ["/api/"]}, "http://testserver/api/"),  # the declared path it lies below
        ({"RESOURCE_PATHS": ["/api/", "/api/whoami/"]}, "http://testserver/api/whoami/"),  # the nearest
        ({"RESOURCE_URL": "https://api.example.com/api/"}, "https://api.example.com/api/"),
        ({"RESOURCE_URL": "https://api.example.com/other/"}, "https://api.example.com"),
    ],
)
def test_the_challenge_without_a_token_names_the_metadata_of_the_resource_called(
    options, resource, client, settings, configure
):
    """A 401 without a token: ``Bearer`` with ``resource_metadata``, the URL formed from the
    resource the request falls under (section 3.1), where the document names that resource."""
    configure(**options)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "api.example.com"]
    response = client.get("/api/whoami/")
    assert response.status_code == 401
    params = challenge(response)
    assert "error" not in params  # RFC 6750 section 3.1: no error code without a token
    assert params["resource_metadata"] == metadata_url_for(resource)
    document = fetch(client, params["resource_metadata"])
    assert document.json()["resource"] == resource
    # The resource is the path called or one it lies below (on a segment boundary).
    called, named = "/api/whoami/", urlsplit(resource).path
    assert called == named or called.startswith(named.rstrip("/") + "/")


@pytest.mark.rfc("9728-5.1")
def test_the_challenge_to_a_refused_token_names_the_resource_metadata_too(
    client, cast, chain, configure, use_validator
):
    """An invalid token (401 invalid_token: here one addressed to another party) and a token
    without the required scope (403 insufficient_scope) are challenged with the same
    ``resource_metadata``."""
    configure(RESOURCE_PATHS=["/api/whoami/", "/api/admin/"])
    use_validator()
    wrong_audience = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {chain[2]}")
    assert wrong_audience.status_code == 401
    assert challenge(wrong_audience)["error"] == "invalid_token"
    assert challenge(wrong_audience)["resource_metadata"] == f"http://testserver{WELL_KNOWN}/api/whoami/"
    lacking = client.get("/api/admin/", HTTP_AUTHORIZATION=f"Bearer {chain[3]}")
    assert lacking.status_code == 403
    assert challenge(lacking)["error"] == "insufficient_scope"
    assert challenge(lacking)["resource_metadata"] == f"http://testserver{WELL_KNOWN}/api/admin/"


@pytest.mark.rfc("9728-5.1")
def test_a_configured_metadata_url_is_named_as_it_is(client, configure):
    """A site that serves its metadata elsewhere (behind a proxy, another host) says where."""
    url = "https://resource-server.example.com/.well-known/oauth-protected-resource"
    configure(RESOURCE_METADATA_URL=url)
    assert challenge(client.get("/api/whoami/"))["resource_metadata"] == url


# -- tokens addressed to the URL the document names ------------------------------------------


@pytest.mark.rfc("9728-3.3")
@pytest.mark.parametrize(
    ("options", "aud"),
    [
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://testserver/api/whoami/"),
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://testserver/api/whoami"),  # a trailing slash aside
        ({}, "http://testserver"),  # the root resource the root document names
        ({"RESOURCE_URL": "https://api.example.com/api/whoami/"}, "https://api.example.com/api/whoami/"),
        (
            {"RESOURCE_URL": "https://api.example.com/api/whoami/"},
            ["https://other.example.com", "https://api.example.com/api/whoami"],
        ),
    ],
)
def test_a_token_addressed_to_the_url_the_metadata_names_is_accepted(
    options, aud, client, chain, configure, use_validator, readdress
):
    """The provider may address a token to the RFC 8707 ``resource`` a client asked for (the
    URL the document named) instead of the identity URI: the API takes either."""
    configure(**options)
    use_validator()
    token = readdress(chain[3], aud)
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response.json()["aud"] == (aud if isinstance(aud, list) else [aud])


@pytest.mark.rfc("9728-3.3")
@pytest.mark.parametrize(
    ("options", "aud"),
    [
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://testserver/api/other/"),  # a URL it does not name
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://localhost/api/whoami/"),  # another host than called
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "https://testserver/api/whoami/"),  # another scheme
        ({"RESOURCE_PATHS": ["/api/whoami/"]}, "http://testserver:8443/api/whoami/"),  # another port
        ({"RESOURCE_URL": "https://api.example.com/api/whoami/"}, "http://testserver/api/whoami/"),
        ({"RESOURCE_URL": "https://api.example.com/api/whoami/"}, "https://mcp-server1.example.com"),
    ],
)
def test_a_token_addressed_to_another_url_is_refused(
    options, aud, client, chain, configure, use_validator, readdress
):
    configure(**options)
    use_validator()
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {readdress(chain[3], aud)}")
    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"
    assert "not addressed to this service" in challenge(response)["error_description"]


@pytest.mark.rfc("9728-7.3")
@pytest.mark.parametrize(
    ("allowed", "host", "aud"),
    [
        (["*"], "other.example.com", "http://other.example.com/api/whoami/"),
        ([".example.com"], "other.example.com", "http://other.example.com/api/whoami/"),
        (["testserver"], "testserver:8443", "http://testserver:8443/api/whoami/"),
        (["testserver"], "testserver:8443", "http://testserver:8443"),
    ],
)
def test_a_host_header_does_not_make_a_token_for_another_service_acceptable(
    allowed, host, aud, client, chain, settings, configure, use_validator, readdress
):
    """A token the provider addressed to another service (another subdomain, another port of
    this machine) presented here with that service's name in ``Host``: refused, not taken as
    addressed to this site."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    settings.ALLOWED_HOSTS = [*allowed, "testserver"]  # the provider's own test host, for its keys
    use_validator()
    response = client.get(
        "/api/whoami/", HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {readdress(chain[3], aud)}"
    )
    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"


# -- section 5: from the challenge to a working token ------------------------------------------


@pytest.mark.rfc("9728-5")
def test_a_client_finds_its_way_in_from_the_challenge_alone(
    client, cast, chain, exchange, configure, use_validator
):
    """The MCP server holds agent2's token and knows nothing but the API's URL: the challenge
    leads to the metadata, the metadata to the authorization server, whose token endpoint
    exchanges the token for one addressed to the ``resource`` (RFC 8707), which the API takes."""
    from delegation_idp.models import Party

    configure(RESOURCE_PATHS=["/api/whoami/"])
    Party.objects.filter(uri=cast.resource_server).update(resource_prefixes="http://testserver/api/")
    use_validator()
    first = client.get("/api/whoami/")
    metadata = fetch(client, challenge(first)["resource_metadata"]).json()
    assert metadata["resource"] == "http://testserver/api/whoami/"  # the URL called
    issuer = metadata["authorization_servers"][0]
    server = client.get("/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == issuer
    assert urlsplit(server["token_endpoint"]).path == "/o/token/"
    issued = exchange("mcp-server1", chain[2], None, resource=metadata["resource"])
    assert issued.status_code == 200, issued.content
    token = issued.json()["access_token"]
    # Addressed to the party the URL belongs to: its identity URI, or the URL itself.
    assert decode(token)[1]["aud"] in (cast.resource_server, metadata["resource"], [metadata["resource"]])
    response = client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response.json()["actors"] == [cast["mcp-server1"].uri, cast["agent2"].uri, cast["agent1"].uri]


# -- the view itself -----------------------------------------------------------------------


@pytest.mark.rfc("9728-3")
def test_metadata_is_public_and_read_only(client, configure):
    """Anyone may read it (no credentials), and it is only read: other methods are refused."""
    configure(RESOURCE_PATHS=["/api/whoami/"])
    for path in (WELL_KNOWN, WELL_KNOWN + "/api/whoami/"):
        assert client.get(path).status_code == 200
        assert client.head(path).status_code == 200
        for method in (client.post, client.put, client.delete):
            assert method(path).status_code == 405


def test_a_site_without_a_resource_identifier_serves_no_metadata(client, configure):
    configure(RESOURCE_SERVER_URI=None, RESOURCE_PATHS=["/api/whoami/"])
    assert_not_found(client.get(WELL_KNOWN))
    assert_not_found(client.get(WELL_KNOWN + "/api/whoami/"))
