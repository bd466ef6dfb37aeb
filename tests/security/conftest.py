"""Fixtures of the adversarial suite: extra clients, tripwires for outbound
connections and for decompression / PBES2 work, and a lazily built context."""

from __future__ import annotations

import socket
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cached_property
from typing import Any
from unittest import mock

import httpx
import pytest
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tests.conftest import Agent

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Tripped(AssertionError):
    """Something a hostile token must never cause happened."""


@contextmanager
def tripwires() -> Iterator[list[str]]:
    """While active, record and refuse what a hostile token must never cause: an
    outbound connection or name lookup (``jku``, ``x5u``, ``jwk``, ``x5c``; loopback
    services excepted), a decompression (``zip``, CVE-2024-28102) or a PBES2 key
    derivation (``p2c``, CVE-2023-6681)."""
    tripped: list[str] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            tripped.append(f"connect {address!r}")
            raise Tripped(f"outbound connection to {address!r}")
        return real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and host not in LOOPBACK:
            tripped.append(f"getaddrinfo {host!r}")
            raise Tripped(f"name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def trip(name: str) -> Any:
        def tripped_call(*args: Any, **kwargs: Any) -> Any:
            tripped.append(name)
            raise Tripped(name)

        return tripped_call

    with ExitStack() as stack:
        for target, attribute, replacement in (
            (socket.socket, "connect", connect),
            (socket, "getaddrinfo", getaddrinfo),
            (httpx.Client, "send", trip("httpx.Client.send")),
            (httpx.AsyncClient, "send", trip("httpx.AsyncClient.send")),
            (urllib.request, "urlopen", trip("urllib.request.urlopen")),
            (zlib, "decompress", trip("zlib.decompress")),
            (zlib, "decompressobj", trip("zlib.decompressobj")),
            (PBKDF2HMAC, "derive", trip("PBKDF2HMAC.derive")),
        ):
            stack.enter_context(mock.patch.object(target, attribute, replacement))
        yield tripped


class Context:
    """What a case may build its request from; tokens are issued only when asked for."""

    def __init__(self, cast: Any, clients: dict[str, Agent], issue_user_token: Any, exchange: Any):
        self.cast = cast
        self.clients = clients
        self._issue = issue_user_token
        self._exchange = exchange

    def uri(self, name: str) -> str:
        return self.cast[name].uri

    @cached_property
    def user_token(self) -> str:
        return self._issue()

    @cached_property
    def chain(self) -> list[str]:
        tokens = [self.user_token]
        for name, target in (
            ("agent1", self.uri("agent2")),
            ("agent2", self.uri("mcp-server1")),
            ("mcp-server1", self.cast.resource_server),
        ):
            response = self._exchange(name, tokens[-1], target)
            assert response.status_code == 200, response.content
            tokens.append(response.json()["access_token"])
        return tokens


@pytest.fixture
def ctx(cast: Any, clients: dict[str, Agent], issue_user_token: Any, exchange: Any) -> Context:
    return Context(cast, clients, issue_user_token, exchange)
