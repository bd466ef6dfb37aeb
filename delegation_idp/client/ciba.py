"""The user in the loop on the agent's side (OpenID CIBA Core 1.0, poll mode): the pure parts
of :meth:`AgentClient.ask_approval <delegation_idp.client.agent.AgentClient.ask_approval>` and
:meth:`~delegation_idp.client.agent.AgentClient.wait_for_approval`, shared by the sync and the
async client, which only send the requests and sleep.

* :func:`backchannel_form`: the backchannel authentication request (section 7.1): the token
  exchange's parameters (RFC 8693 section 2.1, without ``grant_type``) plus a
  ``binding_message``, RFC 9396 ``authorization_details`` (a JSON array), ``login_hint`` and
  ``requested_expiry``;
* :func:`acknowledgement`: its answer (section 7.3) as a :class:`BackchannelAuthentication`,
  whose deadline is on the client's clock; ``repr()`` never shows the ``auth_req_id``;
* :func:`poll_form`: the token request with the CIBA grant (section 10.1);
* :class:`Schedule`: when to poll again (section 7.3's ``interval``, five seconds more after
  each ``slow_down``), and when to stop (the request's expiry, the caller's timeout).

The first poll goes at once (a request the rule let the user's earlier approval cover is
approved already); each later one waits the interval. Needs neither Django nor the provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from delegation_idp.client.errors import (
    ApprovalTimeout,
    AuthorizationPending,
    ExpiredToken,
    OAuthError,
    SlowDown,
)

__all__ = [
    "GRANT_TYPE",
    "SLOW_DOWN_STEP",
    "BackchannelAuthentication",
    "Schedule",
    "acknowledgement",
    "approved_details",
    "backchannel_form",
    "check_key",
    "endpoint",
    "poll_form",
]

#: OpenID CIBA Core section 10.1 (the protocol's value: the client needs none of the provider).
GRANT_TYPE = "urn:openid:params:grant-type:ciba"
#: Section 11: after ``slow_down`` the client waits this much longer, from then on.
SLOW_DOWN_STEP = 5
#: Section 7.3: without an ``interval`` in the answer, the client waits five seconds.
DEFAULT_INTERVAL = 5
METADATA_FIELD = "backchannel_authentication_endpoint"

Details = Sequence[Mapping[str, Any]] | str


@dataclass(frozen=True)
class BackchannelAuthentication:
    """A backchannel authentication request the provider acknowledged (section 7.3): what the
    agent polls with. ``expires_at`` is on the clock of the client that asked; ``jkt`` the
    thumbprint of the DPoP key that proved the request (None without one): the poll must be
    proved with the same key. The ``auth_req_id`` authorizes the poll: keep it like a secret."""

    auth_req_id: str = field(repr=False)
    expires_in: int
    interval: int
    expires_at: float
    jkt: str | None = None

    def __repr__(self) -> str:  # never the auth_req_id, only enough of it to tell two apart
        bound = f", jkt={self.jkt!r}" if self.jkt else ""
        return (
            f"BackchannelAuthentication(auth_req_id='{self.auth_req_id[:4]}…', "
            f"expires_in={self.expires_in}, interval={self.interval}{bound})"
        )


def endpoint(metadata: Mapping[str, Any]) -> str:
    """The backchannel authentication endpoint of the provider's metadata."""
    url = metadata.get(METADATA_FIELD)
    if not isinstance(url, str) or not url:
        raise OAuthError("invalid_metadata", f"the provider's metadata has no {METADATA_FIELD}", 0)
    return url


