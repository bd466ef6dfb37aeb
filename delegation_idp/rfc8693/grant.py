"""The token-exchange grant, RFC 8693 section 2.

Delegation semantics only: the issued token keeps the subject token's ``sub``,
is addressed to the requested target, and records the requesting agent as the
outermost actor of a nested ``act`` claim (section 4.1). Impersonation is never
offered, so a token that carries ``act`` can never lose its actors.

Overridable hooks, for example to add a claim check::

    class MyGrant(TokenExchangeGrant):
        def validate_subject_claims(self, request, claims):
            super().validate_subject_claims(request, claims)
            if claims.get("acr") != "mfa":
                raise self.invalid_request(request, "The subject token needs MFA.", "acr")
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from django.db import DatabaseError
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase

from delegation_idp import audit, client_subject, jose, signals
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.actchain import ActChainError, build_act, chain_from_act
from delegation_idp.lineage.issuance import ParentRevoked, subject_record
from delegation_idp.models import Party, TokenLineage
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.policy_store import PolicyStore
from delegation_idp.provider.policy_store import current as current_policy
from delegation_idp.provider.policy_store import load as load_policy
from delegation_idp.provider.resilience import DATABASE_ERROR, retry_after
from delegation_idp.provider.tokens import Exchange
from delegation_idp.rfc8693.errors import InvalidTargetError

logger = logging.getLogger(__name__)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"

# Token types whose value may be one of this provider's JWT access tokens.
ACCEPTED_SUBJECT_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})
ISSUABLE_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})
# Section 2.1: parameters that may repeat; RFC 6749 section 3.2: no other may.
REPEATABLE = frozenset({"audience", "resource"})


class TokenExchangeGrant(GrantTypeBase):
    """``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``."""

    GRANT_TYPE = GRANT_TYPE

    # -- errors ---------------------------------------------------------------

    @staticmethod
    def invalid_request(request: Request, description: str, reason: str) -> errors.OAuth2Error:
        error = errors.InvalidRequestError(description=description, request=request)
        error.delegation_reason = reason  # type: ignore[attr-defined]
        return error

    # -- oauthlib entry points -------------------------------------------------

    def create_token_response(self, request: Request, token_handler: Any) -> tuple[dict, str, int]:
        """Section 2.2: the token response, or a JSON error; never a token on error."""
        headers = self._get_default_headers()
        with audit.attempt(event="token_exchange", grant_type=GRANT_TYPE) as record:
            try:
                self.validate_token_request(request)
                token = token_handler.create_token(request, refresh_token=False)
                self._issue(request, token)
            except errors.OAuth2Error as exc:
                record.deny(exc.error, getattr(exc, "delegation_reason", "") or exc.error)
                signals.exchange_denied.send(
                    sender=type(self),
                    request=request,
                    reason=record.reason,
                    error=exc.error,
                    client_id=record.client_id,
                )
                headers.update(exc.headers)
                return headers, exc.json, exc.status_code
            except (DatabaseError, audit.AuditWriteFailed) as exc:
                logger.exception("token exchange failed in the database or audit sink; nothing was issued")
                failed = isinstance(exc, audit.AuditWriteFailed)
                record.deny("temporarily_unavailable", "audit_unavailable" if failed else DATABASE_ERROR)
                unavailable = errors.TemporarilyUnavailableError(request=request)
                unavailable.status_code = 503
                headers.update({"Retry-After": retry_after()})
                return headers, unavailable.json, 503
            token["issued_token_type"] = request.issued_token_type
            record.grant()
            record.parent_jti = request.delegation.parent_jti
            signals.token_exchanged.send(
                sender=type(self),
                request=request,
                jti=record.jti,
                parent_jti=request.delegation.parent_jti,
                claims=request.delegation_issued.claims,
            )
            return headers, json.dumps(token), 200

    def _issue(self, request: Request, token: dict[str, Any]) -> None:
        """Store the token. django-oauth-toolkit does it in one transaction, in which the
        lineage record re-checks everything the token relies on and the exchange's audit
        record is written (:func:`delegation_idp.audit.write_issued`)."""
        try:
            self.request_validator.save_token(token, request)
        except BaseException as exc:
            audit.discard_issued_write()  # rolled back with the token
            if isinstance(exc, ParentRevoked):
                # Found inside the issuance transaction: the subject token, a party,
                # the user or the key was revoked or disabled after validation.
                raise self.invalid_request(request, "The subject token is not active.", exc.reason) from exc
            raise

    def validate_token_request(self, request: Request) -> None:
        record = audit.current()
        for validator in self.custom_validators.pre_token:
            validator(request)
        if request.grant_type != GRANT_TYPE:
            raise errors.UnsupportedGrantTypeError(request=request)
        self._validate_shape(request)
        if record is not None:
            # Keep the identity the view read from the credentials (delegation_idp.provider.views.
            # read_credentials): the audit record names the client whose credentials came.
            record.client_id = record.client_id or request.client_id or ""
            record.requested_audience = self._values(request, "audience") + self._values(request, "resource")
            record.requested_scope = request.scope or ""
        self._authenticate(request)
        party = self._requester(request)
        subject_claims, parent, chain = self.validate_subject_token(request, party)
        if _p(request, "actor_token"):
            self.validate_actor_token(request, party)
        if record is not None:
            record.subject = subject_claims["sub"]
            record.chain = [party.uri, *chain]
            record.parent_jti = parent.jti
            record.user_id = str(parent.user_id or "")
        targets = self.resolve_targets(request)
        decision = self.decide(request, party, chain, targets, subject_claims, parent)
        if not decision.allowed:
            error_class = {
                "invalid_request": errors.InvalidRequestError,
                "invalid_scope": errors.InvalidScopeError,
                "invalid_target": InvalidTargetError,
                "unauthorized_client": errors.UnauthorizedClientError,
            }[decision.error or "invalid_request"]
            error = error_class(description=decision.description, request=request)
            error.delegation_reason = decision.reason.value  # type: ignore[attr-defined]
            raise error
        if record is not None:
            record.reason = decision.reason.value
        request.scopes = sorted(decision.granted_scope)
        request.user = parent.user
        # Stored on django-oauth-toolkit's row too, so its own resource protection
        # (validate_bearer_token) enforces the audience of exchanged tokens.
        request.resource = list(decision.audience)
        request.issued_token_type = _p(request, "requested_token_type") or ACCESS_TOKEN_TYPE
        request.delegation = Exchange(
            subject=subject_claims["sub"],
            audience=decision.audience,
            act=build_act(party.uri, subject_claims.get("act")),
            subject_exp=int(subject_claims["exp"]),
            parent_jti=parent.jti,
            parent_path=parent.path,
            root_jti=parent.root_jti,
            depth=len(chain) + 1,
            chain=(party.uri, *chain),
            requester_uri=party.uri,
        )
        for validator in self.custom_validators.post_token:
            validator(request)

    # -- steps ---------------------------------------------------------------

    @staticmethod
    def _values(request: Request, name: str) -> list[str]:
        return [v for k, v in (request.decoded_body or []) if k == name]

    def _validate_shape(self, request: Request) -> None:
        """Section 2.1 and RFC 6749 section 3.2: required, non-empty, not repeated."""
        for name in request.duplicate_params:
            if name not in REPEATABLE:
                raise self.invalid_request(
                    request, f"The {name} parameter is repeated.", "repeated_parameter"
                )
        for name, value in request.decoded_body or []:
            if value == "" and name in (
                "subject_token",
                "subject_token_type",
                "actor_token",
                "actor_token_type",
                "audience",
                "resource",
                "scope",
                "requested_token_type",
            ):
                raise self.invalid_request(request, f"The {name} parameter is empty.", "empty_parameter")
        for name in ("subject_token", "subject_token_type"):
            if not _p(request, name):
                raise self.invalid_request(request, f"Missing {name} parameter.", "missing_parameter")
        if _p(request, "subject_token_type") not in ACCEPTED_SUBJECT_TYPES:
            raise self.invalid_request(
                request, "This subject_token_type is not accepted.", "unsupported_token_type"
            )
        if bool(_p(request, "actor_token")) != bool(_p(request, "actor_token_type")):
            raise self.invalid_request(
                request, "actor_token and actor_token_type go together.", "missing_parameter"
            )
        if _p(request, "actor_token") and _p(request, "actor_token_type") not in ACCEPTED_SUBJECT_TYPES:
            raise self.invalid_request(
                request, "This actor_token_type is not accepted.", "unsupported_token_type"
            )
        requested = _p(request, "requested_token_type")
        if requested and requested not in ISSUABLE_TYPES:
            raise self.invalid_request(
                request, "This requested_token_type cannot be issued.", "unsupported_token_type"
            )

    def _authenticate(self, request: Request) -> None:
        """Only authenticated confidential clients may exchange."""
        validator = self.request_validator
        if not validator.authenticate_client(request):
            if request.client_id and validator.authenticate_client_id(request.client_id, request):
                # A public client identified itself but cannot authenticate.
                raise errors.UnauthorizedClientError(
                    description="Public clients may not exchange tokens.", request=request
                )
            raise errors.InvalidClientError(description="Client authentication failed.", request=request)
        request.client_id = request.client_id or request.client.client_id
        record = audit.current()
        if record is not None:
            record.client_id = request.client.client_id
        if not validator.validate_grant_type(request.client_id, GRANT_TYPE, request.client, request):
            error = errors.UnauthorizedClientError(
                description=policy.DESCRIPTION[policy.Reason.NOT_AN_AGENT], request=request
            )
            error.delegation_reason = policy.Reason.NOT_AN_AGENT.value  # type: ignore[attr-defined]
            raise error

    def _requester(self, request: Request) -> Party:
        party = request.client.delegation_party
        if not party.enabled:
            error = errors.UnauthorizedClientError(
                description=policy.DESCRIPTION[policy.Reason.ACTOR_DISABLED], request=request
            )
            error.delegation_reason = policy.Reason.ACTOR_DISABLED.value  # type: ignore[attr-defined]
            raise error
        return party

    def _verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        header, claims = jose.verify(
            token,
            keyset.verification_key,
            algorithms=idp_settings.ALLOWED_ALGORITHMS,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            max_json_depth=idp_settings.MAX_JSON_DEPTH,
        )
        jose.validate_claims(
            claims,
            issuer=idp_settings.ISSUER,
            now=time.time(),
            leeway=idp_settings.CLOCK_SKEW_SECONDS,
            required=("iss", "sub", "aud", "exp", "iat", "jti", "client_id"),
        )
        return header, claims

    def validate_subject_token(
        self, request: Request, party: Party
    ) -> tuple[dict[str, Any], TokenLineage, tuple[str, ...]]:
        """Ours, signed by a key of our set, unexpired, unrevoked, addressed to the requester,
        and exactly the token its lineage row recorded. Returns the claims, that row and
        the token's actor chain (nearest first)."""
        try:
            header, claims = self._verify(_p(request, "subject_token"))
        except jose.JoseError as exc:
            raise self.invalid_request(
                request, "The subject token is invalid.", f"subject_{exc.reason}"
            ) from exc
        if party.uri not in jose.audiences(claims):
            raise self.invalid_request(
                request, "The subject token is not addressed to this client.", "subject_wrong_audience"
            )
        if "act" not in claims and claims.get("client_id") != request.client.client_id:
            # A token without act was issued to its client_id for itself. Held by anyone
            # else, another client passed it on unrecorded: refused, or the chain would
            # lose an actor. (A token with act is one of our exchanges; its client is the
            # newest actor, recorded in act, and the lineage row checks it below.)
            raise self.invalid_request(
                request,
                "The subject token was issued to another client and carries no delegation chain.",
                "subject_foreign_client",
            )
        chain = self._chain(request, claims)  # bounded and pure: before any database look-up
        parent = subject_record(claims["jti"])
        if parent is None:
            raise self.invalid_request(request, "The subject token is invalid.", "subject_unknown")
        if getattr(request, "delegation_policy", None) is None:
            # The policy version came with the lineage row: no separate round trip.
            version = getattr(parent, "policy_version", None)
            request.delegation_policy = current_policy(known=(parent._state.db or "default", version))
        if not _matches_lineage(header, claims, parent):
            # Signed by a key of ours, but not the token recorded under this jti: a
            # compromised or revoked key must not launder another token's lineage.
            raise self.invalid_request(request, "The subject token is invalid.", "subject_lineage_mismatch")
        if parent.revoked_at is not None:
            raise self.invalid_request(request, "The subject token is not active.", "subject_revoked")
        if parent.user is not None and not parent.user.is_active:
            raise self.invalid_request(request, "The subject token is not active.", "subject_user_inactive")
        self.validate_subject_claims(request, claims)
        return claims, parent, chain

    def validate_subject_claims(self, request: Request, claims: dict[str, Any]) -> None:
        """Hook for extra checks on the subject token's claims. Raise an OAuth2Error to refuse."""

    def validate_actor_token(self, request: Request, party: Party) -> None:
        """Section 2.1: the actor token must identify the authenticated client."""
        try:
            _header, claims = self._verify(_p(request, "actor_token"))
        except jose.JoseError as exc:
            raise self.invalid_request(request, "The actor token is invalid.", f"actor_{exc.reason}") from exc
        # A token the client holds for itself: its own client_id, and the sub of a token
        # without a resource owner (never a user's, whatever the client id looks like).
        if claims.get("client_id") != request.client.client_id or claims.get("sub") != client_subject(
            request.client.client_id
        ):
            raise self.invalid_request(
                request, "The actor token does not identify this client.", "actor_mismatch"
            )
        row = TokenLineage.objects.filter(jti=claims["jti"]).only("revoked_at").first()
        if row is None or row.revoked_at is not None:
            raise self.invalid_request(request, "The actor token is not active.", "actor_revoked")

    def _chain(self, request: Request, claims: dict[str, Any]) -> tuple[str, ...]:
        try:
            return chain_from_act(claims.get("act"), max_depth=idp_settings.MAX_DELEGATION_DEPTH)
        except ActChainError as exc:
            reason = "depth_exceeded" if "deep" in str(exc) else "subject_malformed_act"
            raise self.invalid_request(
                request, "The subject token's delegation chain is not acceptable.", reason
            ) from exc

    def resolve_targets(self, request: Request) -> tuple[str, ...]:
        """``audience`` values name registered parties; ``resource`` URLs map to the
        party whose identity URI or resource prefix they start with (RFC 8707)."""
        audiences = self._values(request, "audience")
        resources = self._values(request, "resource")
        if not audiences and not resources:
            raise self.invalid_request(
                request, "An audience or resource parameter is required.", "missing_parameter"
            )
        for resource in resources:
            try:
                parts = urlsplit(resource)
            except ValueError:  # e.g. an unbalanced IPv6 bracket
                parts = urlsplit("")
            if not parts.scheme or not parts.netloc or parts.fragment or "#" in resource:
                error = InvalidTargetError(
                    description="A resource must be an absolute URI without a fragment.", request=request
                )
                error.delegation_reason = "resource_malformed"  # type: ignore[attr-defined]
                raise error
        targets: list[str] = list(audiences)
        if resources:
            owners = self.policy_store(request).resource_owners()
            for resource in resources:
                match = _match_resource(resource, owners)
                targets.append(match or resource)
        return tuple(dict.fromkeys(targets))

    def decide(
        self,
        request: Request,
        party: Party,
        chain: tuple[str, ...],
        targets: tuple[str, ...],
        claims: dict[str, Any],
        parent: TokenLineage,
    ) -> policy.Decision:
        """The delegation policy's answer (:func:`delegation_idp.core.policy.evaluate`)."""
        requested = policy.scope_set(request.scope) if request.scope else None
        ctx, rules, limits = load_policy(
            party,
            chain,
            targets,
            subject_scope=policy.scope_set(claims.get("scope", "")),
            requested_scope=requested,
            user=parent.user,
            from_user=parent.user_id is not None,
            may_act=claims.get("may_act"),
            store=self.policy_store(request),
        )
        return policy.evaluate(ctx, rules, limits)

    @staticmethod
    def policy_store(request: Request) -> PolicyStore:
        """The stored policy for this request: one version check, then this process's
        snapshot of that version (:mod:`delegation_idp.provider.policy_store`)."""
        store = getattr(request, "delegation_policy", None)
        if store is None:
            store = current_policy()
            request.delegation_policy = store
        return store


def _matches_lineage(header: dict[str, Any], claims: dict[str, Any], parent: TokenLineage) -> bool:
    """The verified token is the one its lineage row recorded: same key, subject,
    client, audience, scope and actor chain."""
    audience = [claims["aud"]] if isinstance(claims.get("aud"), str) else claims.get("aud")
    return (
        header.get("kid") == parent.kid
        and claims.get("sub") == parent.subject
        and claims.get("client_id") == parent.client_id
        and audience == parent.audience
        and claims.get("scope", "") == parent.scope
        and claims.get("act") == parent.act
    )


def _p(request: Request, name: str) -> Any:
    """A body parameter, or None (oauthlib raises AttributeError for absent ones)."""
    return getattr(request, name, None)


def _match_resource(resource: str, owners: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    """The party a resource URL belongs to: the longest matching identity URI or prefix."""
    best: tuple[int, str] | None = None
    for uri, prefixes in owners:
        for prefix in (uri, *prefixes):
            if policy.resource_under(resource, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), uri)
    return best[1] if best else None
