"""The ``act`` claim (RFC 8693 section 4.1): building and reading a delegation chain.

Pure functions, no I/O. A chain is a tuple of actor identifiers, the nearest
(newest) actor first, which is the order in which the nested claim reads::

    {"sub": "https://mcp-server1.example.com",
     "act": {"sub": "https://agent2.example.com",
             "act": {"sub": "https://agent1.example.com"}}}
    <-> ("https://mcp-server1.example.com", "https://agent2.example.com", "https://agent1.example.com")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from delegation_idp.core.reasons import Reason

__all__ = ["ActChainError", "build_act", "chain_from_act", "delegate", "nest"]

# Members an actor object may carry besides the nested ``act``. RFC 8693 section 4.1
# says non-identity claims (exp, nbf, aud) are not meaningful inside ``act``.
_ACTOR_MEMBERS = frozenset({"sub", "iss", "client_id", "act"})


class ActChainError(ValueError):
    """An ``act`` claim that is not a well-formed, bounded chain; ``reason`` says which:
    ``DEPTH_EXCEEDED`` or ``SUBJECT_MALFORMED_ACT``."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def chain_from_act(act: Any, *, max_depth: int) -> tuple[str, ...]:
    """Read a nested ``act`` claim into a chain, nearest actor first.

    Iterative, so a hostile nesting cannot exhaust the stack; anything deeper
    than ``max_depth`` is refused before it is walked further.
    """
    chain: list[str] = []
    node = act
    while node is not None:
        if len(chain) >= max_depth:
            raise ActChainError(Reason.DEPTH_EXCEEDED, "act chain too deep")
        if not isinstance(node, Mapping) or not set(node) <= _ACTOR_MEMBERS:
            raise ActChainError(Reason.SUBJECT_MALFORMED_ACT, "act member is not an actor object")
        sub = node.get("sub")
        if not isinstance(sub, str) or not sub:
            raise ActChainError(Reason.SUBJECT_MALFORMED_ACT, "actor without sub")
        chain.append(sub)
        node = node.get("act")
    return tuple(chain)


def nest(chain: Sequence[str]) -> dict[str, Any] | None:
    """The nested ``act`` claim for ``chain`` (nearest first); None for an empty chain."""
    act: dict[str, Any] | None = None
    for actor in reversed(chain):
        act = {"sub": actor} if act is None else {"sub": actor, "act": act}
    return act


def delegate(chain: Sequence[str], actor: str) -> tuple[str, ...]:
    """The chain after ``actor`` takes the task over: the new actor goes outermost."""
    return (actor, *chain)


def build_act(actor: str, subject_act: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"sub": actor, "act": <the subject token's act>}`` (RFC 8693 section 4.1)."""
    return {"sub": actor} if subject_act is None else {"sub": actor, "act": dict(subject_act)}
