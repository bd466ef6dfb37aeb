"""The ``jwt-bearer`` grant for oauthlib (RFC 7523 section 2.1): thin glue over the
redemption of an ID-JAG (:mod:`delegation_idp.rfc7523.redeem`).

One request, in order: :func:`~delegation_idp.rfc7523.request.parse` (the form), client
authentication (django-oauth-toolkit's validator, as for token exchange: the draft requires
an authenticated client), :func:`~delegation_idp.rfc7523.redeem.verify` and
:func:`~delegation_idp.rfc7523.redeem.issue`. Every refusal is an
:class:`delegation_idp.core.errors.OAuthError` for a reason of the catalogue, answered here
and audited once; nothing is issued.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase

from delegation_idp import audit
from delegation_idp.core.actchain import chain_from_act
from delegation_idp.core.errors import (
    InvalidClient,
    OAuthError,
    TemporarilyUnavailable,
    UnauthorizedClient,
)
from delegation_idp.core.reasons import Reason
from delegation_idp.rfc7523.redeem import issue, token_response, verify
from delegation_idp.rfc7523.request import GRANT_TYPE, parse
from delegation_idp.rfc9449 import Proof

__all__ = ["EVENT", "JwtBearerGrant"]

logger = logging.getLogger(__name__)

#: The audit event of a redemption.
EVENT = "id_jag_redemption"


class JwtBearerGrant(GrantTypeBase):
    """``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, for ID-JAGs."""

    GRANT_TYPE = GRANT_TYPE

    def create_token_response(
        self,
        request: Request,
        token_handler: Any = None,
        *,
        form: Sequence[tuple[str, str]] | None = None,
        proof: Proof | None = None,
    ) -> tuple[dict, str, int]:
        """The token response (RFC 6749 section 5.1), or a JSON error (section 5.2, RFC 7523
        section 3.1); never a token on error. ``token_handler`` is unused."""
        headers = self._get_default_headers()
        form = request.decoded_body if form is None else form
        with audit.attempt(event=EVENT, grant_type=GRANT_TYPE) as record:
            try:
                body = self.redeem(request, record, form, proof)
            except (OAuthError, OAuth2Error) as refused:
                ours = isinstance(refused, OAuthError)
                record.deny(refused.error, refused.reason if ours else Reason.for_error(refused.error))
                headers.update(refused.headers)
                status = refused.status if isinstance(refused, OAuthError) else refused.status_code
                return headers, refused.json, status
            record.grant()
            return headers, json.dumps(body), 200

    def redeem(
        self, request: Request, record: audit.Attempt, form: Sequence[tuple[str, str]], proof: Proof | None
    ) -> dict[str, Any]:
        """The pipeline, the audit record filled from its typed results as they come."""
        record.event = EVENT
        for validator in self.custom_validators.pre_token:
            validator(request)
        record.client_id = record.client_id or getattr(request, "client_id", None) or ""
        asked = parse(form or ())
        record.requested_audience = list(asked.resources)
        record.requested_scope = asked.scope or ""
        client = self.authenticate(request)
        record.client_id = client.client_id
        now = time.time()
        try:
            redemption = verify(asked, client, now=now, jkt=proof.jkt if proof is not None else "")
        except DatabaseError as exc:  # e.g. the just-in-time user's insert
            logger.exception("ID-JAG redemption failed in the database; nothing was issued")
            raise TemporarilyUnavailable(Reason.DATABASE_ERROR) from exc
        record.subject = str(redemption.claims["sub"])
        record.user_id = str(redemption.user.pk)
        record.chain = list(chain_from_act(redemption.act, max_depth=64)) if redemption.act else []
        for validator in self.custom_validators.post_token:
            validator(request)
        try:
            token, issuance = issue(redemption, record, now=int(now))
        except DatabaseError as exc:
            logger.exception("ID-JAG redemption failed in the database; nothing was issued")
            raise TemporarilyUnavailable(Reason.DATABASE_ERROR) from exc
        except audit.AuditWriteFailed as exc:
            raise TemporarilyUnavailable(Reason.AUDIT_UNAVAILABLE) from exc
        return token_response(token, issuance, redemption)

    def authenticate(self, request: Request) -> Any:
        """The authenticated client (RFC 6749 section 3.2.1)."""
        validator = self.request_validator
        if validator.authenticate_client(request):
            return request.client
        client_id = getattr(request, "client_id", None)
        if client_id and validator.authenticate_client_id(client_id, request):
            raise UnauthorizedClient(Reason.PUBLIC_CLIENT)
        raise InvalidClient(Reason.INVALID_CLIENT)
