"""What cancels an approval request: its subject token revoked, which is also what disabling
an agent of its chain, deactivating its user or revoking a signing key does (each revokes
the live tokens that name it, and lineage sends ``token_revoked`` for them)."""

from __future__ import annotations

from typing import Any

from delegation_idp import signals
from delegation_idp.ciba import approvals

__all__ = ["connect"]


def on_token_revoked(sender: Any, jtis: Any = (), reason: str = "revoked", **kwargs: Any) -> int:
    """Cancel the open requests whose subject token was among ``jtis``."""
    return approvals.cancel_for_subjects(jtis, f"subject_{reason}")


def connect() -> None:
    signals.token_revoked.connect(on_token_revoked, dispatch_uid="delegation_idp_ciba_cancel")
