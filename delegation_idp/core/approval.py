"""The user in the loop, as pure data: when a delegation needs its user's approval, and
which approval requests are "identical" for reuse.

A delegation rule may require that its user approve a hop before it is issued (asked for
with an OpenID CIBA backchannel authentication request): always, when the granted scope
holds one of the rule's sensitive scopes, or from a chain depth on. The policy
(:func:`delegation_idp.core.policy.evaluate`) puts the allowing rule's
:class:`ApprovalView` on its decision when it applies.

Pure: the standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ApprovalView", "request_fingerprint"]


@dataclass(frozen=True)
class ApprovalView:
    """When a hop a rule allows needs its user's approval: always, or when the granted scope
    holds one of ``scopes``, or from chain depth ``min_depth`` on. ``lifetime`` is how long a
    request waits for the user (None: the ``APPROVAL_REQUEST_LIFETIME`` setting), and
    ``reuse_seconds`` how long an approval also answers identical requests (0: never)."""

    always: bool = False
    scopes: frozenset[str] = frozenset()
    min_depth: int | None = None
    lifetime: int | None = None
    reuse_seconds: int = 0

    def needed(self, granted: frozenset[str], depth: int) -> bool:
        """Whether a hop granted ``granted`` at chain depth ``depth`` needs approval."""
        return (
            self.always
            or bool(granted & self.scopes)
            or (self.min_depth is not None and depth >= self.min_depth)
        )


def request_fingerprint(
    *,
    user: Any,
    chain: Sequence[str],
    audience: Sequence[str],
    resources: Sequence[str],
    scope: str,
    authorization_details: Sequence[Mapping[str, Any]],
    requested_token_type: str,
) -> str:
    """A digest of what the user approves: the same user, the same chain of agents in the same
    order, the same audiences, resources and scope (in any order), and the same
    ``authorization_details`` (key order aside). Two requests with the same digest are the
    same request for the reuse of an approval."""
    canonical = json.dumps(
        [
            str(user),
            list(chain),
            sorted(audience),
            sorted(resources),
            sorted(scope.split()),
            list(authorization_details),
            requested_token_type,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
