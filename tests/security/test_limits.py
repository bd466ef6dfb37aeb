"""Size, depth and work limits applied before parsing.

Each hostile input is refused with a stable reason, without recursion that grows
with the input (run under a low recursion limit), and in memory bounded by a small
constant rather than by the input's size (tracemalloc peak). No test measures time.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import RequestFactory, override_settings

from delegation_idp import jose
from delegation_idp.conf import DEFAULTS, idp_settings
from delegation_idp.core.actchain import ActChainError, chain_from_act
from delegation_idp.models import AuditEvent
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.views import TokenView
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import snapshot

from . import forge
from .conftest import tripwires

KB = 1024
MB = 1024 * KB


@contextmanager
def low_recursion(limit: int = 120) -> Iterator[None]:
    """Python's stack kept short: anything recursing per nesting level fails loudly."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, len(__import__("inspect").stack()) + 60))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def peak_allocation(action: Callable[[], Any]) -> tuple[Any, int]:
    """What ``action`` returned or raised, and the peak of memory it allocated."""
    tracemalloc.start()
    try:
        try:
            result: Any = action()
        except Exception as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def verify(token: str, **limits: Any) -> Any:
    options = {
        "algorithms": ["ES256", "RS256", "EdDSA"],
        "max_bytes": DEFAULTS["MAX_TOKEN_BYTES"],
        "max_header_bytes": DEFAULTS["MAX_HEADER_BYTES"],
        "max_json_depth": DEFAULTS["MAX_JSON_DEPTH"],
        **limits,
    }
    return jose.verify(token, keyset.verification_key, **options)


def test_documented_defaults():
    assert DEFAULTS["MAX_TOKEN_BYTES"] == 8192
    assert DEFAULTS["MAX_HEADER_BYTES"] == 1024
    assert DEFAULTS["MAX_REQUEST_BYTES"] == 32768
    assert DEFAULTS["MAX_JSON_DEPTH"] == 16


