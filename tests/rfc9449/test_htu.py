"""How ``htu`` is compared (RFC 9449 section 4.3 check 9): RFC 3986 section 6.2.2 and 6.2.3
normalisation of the scheme, host and port; the query and fragment left out; the path as is."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from delegation_idp.rfc9449 import normalized_htu

pytestmark = pytest.mark.rfc("9449-4.3")

schemes = st.sampled_from(["http", "https"])
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
ports = st.none() | st.integers(min_value=1, max_value=65535)
paths = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,8}){0,4}", fullmatch=True)
tails = st.from_regex(r"[A-Za-z0-9=&._-]{0,12}", fullmatch=True)
DEFAULT = {"http": 80, "https": 443}


def url(scheme: str, host: str, port: int | None, path: str) -> str:
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"


def spelled_otherwise(scheme: str, host: str, port: int | None, path: str, query: str, fragment: str) -> str:
    """The same resource, written differently: scheme and host in upper case, the default port
    spelled out (or left out), a query and a fragment added."""
    if port is None:
        port = DEFAULT[scheme]
    elif port == DEFAULT[scheme]:
        port = None
    return url(scheme.upper(), host.upper(), port, path) + f"?{query}#{fragment}"


@given(schemes, hosts, ports, paths, tails, tails)
def test_spellings_of_one_url_compare_equal(scheme, host, port, path, query, fragment):
    other = spelled_otherwise(scheme, host, port, path, query, fragment)
    assert normalized_htu(url(scheme, host, port, path)) == normalized_htu(other)


@given(schemes, hosts, ports, paths)
def test_normalising_is_idempotent_and_keeps_an_absolute_url(scheme, host, port, path):
    once = normalized_htu(url(scheme, host, port, path))
    assert once.startswith(f"{scheme}://{host}") and "?" not in once and "#" not in once
    assert normalized_htu(once) == once


@given(schemes, hosts, ports, paths, paths)
def test_different_paths_stay_different(scheme, host, port, first, second):
    assume((first or "/") != (second or "/"))
    assert normalized_htu(url(scheme, host, port, first)) != normalized_htu(url(scheme, host, port, second))


@given(schemes, hosts, hosts, ports, ports, paths)
def test_another_origin_stays_another(scheme, host, other_host, port, other_port, path):
    effective = lambda p: DEFAULT[scheme] if p is None else p  # noqa: E731
    assume(host != other_host or effective(port) != effective(other_port))
    first, second = url(scheme, host, port, path), url(scheme, other_host, other_port, path)
    assert normalized_htu(first) != normalized_htu(second)
    other_scheme = "https" if scheme == "http" else "http"
    assert normalized_htu(first) != normalized_htu(url(other_scheme, host, port, path))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://API.example.com", "https://api.example.com/"),
        ("https://api.example.com:443/a?b#c", "https://api.example.com/a"),
        ("http://api.example.com:443/a", "http://api.example.com:443/a"),
        ("https://[::1]:8443/mcp", "https://[::1]:8443/mcp"),
        ("https://user:pw@api.example.com/a", "https://api.example.com/a"),
        ("/relative", ""),
        ("https://api.example.com:99999/", ""),
        ("not a url", ""),
    ],
)
def test_normal_forms(value, expected):
    assert normalized_htu(value) == expected
