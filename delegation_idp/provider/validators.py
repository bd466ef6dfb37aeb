"""The request validator for django-oauth-toolkit's ``OAUTH2_VALIDATOR_CLASS`` setting.

Why one module over 400 lines: django-oauth-toolkit takes one validator class, and each
override here is a short hook that hands its work to the module that owns it (client
authentication, lineage, DPoP bindings); the class itself stays in one place so that what it
changes in django-oauth-toolkit's behaviour reads as one list.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from django.contrib.auth.hashers import identify_hasher
from django.db import router
from oauth2_provider.models import (
    AbstractApplication,
    get_access_token_model,
    get_application_model,
    get_grant_model,
)
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from delegation_idp import TOKEN_EXCHANGE_GRANT, audit, jose, sql
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Issuance
from delegation_idp.lineage import issuance, revocation
from delegation_idp.models import Party, party_of
from delegation_idp.provider import client_auth, dpop, signin, throttling
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.keys import verify as keyset_verify
from delegation_idp.provider.resilience import for_oauthlib
from delegation_idp.provider.tokens import state_of
from delegation_idp.rfc8693.signin_subjects import id_token_issuer

#: the ID-token algorithm of an application that may have ``openid`` (the site's RSA key)
RS256 = AbstractApplication.RS256_ALGORITHM

__all__ = ["DelegationValidator"]

# Leeway that accepts an expired token (revoking one is a no-op, never an error).
FOREVER = 10 * 365 * 24 * 3600

logger = logging.getLogger(__name__)


# What django-oauth-toolkit's grants answer when the issuance re-check finds a change.
ISSUANCE_BLOCKED = {
    "party": Reason.CLIENT_DISABLED,
    "user": Reason.USER_INACTIVE,
    "key": Reason.KEY_REVOKED,
    "parent": Reason.INVALID_GRANT,
}


class CodeAlreadyRedeemed(Exception):
    """Another redemption of the same authorization code consumed it first."""


def _body_value(request: Any, name: str) -> str | None:
    """A form-body parameter (never one from the query string), or None."""
    for key, value in getattr(request, "decoded_body", None) or []:
        if key == name:
            return str(value)
    return None


class DelegationValidator(OAuth2Validator):
    """django-oauth-toolkit's validator, aware of the token-exchange grant and of lineage.

    Client authentication adds two fast methods for registered agents
    (:mod:`delegation_idp.provider.client_auth`): keyed-hash client secrets and
    ``private_key_jwt`` (RFC 7523). Every other client is authenticated exactly
    as django-oauth-toolkit does it.
    """

    # -- client authentication --------------------------------------------------

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if _body_value(request, "client_assertion_type") is not None:
            return True
        return bool(super().client_authentication_required(request, *args, **kwargs))

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if (
            _body_value(request, "client_assertion_type") is not None
            or _body_value(request, "client_assertion") is not None
        ):
            # An assertion was offered: it alone decides (no fallback to a secret).
            return self._authenticate_assertion(request)
        credentials = self._secret_credentials(request)
        if credentials is not None:
            client = self._load_client(credentials[0], request)
            if client is not None and client_auth.is_keyed_hash(client.client_secret):
                return client_auth.verify_secret(credentials[1], client.client_secret)
        authenticated = bool(super().authenticate_client(request, *args, **kwargs))
        if authenticated and credentials is not None:
            self._upgrade_secret(request.client, credentials[1])
        return authenticated

    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        # Never let the stock method compare a keyed hash as if it were a plain
        # secret: presenting the stored value itself must not authenticate.
        if client_auth.is_keyed_hash(stored_secret):
            return client_auth.verify_secret(provided_secret, stored_secret)
        return bool(super()._check_secret(provided_secret, stored_secret))

    @staticmethod
    def _secret_credentials(request: Any) -> tuple[str, str] | None:
        """``(client_id, client_secret)`` from HTTP Basic (RFC 6749 section 2.3.1) or the body."""
        header = request.headers.get("HTTP_AUTHORIZATION") or request.headers.get("Authorization") or ""
        basic = client_auth.parse_basic(header)
        if basic is False:
            return None
        if isinstance(basic, tuple):
            return basic
        body_id, body_secret = _body_value(request, "client_id"), _body_value(request, "client_secret")
        if body_id and body_secret is not None:
            return body_id, body_secret
        return None

    @staticmethod
    def _load_client(client_id: str, request: Any) -> Any:
        """The application with its party, in one query; left on ``request.client``.

        Applications registered through a client ID metadata document are left
        to django-oauth-toolkit, which may need to refresh them.
        """
        Application = get_application_model()
        current = getattr(request, "client", None)
        if isinstance(current, Application) and current.client_id == client_id:
            return current
        if len(client_id) > (Application._meta.get_field("client_id").max_length or 255):
            return None  # names no client; never sent to the database
        if _one_statement_lookup(Application):
            client: Any = sql.select_with_reverse_one_to_one(
                Application,
                "client_id",
                client_id,
                Party,
                "application",
                using=router.db_for_read(Application),
            )
        else:  # a swapped model with its own manager's filter, or inherited tables: the ORM
            client = Application._default_manager.select_related("delegation_party").filter(
                client_id=client_id
            )
            client = client.first()
        if client is None:
            return None
        if _is_cimd(client) or not client.is_usable(request):
            return None
        request.client = client
        return client

    def _authenticate_assertion(self, request: Any) -> bool:
        """RFC 7523 section 2.2: ``private_key_jwt``. A refusal is logged by its code, never the assertion."""
        assertion = _body_value(request, "client_assertion") or ""
        client_id = client_auth.unverified_client_id(assertion) if assertion else None
        try:
            client, jwks = self._assertion_client(request, client_id)
            client_auth.verify_client_assertion(assertion, client.client_id, jwks)
        except client_auth.AssertionRefused as refused:
            logger.info("client assertion refused for %s: %s", client_id or "-", refused.reason)
            return False
        request.client_id = client.client_id
        return True

    def _assertion_client(self, request: Any, client_id: str | None) -> tuple[Any, Any]:
        """The confidential client that an assertion's ``sub`` names, and its party's JWK set."""
        if _body_value(request, "client_assertion_type") != client_auth.ASSERTION_TYPE:
            raise client_auth.AssertionRefused("wrong_assertion_type")
        if client_id is None or _body_value(request, "client_id") not in (None, client_id):
            raise client_auth.AssertionRefused("no_subject" if client_id is None else "client_id_mismatch")
        client = self._load_client(client_id, request)
        if client is None or client.client_type != client.CLIENT_CONFIDENTIAL:
            raise client_auth.AssertionRefused("unknown_client" if client is None else "public_client")
        jwks = getattr(party_of(client), "jwks", None)
        if not jwks:
            raise client_auth.AssertionRefused("no_keys")
        return client, jwks

    @staticmethod
    def _upgrade_secret(client: Any, secret: str) -> None:
        """A registered agent whose generated secret still has a slow password hash gets
        the keyed hash after its next successful authentication (once)."""

        if client is None or client_auth.is_keyed_hash(client.client_secret):
            return
        if party_of(client) is None:
            return  # only registered agents are upgraded (checked first: it costs nothing)
        if not client_auth.may_store_keyed(secret) or getattr(client, "algorithm", "") == "HS256":
            return
        try:
            identify_hasher(client.client_secret)
        except ValueError:
            return  # stored in plain: the application chose that
        stored = client_auth.hash_secret(secret)
        type(client).objects.filter(pk=client.pk).update(client_secret=stored, hash_client_secret=False)
        client.client_secret, client.hash_client_secret = stored, False

    # -- revocation (RFC 7009) ----------------------------------------------------------

    def revoke_token(self, token: str, token_type_hint: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        """django-oauth-toolkit's revocation of its own rows, then the exchanged JWTs, whose
        record is their lineage row: a token verified against this provider's keys (expired
        ones too: nothing is left to revoke then, harmlessly) and issued to this client is
        revoked with its subtree (:func:`delegation_idp.lineage.revocation.revoke_issued_to`)."""
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        client_id = getattr(getattr(request, "client", None), "client_id", None)
        # Whatever the hint: a server that does not find the token by it searches every type
        # it supports (RFC 7009 section 2.1).
        if not client_id or token.count(".") != 2:
            return
        try:
            _header, claims = keyset_verify(token, now=time.time(), leeway=FOREVER)
        except jose.JoseError:
            return  # not one of our tokens: RFC 7009 section 2.2, still 200
        revocation.revoke_issued_to(str(claims["jti"]), client_id)

    # -- the password grant ------------------------------------------------------------

    def validate_user(
        self, username: str, password: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """The sign-in lockout holds here too (:mod:`delegation_idp.provider.signin`): a locked-out
        username at this address, or this address, is ``429 slow_down`` with ``Retry-After``
        before any password is checked; a wrong password counts through ``authenticate()``'s
        ``user_login_failed``, sent with the request django-oauth-toolkit builds from this one."""
        address = throttling.client_address(request.headers)
        wait = signin.locked_for(username, address)
        if wait is not None:
            raise for_oauthlib(refusal(Reason.SIGN_IN_LOCKED, headers={"Retry-After": str(wait)}))
        valid = bool(super().validate_user(username, password, client, request, *args, **kwargs))
        if valid:
            throttling.clear_sign_in_failures(username, address)
        return valid

    # -- grants --------------------------------------------------------------------

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # The stock method asserts the grant is in its own mapping (an
        # AssertionError, a 500, for ours): answer for the exchange grant here.
        if grant_type == TOKEN_EXCHANGE_GRANT:
            return self.client_may_exchange(client)
        party = party_of(client)
        denied = policy.may_obtain_tokens(party.as_view() if party is not None else None)
        if denied is not None:
            # A disabled agent gets no new tokens by any grant (unauthorized_client),
            # rather than tokens that are revoked the moment they are issued.
            record = audit.current()
            if record is not None:
                record.refuse(denied)
            return False
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)

    def validate_scopes(
        self, client_id: str, scopes: Any, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # OpenID Connect's scope only for a client whose ID tokens are signed with the site's RSA
        # key (RS256): without an algorithm django-oauth-toolkit would fail to sign (a 500), and
        # an HS256 ID token is keyed with the client secret, which may be stored as a keyed hash.
        # For another client, openid is left out of what is granted (RFC 6749 section 3.3: the
        # granted scope may be narrower; the response names it), never an error of its own.
        if "openid" in (scopes or ()) and getattr(client, "algorithm", "") != RS256:
            scopes = [scope for scope in scopes if scope != "openid"]
            request.scopes = scopes
            if not scopes:
                return False  # nothing else was asked for: invalid_scope
        return bool(super().validate_scopes(client_id, scopes, client, request, *args, **kwargs))

    def validate_silent_login(self, request: Any) -> bool:
        """OpenID Connect ``prompt=none`` (Core section 3.1.2.1): django-oauth-toolkit's
        authorization view signs the user in before it validates a request, so a request that
        reaches validation has a signed-in user."""
        return True

    def validate_silent_authorization(self, request: Any) -> bool:
        """``prompt=none`` without the consent page: never. This provider shows the user every
        authorization (the agents and audiences it names), so the client is answered
        ``consent_required`` at its redirect URI (Core section 3.1.2.6), never a 500."""
        return False

    def get_claim_dict(self, request: Any) -> dict[str, Any]:
        """The ID token's and userinfo's claims: django-oauth-toolkit's, with ``sub`` the
        subject every token of this provider names the user by (``SUBJECT_RESOLVER``), not the
        user's primary key, so an ID token, the access token issued with it and the ID-JAGs
        from either agree on who the user is."""
        claims = dict(super().get_claim_dict(request))
        resolver = idp_settings.SUBJECT_RESOLVER
        claims["sub"] = lambda r: str(resolver(r.user))
        return claims

    def get_oidc_issuer_endpoint(self, request: Any) -> str:
        """The ``iss`` of the ID tokens django-oauth-toolkit signs: the provider's one issuer
        (``ISSUER``; ``OIDC_ISS_ENDPOINT``, which check E018 keeps equal, when it is set), not a
        URL derived from a discovery route this app does not mount."""
        return id_token_issuer()

    @staticmethod
    def client_may_exchange(client: Any) -> bool:
        """A confidential client linked to a registered, enabled agent or MCP server
        (the policy's answer: :func:`delegation_idp.core.policy.may_exchange`)."""
        if client is None:
            return False
        party = party_of(client)
        view = party.as_view() if party is not None else None
        return (
            policy.may_exchange(view, confidential=client.client_type == client.CLIENT_CONFIDENTIAL) is None
        )

    # -- the authorization code: used once (RFC 6749 sections 4.1.2 and 10.5) ------------

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if super().validate_code(client_id, code, client, request, *args, **kwargs):
            refused = dpop.code_binding_refusal(code, client, request)  # RFC 9449 section 10
            if refused is not None:
                raise for_oauthlib(refusal(refused))
            return True
        # Refused (oauthlib answers invalid_grant). Only now, never on the successful
        # path, look whether the code was redeemed before: a replay.
        if code:
            self._revoke_redemption(code)
        return False

    # The stock validator reads the code's row again for PKCE and the redirect URI. A
    # concurrent redemption may have consumed it since validate_code: that is a replay.
    def get_code_challenge(self, code: str, request: Any) -> Any:
        try:
            return super().get_code_challenge(code, request)
        except get_grant_model().DoesNotExist:
            raise self._consumed_meanwhile(request) from None

    def get_code_challenge_method(self, code: str, request: Any) -> Any:
        try:
            return super().get_code_challenge_method(code, request)
        except get_grant_model().DoesNotExist:
            raise self._consumed_meanwhile(request) from None

    def confirm_redirect_uri(
        self,
        client_id: str,
        code: str,
        redirect_uri: str,
        client: Any,
        request: Any,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        try:
            return bool(
                super().confirm_redirect_uri(client_id, code, redirect_uri, client, request, *args, **kwargs)
            )
        except get_grant_model().DoesNotExist:
            raise self._consumed_meanwhile(request) from None

    def save_bearer_token(self, token: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().save_bearer_token(token, request, *args, **kwargs)
        except CodeAlreadyRedeemed:
            # This request's tokens rolled back; the winner's committed: a replay.
            raise self._consumed_meanwhile(request) from None
        except BaseException:
            # The transaction rolled back with the audit row written in it (client
            # credentials): the refusal is recorded instead, after it.
            record = audit.current()
            if record is not None:
                audit.discard_issued_write(record)
            raise

    def _save_bearer_token(self, token: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        saved = super()._save_bearer_token(token, request, *args, **kwargs)
        if request.grant_type == "client_credentials":
            # Nothing of the grant is left to fail once its token is stored: its audit record
            # is written now, in the transaction that stores the token (one commit, not two).
            self._audit_issued()
        if request.grant_type == "authorization_code":
            # Consume the code inside the transaction that stores its tokens (the stock
            # validator deletes it afterwards, in a transaction of its own): of two
            # redemptions that both found it valid, the second DELETE waits for the first
            # to commit, then finds nothing, and its tokens roll back.
            deleted, _ = (
                get_grant_model().objects.filter(code=request.code, application=request.client).delete()
            )
            if not deleted:
                raise CodeAlreadyRedeemed()
            state = state_of(request)
            state.code_consumed = True
            if state.opaque_token is not None:
                # No lineage row carries the code's hash for an opaque token: remember it here.
                issuance.record_opaque_redemption(request.code, state.opaque_token, state.refresh_token)
        return saved

    @staticmethod
    def _audit_issued() -> None:
        """The running request's record, granted, in django-oauth-toolkit's issuing
        transaction (:func:`delegation_idp.audit.write_issued`); a record that cannot be
        written refuses the token, which rolls back with it."""
        record = audit.current()
        if record is None:
            return
        try:
            audit.write_issued(record, get_access_token_model())
        except audit.AuditWriteFailed as exc:
            raise for_oauthlib(refusal(Reason.AUDIT_UNAVAILABLE)) from exc

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        if state_of(request).code_consumed:
            return  # already deleted, with the tokens it was redeemed for
        super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)

    def _consumed_meanwhile(self, request: Any) -> Exception:
        self._revoke_redemption(request.code)
        return errors.InvalidGrantError(request=request)

    @staticmethod
    def _revoke_redemption(code: str) -> None:
        """Revoke what an earlier redemption of ``code`` issued; audit the refusal as a replay."""
        if not revocation.revoke_code_redemption(code):
            return
        record = audit.current()
        if record is not None:
            record.refuse(Reason.CODE_REPLAYED)

    def _create_access_token(
        self, expires: Any, request: Any, token: Any, source_refresh_token: Any = None
    ) -> Any:
        access_token = super()._create_access_token(
            expires, request, token, source_refresh_token=source_refresh_token
        )
        state = state_of(request)
        if state.issuance is not None:
            self._record(state.issuance, access_token)
        elif request.grant_type == "authorization_code":
            state.opaque_token = access_token
        return access_token

    @staticmethod
    def _record(issued: Issuance, access_token: Any) -> None:
        """The token's lineage row, in django-oauth-toolkit's issuing transaction. A party, the
        user or the key disabled meanwhile refuses the token: the refusal rolls the
        transaction back, and the token view answers it instead of a token."""
        try:
            issuance.record_issued(issued, access_token=access_token)
        except issuance.IssuanceBlocked as blocked:
            reason = ISSUANCE_BLOCKED[blocked.what]
            if reason is Reason.KEY_REVOKED:
                keyset.invalidate()  # this process still signed with it: reload at once
            logger.warning("token refused at issuance: %s", reason.value)
            raise for_oauthlib(refusal(reason)) from blocked
        audit.note_issued(issued)

    def _create_refresh_token(
        self, request: Any, refresh_token_code: Any, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        refresh_token = super()._create_refresh_token(
            request, refresh_token_code, access_token, previous_refresh_token
        )
        state = state_of(request)
        state.refresh_token = refresh_token
        # Bound only with a bound access token: a Bearer answer tells the client that this
        # server binds nothing (RFC 9449 section 5), so its refresh token must not be bound.
        if state.issuance is not None and state.issuance.jkt:
            dpop.bind_refresh_token(refresh_token, request)
        return refresh_token

    def validate_bearer_token(self, token: str, scopes: Any, request: Any) -> bool:
        """django-oauth-toolkit's resource protection knows the Bearer scheme only and checks no
        proof: a DPoP-bound token is never valid there (RFC 9449 section 7.2), or a token
        stolen from an agent would work as a bearer token on the site's own APIs."""
        if not super().validate_bearer_token(token, scopes, request):
            return False
        if dpop.is_bound(token):
            request.access_token = None
            request.oauth2_error = {
                "error": "invalid_token",
                "error_description": "This token is DPoP-bound: it is not a bearer token.",
            }
            return False
        return True

    def _create_authorization_code(self, request: Any, code: Any, expires: Any = None) -> Any:
        grant = super()._create_authorization_code(request, code, expires)
        dpop.bind_authorization_code(grant, request)
        return grant

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """django-oauth-toolkit's check, then the refresh token's DPoP binding (RFC 9449
        section 5): a bound refresh token is redeemed only with a proof by its key."""
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        refused = dpop.refresh_binding_refusal(request)
        if refused is not None:
            raise for_oauthlib(refusal(refused))
        return True


@functools.lru_cache(maxsize=4)
def _one_statement_lookup(model: Any) -> bool:
    """Whether the client may be read with the one statement built from the model's metadata:
    its table alone holds its rows (no inherited parent tables) and its default manager
    filters nothing (a swapped model's manager may hide, say, deleted applications)."""
    return not model._meta.parents and not model._default_manager.get_queryset().query.where


def _is_cimd(client: Any) -> bool:
    source = getattr(client, "registration_source", None)
    cimd = getattr(getattr(type(client), "RegistrationSource", None), "CIMD", None)
    return cimd is not None and source == cimd
