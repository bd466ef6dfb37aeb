"""The source address that throttles and lockouts count against: ``REMOTE_ADDR``, or behind
proxies the operator trusts (``TRUSTED_PROXIES``), the nearest address the last of those
proxies saw in ``X-Forwarded-For``. A client cannot choose its own address by sending
the header itself, and everyone behind one load balancer is not one address."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from hypothesis import given
from hypothesis import strategies as st

from delegation_idp.provider.throttling import client_address
from tests.helpers import with_idp

PROXY = "10.0.0.5"
CLIENT_A, CLIENT_B = "203.0.113.7", "198.51.100.9"


@pytest.mark.parametrize(
    ("trusted", "meta", "expected"),
    [
        ([], {"REMOTE_ADDR": CLIENT_A}, CLIENT_A),
        ([], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": CLIENT_A}, PROXY),  # header not trusted
        ([PROXY], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": CLIENT_A}, CLIENT_A),
        (["10.0.0.0/8"], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{CLIENT_B}, 10.1.2.3"}, CLIENT_B),
        # the client's own header value comes first; only what the trusted proxy added counts
        ([PROXY], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{CLIENT_B}, {CLIENT_A}"}, CLIENT_A),
        # a direct client that sends the header itself is its own address
        ([PROXY], {"REMOTE_ADDR": CLIENT_A, "HTTP_X_FORWARDED_FOR": CLIENT_B}, CLIENT_A),
        ([PROXY], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "not an address"}, PROXY),
        ([PROXY], {"REMOTE_ADDR": PROXY}, PROXY),
        ([PROXY], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "2001:db8::1"}, "2001:db8::1"),
        ([], {}, None),
    ],
)
def test_the_counted_address(trusted, meta, expected):
    with with_idp(TRUSTED_PROXIES=trusted):
        assert client_address(meta) == expected


@given(header=st.text(max_size=200), trusted=st.booleans())
def test_any_forwarded_header_gives_an_address_the_proxy_or_header_named(header, trusted):
    with with_idp(TRUSTED_PROXIES=[PROXY] if trusted else []):
        address = client_address({"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": header})
    assert address == PROXY or (trusted and address in header)


@pytest.mark.django_db
def test_behind_a_trusted_proxy_one_clients_wrong_passwords_do_not_lock_out_another(client, cast):
    """Behind a load balancer every request arrives from its address: without the forwarded
    address, one attacker's wrong passwords would lock every user out."""
    cache.clear()
    username = cast.data["user"]["username"]
    with with_idp(TRUSTED_PROXIES=[PROXY], SIGN_IN_FAILURE_LIMIT=5, SIGN_IN_ADDRESS_FAILURE_LIMIT=10):
        for n in range(20):
            client.post(
                "/accounts/login/",
                {"username": username, "password": f"wrong-{n}"},
                REMOTE_ADDR=PROXY,
                HTTP_X_FORWARDED_FOR=CLIENT_A,
            )
        attacker = client.post(
            "/accounts/login/",
            {"username": username, "password": cast.data["user"]["password"]},
            REMOTE_ADDR=PROXY,
            HTTP_X_FORWARDED_FOR=CLIENT_A,
        )
        assert attacker.status_code == 429
        client.logout()
        user = client.post(
            "/accounts/login/",
            {"username": username, "password": cast.data["user"]["password"]},
            REMOTE_ADDR=PROXY,
            HTTP_X_FORWARDED_FOR=CLIENT_B,
        )
        assert user.status_code == 302, user.status_code
    cache.clear()


@pytest.mark.django_db
def test_an_attacker_rotating_addresses_within_one_ipv6_network_is_one_address(client, cast):
    """An IPv6 host gets a whole /64; counting each address apart would give an attacker
    2**64 fresh lockout counters. Throttles and lockouts count an IPv6 /64 as one address."""
    cache.clear()
    username = cast.data["user"]["username"]
    with with_idp(SIGN_IN_FAILURE_LIMIT=5, SIGN_IN_ADDRESS_FAILURE_LIMIT=10):
        for n in range(12):
            client.post(
                "/accounts/login/",
                {"username": f"{username}-{n}", "password": "wrong"},
                REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}",
            )
        locked = client.post(
            "/accounts/login/",
            {"username": username, "password": cast.data["user"]["password"]},
            REMOTE_ADDR="2001:db8:1:2:ffff::1",
        )
        assert locked.status_code == 429
        client.logout()
        neighbour = client.post(
            "/accounts/login/",
            {"username": username, "password": cast.data["user"]["password"]},
            REMOTE_ADDR="2001:db8:1:3::1",
        )
        assert neighbour.status_code == 302
    cache.clear()