HOSTILE = {
    "64kb-token": (lambda t: forge.resign(t, pad="x" * 64 * KB), "too_large"),
    "3mb-token": (lambda t: "e30." + "A" * 3 * MB + ".x", "too_large"),
    "3mb-of-dots": (lambda t: "." * 3 * MB, "too_large"),
    "huge-header": (lambda t: forge.segment({"alg": "ES256", "kid": "k" * 4000}) + ".e30.x", "too_large"),
    "header-depth-bomb": (lambda t: forge.segment("[" * 700) + ".e30.x", "too_deep"),
    "claims-depth-bomb": (
        lambda t: forge.sign_raw(forge.own_header(), '{"a":' + "[" * 6000 + "]" * 6000 + "}"),
        "too_large",
    ),
    "act-nested-10000": (
        lambda t: forge.sign_raw(forge.own_header(), '{"act":' + forge.deep_act_json(10_000) + "}"),
        "too_large",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_tokens_refused_in_bounded_memory(name, user_token):
    build, reason = HOSTILE[name]
    token = build(user_token)
    keyset.signing_key()  # warm the key cache outside the measurement
    with low_recursion(), tripwires() as tripped:
        result, peak = peak_allocation(lambda: verify(token))
    assert isinstance(result, jose.JoseError), result
    assert result.reason == reason
    assert tripped == []
    # The input is up to 3 MB; refusing it allocates a small constant.
    assert peak < 64 * KB, (name, peak, len(token))


def test_10000_level_act_refused_by_depth_before_parsing_even_with_size_limits_raised(
    user_token, monkeypatch
):
    """Signed by the provider's own key, so only the structure is hostile."""
    claims = json.dumps(forge.claims_of(user_token), separators=(",", ":"))
    token = forge.sign_raw(forge.own_header(), claims[:-1] + ',"act":' + forge.deep_act_json(10_000) + "}")
    assert len(token) > 200 * KB
    keyset.signing_key()
    parsed: list[int] = []
    real_loads = json.loads

    def loads(text: Any, **kw: Any) -> Any:
        value = real_loads(text, **kw)  # jwcrypto probes for JSON serialization; that fails at once
        parsed.append(len(text))
        return value

    monkeypatch.setattr(json, "loads", loads)
    with low_recursion():
        result, peak = peak_allocation(lambda: verify(token, max_bytes=4 * MB))
    assert isinstance(result, jose.JoseError) and result.reason == "too_deep"
    # Only the small header was ever parsed as JSON, never the claims.
    assert parsed and max(parsed) < 1000, parsed
    # Memory grows with the (size-limited) token, a few copies of it at most.
    assert peak < 8 * len(token), (peak, len(token))


def test_json_depth_counter_is_iterative_and_ignores_strings():
    with low_recursion():
        assert jose.json_depth("[" * 100_000) == 100_000
    assert jose.json_depth('{"a":"[[[[{{{{"}') == 1
    assert jose.json_depth('{"a":"\\"[[["}') == 1
    with pytest.raises(jose.JoseError) as caught:
        jose.strict_json_loads("[" * 100_000 + "]" * 100_000, max_depth=16)
    assert caught.value.reason == "too_deep"


def test_act_chain_parser_is_iterative_and_stops_at_the_limit():
    act = forge.nested_act(10_000)
    with low_recursion():
        result, peak = peak_allocation(lambda: chain_from_act(act, max_depth=5))
    assert isinstance(result, ActChainError)
    assert peak < 16 * KB


def test_header_limit_applies_before_base64_decoding(monkeypatch):
    decoded: list[str] = []
    real = jose._b64decode
    monkeypatch.setattr(jose, "_b64decode", lambda s: decoded.append(s) or real(s))
    header = forge.segment({"alg": "ES256", "kid": "k" * 2000, "typ": "at+jwt"})
    with pytest.raises(jose.JoseError) as caught:
        jose.peek_header(header + ".e30.x", algorithms=["ES256"], max_bytes=8192, max_header_bytes=1024)
    assert caught.value.reason == "too_large"
    assert decoded == []


@pytest.mark.parametrize("size", [64 * KB, 3 * MB])
def test_endpoint_refuses_large_bodies_without_reading_them(size, cast):
    """The Content-Length check runs before Django reads the body."""
    token = "A" * size
    body = urlencode(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "https://agent2.example.com",
        }
    )
    request = RequestFactory().post(
        "/o/token/",
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    view = TokenView.as_view()
    before_tokens, before_events = snapshot(), AuditEvent.objects.count()
    response, peak = peak_allocation(lambda: view(request))
    assert response.status_code == 413
    assert json.loads(response.content)["error"] == "invalid_request"
    assert peak < size // 2 and peak < 512 * KB, peak
    assert snapshot() == before_tokens
    assert AuditEvent.objects.count() == before_events + 1
    assert AuditEvent.objects.order_by("-id").first().reason == "request_too_large"


def test_token_limit_is_enforced_at_the_endpoint_below_the_request_limit(user_token, exchange, cast):
    padded = forge.resign(user_token, pad="x" * (idp_settings.MAX_TOKEN_BYTES + 1))
    assert len(padded) < idp_settings.MAX_REQUEST_BYTES
    response = exchange("agent1", padded, cast["agent2"].uri)
    assert response.status_code == 400
    assert AuditEvent.objects.order_by("-id").first().reason == "subject_too_large"


def test_limits_are_settings(user_token, exchange, cast):
    """The limits come from DELEGATION_IDP; lowering one takes effect at once."""
    from django.conf import settings

    with override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, "MAX_TOKEN_BYTES": 200}):
        response = exchange("agent1", user_token, cast["agent2"].uri)
    assert response.status_code == 400
    assert AuditEvent.objects.order_by("-id").first().reason == "subject_too_large"
