"""The typed records one token request passes along: what was decided, what was issued.

Frozen data classes of the standard library only, so that every layer can import
them: the RFC 8693 pipeline produces an :class:`Exchange` and then an
:class:`Issuance`; the token generator hook produces an :class:`Issuance` for
every other grant; lineage stores an :class:`Issuance` as its row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from delegation_idp.core.approval import ApprovalView
from delegation_idp.core.reasons import Reason

__all__ = ["Exchange", "Issuance"]


@dataclass(frozen=True)
class Exchange:
    """A token exchange the policy allowed (RFC 8693 section 2): who, for whom, toward
    which audiences, with which scope and chain, until when, and by which rule.

    ``chain`` is the issued token's actor chain, nearest first: the requester, then
    the subject token's actors. ``parties`` is every registered party the new token
    relies on (the requester, the chain and the audiences), re-checked at issuance.
    """

    client_id: str
    requester: str
    subject: str
    user_pk: Any
    audience: tuple[str, ...]
    scope: str
    act: Mapping[str, Any]
    chain: tuple[str, ...]
    subject_exp: int
    parent_jti: str
    parent_path: str
    root_jti: str
    issued_token_type: str
    rule_id: int | None = None
    reason: Reason = Reason.ALLOWED
    #: the requester's DPoP key thumbprint, which the new token is bound to ("" for bearer)
    jkt: str = ""
    #: the RFC 8707 resources as requested (an ID-JAG names them in its ``resource`` claim)
    resources: tuple[str, ...] = ()
    #: an ID-JAG's ``client_id``: the requester's client id at the authorization server
    assertion_client_id: str = ""
    #: the user must approve it first (OpenID CIBA): the allowing rule's terms; None: no need
    approval: ApprovalView | None = None
    #: RFC 9396 details of the action, as the user approved them (carried in the token)
    authorization_details: tuple[Mapping[str, Any], ...] = ()
    #: the approval request it is issued on (its id), None without one
    approval_id: Any = None

    @property
    def depth(self) -> int:
        return len(self.chain)

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.chain, *self.audience)))


@dataclass(frozen=True)
class Issuance:
    """One access token as issued: its signed claims, the key that signed them, and where
    it sits in lineage (``parent_jti`` empty for a root token).

    ``parties`` are the registered parties it names (re-checked inside the issuing
    transaction and stored for revocation by party); ``code`` the authorization code it
    was redeemed for, if any (only its hash is stored).
    """

    claims: Mapping[str, Any]
    kid: str
    grant_type: str
    parties: tuple[str, ...] = ()
    user_pk: Any = None
    parent_jti: str = ""
    parent_path: str = ""
    root_jti: str = ""
    code: str | None = field(default=None, repr=False)
    #: the DPoP key thumbprint the token is bound to (its ``cnf.jkt``), "" for a bearer token
    jkt: str = ""
    #: its Token Status List entry (list number, index), None when it carries no ``status``
    status_entry: tuple[int, int] | None = None
    #: the user's approval it was issued on (an ``ApprovalRequest`` id), None without one
    approval_id: Any = None

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def audience(self) -> list[str]:
        aud = self.claims["aud"]
        return [aud] if isinstance(aud, str) else list(aud)

    @property
    def path(self) -> str:
        return f"{self.parent_path}/{self.jti}" if self.parent_jti else self.jti

    @property
    def depth(self) -> int:
        return self.path.count("/")
