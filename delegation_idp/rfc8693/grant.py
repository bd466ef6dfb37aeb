"""The token-exchange grant for oauthlib, RFC 8693 section 2: thin glue over the pipeline.

Delegation semantics only: the issued token keeps the subject token's ``sub``, is
addressed to the requested target, and records the requesting agent as the outermost
actor of a nested ``act`` claim (section 4.1). Impersonation is never offered, so a
token that carries ``act`` can never lose its actors.

One request, in order: :func:`~delegation_idp.rfc8693.request.parse` (the form),
client authentication (django-oauth-toolkit's validator),
:func:`~delegation_idp.rfc8693.exchange.verify` and
:func:`~delegation_idp.rfc8693.exchange.decide` (tokens, lineage, policy) and
:func:`~delegation_idp.rfc8693.issue.issue` (sign, then lineage and audit in one
transaction). Every refusal is a :class:`delegation_idp.core.errors.OAuthError` for a
reason of the catalogue, answered here and audited once.

Overridable hooks, for example to require a claim of the subject token::

    from delegation_idp.core.errors import InvalidRequest
    from delegation_idp.core.reasons import Reason

    class MfaOnlyGrant(TokenExchangeGrant):
        def validate_subject_claims(self, claims):
            if claims.get("acr") != "mfa":
                raise InvalidRequest(Reason.SUBJECT_CLAIMS_REFUSED, "The subject token needs MFA.")

and a server that uses it (``OAUTH2_SERVER_CLASS``)::

    class MyServer(DelegationServer):
        token_exchange_grant_class = MfaOnlyGrant
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DatabaseError
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase

from delegation_idp import audit, signals
from delegation_idp.core.errors import (
    InvalidClient,
    OAuthError,
    TemporarilyUnavailable,
    UnauthorizedClient,
)
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Issuance
from delegation_idp.rfc8693.exchange import decide, verify
from delegation_idp.rfc8693.issue import issue, token_response
from delegation_idp.rfc8693.request import GRANT_TYPE, parse
from delegation_idp.rfc9449 import Proof

__all__ = ["TokenExchangeGrant"]

logger = logging.getLogger(__name__)


class TokenExchangeGrant(GrantTypeBase):
    """``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``."""

    GRANT_TYPE = GRANT_TYPE

    def create_token_response(
        self,
        request: Request,
        token_handler: Any = None,
        *,
        form: Sequence[tuple[str, str]] | None = None,
        proof: Proof | None = None,
    ) -> tuple[dict, str, int]:
        """Section 2.2: the token response, or a JSON error; never a token on error.
        ``token_handler`` is unused: the pipeline signs and stores its own tokens. ``form``
        is the request body's every ``(name, value)``; by default oauthlib's ``decoded_body``.
        ``proof`` is the request's checked DPoP proof (RFC 9449), which the token is bound to."""
        headers = self._get_default_headers()
        form = request.decoded_body if form is None else form
        with audit.attempt(event="token_exchange", grant_type=GRANT_TYPE) as record:
            try:
                body, issuance = self.exchange(request, record, form, proof)
            except (OAuthError, OAuth2Error) as refused:
                # Ours carry their catalogue reason; an oauthlib error from a deployment's hook
                # or custom validator is audited with the generic reason of its code.
                ours = isinstance(refused, OAuthError)
                reason = refused.reason if ours else Reason.for_error(refused.error)
                record.deny(refused.error, reason)
                signals.exchange_denied.send(
                    sender=type(self),
                    request=request,
                    reason=reason,
                    error=refused.error,
                    client_id=record.client_id,
                )
                headers.update(refused.headers)
                status = refused.status if isinstance(refused, OAuthError) else refused.status_code
                return headers, refused.json, status
            record.grant()
            signals.token_exchanged.send(
                sender=type(self),
                request=request,
                jti=record.jti,
                parent_jti=record.parent_jti,
                claims=dict(issuance.claims),
            )
            return headers, json.dumps(body), 200

    def exchange(
        self,
        request: Request,
        record: audit.Attempt,
        form: Sequence[tuple[str, str]] | None,
        proof: Proof | None = None,
    ) -> tuple[dict[str, Any], Issuance]:
        """The pipeline, the audit record filled from its typed results as they come."""
        record.event = "token_exchange"
        for validator in self.custom_validators.pre_token:
            validator(request)
        # Keep the identity the view read from the credentials (delegation_idp.provider.guard):
        # the audit record names the client whose credentials came.
        record.client_id = record.client_id or getattr(request, "client_id", None) or ""
        asked = parse(form or ())
        record.requested_audience = list(asked.requested_targets)
        record.requested_scope = asked.scope or ""
        client = self.authenticate(request)
        record.client_id = client.client_id
        now = time.time()
        subject = verify(asked, client, self, now=now, proof=proof)
        record.subject, record.chain = str(subject.claims["sub"]), [subject.requester.uri, *subject.chain]
        record.parent_jti, record.user_id = subject.parent.jti, str(subject.parent.user_id or "")
        exchange = decide(asked, subject, now=now)
        for validator in self.custom_validators.post_token:
            validator(request)
        # A 503 gets its Retry-After where every endpoint's answer is concluded (the guard).
        try:
            token, issuance = issue(exchange, record, now=int(now))
        except DatabaseError as exc:
            logger.exception("token exchange failed in the database; nothing was issued")
            raise TemporarilyUnavailable(Reason.DATABASE_ERROR) from exc
        except audit.AuditWriteFailed as exc:
            raise TemporarilyUnavailable(Reason.AUDIT_UNAVAILABLE) from exc
        return token_response(token, issuance, exchange), issuance

    def authenticate(self, request: Request) -> Any:
        """The authenticated client (RFC 6749 section 3.2.1; RFC 8693 section 2.1 needs one):
        django-oauth-toolkit's validator decides, with this app's fast methods for agents."""
        validator = self.request_validator
        if validator.authenticate_client(request):
            return request.client
        client_id = getattr(request, "client_id", None)
        if client_id and validator.authenticate_client_id(client_id, request):
            raise UnauthorizedClient(Reason.PUBLIC_CLIENT)  # identified itself, cannot authenticate
        raise InvalidClient(Reason.INVALID_CLIENT)

    # -- hooks -------------------------------------------------------------------------

    def validate_subject_claims(self, claims: Mapping[str, Any]) -> None:
        """Extra checks on the verified subject token's claims; raise an
        :class:`~delegation_idp.core.errors.OAuthError` to refuse (see the module docstring)."""