def backchannel_form(
    exchange_form: Sequence[tuple[str, str]],
    *,
    binding_message: str | None = None,
    authorization_details: Details | None = None,
    login_hint: str | None = None,
    requested_expiry: int | None = None,
    requested_token_type: str | None = None,
) -> list[tuple[str, str]]:
    """The backchannel authentication request: ``exchange_form`` (a token exchange's form)
    without its ``grant_type``, and CIBA's parameters. ``authorization_details`` is a list of
    objects (sent as a JSON array) or the JSON text itself."""
    data = [(name, value) for name, value in exchange_form if name != "grant_type"]
    if requested_token_type:
        data.append(("requested_token_type", requested_token_type))
    if binding_message:
        data.append(("binding_message", binding_message))
    if authorization_details is not None:
        if not isinstance(authorization_details, str):
            authorization_details = json.dumps(
                [dict(detail) for detail in authorization_details], separators=(",", ":")
            )
        data.append(("authorization_details", authorization_details))
    if login_hint:
        data.append(("login_hint", login_hint))
    if requested_expiry is not None:
        if isinstance(requested_expiry, bool) or int(requested_expiry) <= 0:
            raise ValueError("requested_expiry is a positive number of seconds")
        data.append(("requested_expiry", str(int(requested_expiry))))
    return data


def _count(value: Any, minimum: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= minimum else None


def acknowledgement(body: Mapping[str, Any], now: float, jkt: str | None) -> BackchannelAuthentication:
    """Section 7.3's answer, received at ``now`` (the client's clock) by a client proving the
    key ``jkt`` (None: no DPoP)."""
    auth_req_id = body.get("auth_req_id")
    expires_in = _count(body.get("expires_in"), 1)
    interval = _count(body.get("interval", DEFAULT_INTERVAL), 0)
    if not isinstance(auth_req_id, str) or not auth_req_id or expires_in is None or interval is None:
        raise OAuthError(
            "invalid_response", "the backchannel authentication response is not CIBA Core 7.3's", 200
        )
    return BackchannelAuthentication(auth_req_id, expires_in, interval, now + expires_in, jkt)


def poll_form(auth: BackchannelAuthentication) -> list[tuple[str, str]]:
    """The token request that polls for ``auth``'s answer (section 10.1)."""
    return [("grant_type", GRANT_TYPE), ("auth_req_id", auth.auth_req_id)]


def approved_details(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The ``authorization_details`` of a token response (RFC 9396 section 7): what the user
    approved; none for a token obtained without the user's approval."""
    details = body.get("authorization_details")
    return tuple(d for d in details if isinstance(d, dict)) if isinstance(details, list) else ()


def check_key(auth: BackchannelAuthentication, jkt: str | None) -> None:
    """A poll is proved with the key that asked (or, like the request, without one)."""
    if auth.jkt != jkt:
        raise ValueError(
            "this request was asked for with another DPoP key (or none): poll with the client that asked"
        )


@dataclass
class Schedule:
    """When the next poll of ``auth`` goes (pure: the client sleeps and polls).

    :meth:`after` takes the refusal of a poll made at ``now`` and answers the seconds to wait
    before the next one: the interval on ``authorization_pending``, the interval grown by
    :data:`SLOW_DOWN_STEP` on ``slow_down`` (kept for every later poll). Any other refusal
    is raised; so is :class:`ExpiredToken` when the next poll could only come once the request
    expired, and :class:`ApprovalTimeout` when it would come after the caller's ``timeout``
    (seconds from ``started``)."""

    auth: BackchannelAuthentication
    started: float
    timeout: float | None = None
    interval: float = field(init=False)

    def __post_init__(self) -> None:
        self.interval = self.auth.interval

    def after(self, refused: OAuthError, now: float) -> float:
        if isinstance(refused, SlowDown):
            self.interval += SLOW_DOWN_STEP
        elif not isinstance(refused, AuthorizationPending):
            raise refused
        if now + self.interval >= self.auth.expires_at:
            raise ExpiredToken("expired_token", "the request expires before the next poll may be sent", 0)
        if self.timeout is not None and now + self.interval > self.started + self.timeout:
            raise ApprovalTimeout(
                "approval_timeout", f"the user did not decide within {self.timeout:g} seconds", 0
            )
        return self.interval
