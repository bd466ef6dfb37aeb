"""The catalogue of reason codes: why a request was allowed or refused.

Every refusal anywhere in the app (request shape, client authentication, a
presented token, delegation policy, issuance, the service itself) has exactly
one member here, and each member carries the OAuth error it is answered with
(RFC 6749 section 5.2, RFC 8693 section 2.2.2, RFC 8707 section 2), the HTTP
status and the public ``error_description``. The audit trail stores the code,
the ``exchange_denied`` signal sends the member, the admin's dry-run page and
``docs/reasons.md`` show this table; nothing else defines a reason.

Descriptions are public: they never say which parties, users or keys exist. An
unknown audience and a forbidden one read the same, by design.

Pure: the standard library only.

Why one module over 400 lines: it is the catalogue, one member per refusal, and its worth
is that it is one list.
"""

from __future__ import annotations

import enum

__all__ = ["Family", "Reason", "markdown_table"]


class Family(enum.StrEnum):
    """Where in the handling of a request a reason arises."""

    REQUEST = "request"  # the HTTP request and its parameters
    CLIENT = "client"  # client authentication and the client's standing
    TOKEN = "token"  # a token presented in the request (subject, actor, grant)
    POLICY = "policy"  # the delegation policy's decision
    PROOF = "proof"  # a DPoP proof of possession (RFC 9449) and the token's binding
    APPROVAL = "approval"  # the user's approval of a delegation (OpenID CIBA)
    ISSUANCE = "issuance"  # the re-check inside the issuing transaction
    SERVICE = "service"  # the server itself (storage, limits, failures)


# HTTP status of each OAuth error code; a member may override it.
_STATUS = {
    "": 200,
    "invalid_client": 401,
    "invalid_token": 401,
    "slow_down": 429,
    "server_error": 500,
    "temporarily_unavailable": 503,
}

_FORBIDDEN_TARGET = "The requested audience or resource is not permitted for this client."
_INVALID_SUBJECT = "The subject token is invalid."
_INACTIVE_SUBJECT = "The subject token is not active."
_INVALID_ACTOR = "The actor token is invalid."
_AUTH_FAILED = "Client authentication failed."
_BAD_PROOF = "The DPoP proof is invalid."
_INVALID_ID_JAG = "The ID-JAG is invalid."


class Reason(enum.StrEnum):
    """A stable reason code, with its OAuth error, HTTP status and public description."""

    error: str
    status: int
    description: str
    family: Family

    def __new__(cls, code: str, error: str, description: str, family: Family, status: int = 0) -> Reason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.error = error
        member.status = status or _STATUS.get(error, 400)
        member.description = description
        member.family = family
        return member

    @property
    def allowed(self) -> bool:
        return self is Reason.ALLOWED

    ALLOWED = "allowed", "", "Allowed.", Family.POLICY

    # -- the request --------------------------------------------------------------------
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        "invalid_request",
        "This endpoint accepts POST only.",
        Family.REQUEST,
        405,
    )
    QUERY_PARAMETERS = (
        "query_parameters",
        "invalid_request",
        "Send the parameters in the request body, not the URL.",
        Family.REQUEST,
    )
    REQUEST_TOO_LARGE = (
        "request_too_large",
        "invalid_request",
        "The request body is too large.",
        Family.REQUEST,
        413,
    )
    BAD_CONTENT_LENGTH = (
        "bad_content_length",
        "invalid_request",
        "The Content-Length header is not a length.",
        Family.REQUEST,
    )
    BAD_CONTENT_TYPE = (
        "bad_content_type",
        "invalid_request",
        "The body must be application/x-www-form-urlencoded.",
        Family.REQUEST,
    )
    BAD_ENCODING = "bad_encoding", "invalid_request", "The body is not valid form encoding.", Family.REQUEST
    TOO_MANY_FIELDS = (
        "too_many_fields",
        "invalid_request",
        "The request has too many parameters.",
        Family.REQUEST,
    )
    MISSING_PARAMETER = (
        "missing_parameter",
        "invalid_request",
        "A required parameter is missing.",
        Family.REQUEST,
    )
    EMPTY_PARAMETER = "empty_parameter", "invalid_request", "A parameter is empty.", Family.REQUEST
    REPEATED_PARAMETER = "repeated_parameter", "invalid_request", "A parameter is repeated.", Family.REQUEST
    UNSUPPORTED_TOKEN_TYPE = (
        "unsupported_token_type",
        "invalid_request",
        "This token type is not accepted.",
        Family.REQUEST,
    )
    UNSUPPORTED_GRANT_TYPE = (
        "unsupported_grant_type",
        "unsupported_grant_type",
        "This grant type is not supported.",
        Family.REQUEST,
    )
    GRANT_NOT_OFFERED = (
        "grant_not_offered",
        "unsupported_grant_type",
        "This grant type is not supported.",
        Family.REQUEST,
    )
    RESOURCE_MALFORMED = (
        "resource_malformed",
        "invalid_target",
        "A resource must be an absolute URI without a fragment.",
        Family.REQUEST,
    )
    INVALID_REQUEST = (
        "invalid_request",
        "invalid_request",
        "The request is missing a parameter, repeats one, or is otherwise malformed.",
        Family.REQUEST,
    )
    ID_JAG_ONE_AUDIENCE = (
        "id_jag_one_audience",
        "invalid_request",
        "An ID-JAG is requested with exactly one audience: the authorization server's issuer.",
        Family.REQUEST,
    )
    ID_JAG_ONLY_SUBJECT_TYPE = (
        "id_jag_only_subject_type",
        "invalid_request",
        "An ID token or a refresh token is exchanged for an ID-JAG only.",
        Family.REQUEST,
    )
    INVALID_TARGET = (
        "invalid_target",
        "invalid_target",
        "The requested audience or resource is not permitted.",
        Family.REQUEST,
    )
    INVALID_SCOPE = (
        "invalid_scope",
        "invalid_scope",
        "The requested scope is invalid or exceeds what was granted.",
        Family.REQUEST,
    )

    # -- client authentication and the client's standing -------------------------------
    INVALID_CLIENT = "invalid_client", "invalid_client", _AUTH_FAILED, Family.CLIENT
    BAD_BASIC_CREDENTIALS = "bad_basic_credentials", "invalid_client", _AUTH_FAILED, Family.CLIENT
    ASSERTION_CLIENT_MISMATCH = (
        "assertion_client_mismatch",
        "invalid_client",
        _AUTH_FAILED,
        Family.CLIENT,
    )
    MULTIPLE_CLIENT_AUTHENTICATION = (
        "multiple_client_authentication",
        "invalid_request",
        "Use exactly one client authentication method.",
        Family.CLIENT,
    )
    CLIENT_ID_MISMATCH = (
        "client_id_mismatch",
        "invalid_request",
        "The client_id parameter names another client than the credentials.",
        Family.CLIENT,
    )
    PUBLIC_CLIENT = (
        "public_client",
        "unauthorized_client",
        "Public clients may not exchange tokens.",
        Family.CLIENT,
    )
    UNAUTHORIZED_CLIENT = (
        "unauthorized_client",
        "unauthorized_client",
        "This client may not use this grant type.",
        Family.CLIENT,
    )
    NOT_AN_AGENT = (
        "not_an_agent",
        "unauthorized_client",
        "This client is not registered as an agent that may exchange tokens.",
        Family.CLIENT,
    )
    ACTOR_DISABLED = "actor_disabled", "unauthorized_client", "This client is disabled.", Family.CLIENT
    THROTTLED = "throttled", "slow_down", "Too many requests.", Family.CLIENT
    REGISTRATION_NOT_PERMITTED = (  # a client ID metadata document no rule admits
        "registration_not_permitted",
        "invalid_client",
        "This client may not register here.",
        Family.CLIENT,
    )
    REDIRECT_URI_UNREGISTERED = (  # an authorization request's redirect_uri the client never registered
        "redirect_uri_unregistered",
        "invalid_request",
        "Mismatching redirect URI.",
        Family.REQUEST,
    )
    REDIRECT_URI_NOT_PERMITTED = (  # an RFC 7591 registration or RFC 7592 update no rule admits
        "redirect_uri_not_permitted",
        "invalid_redirect_uri",
        "This client may not register these redirect URIs here.",
        Family.CLIENT,
    )
    CLIENT_MANAGED_BY_ADMIN = (  # RFC 7592 update or deletion of a client an admin governs
        "client_managed_by_admin",
        "access_denied",
        "An administrator manages this client.",
        Family.CLIENT,
        403,
    )
    CLIENT_METADATA_INVALID = (
        "client_metadata_invalid",
        "invalid_client_metadata",
        "The client metadata must be a JSON object of at most 16 KiB.",
        Family.REQUEST,
    )
    SIGN_IN_LOCKED = (
        "sign_in_locked",
        "slow_down",
        "Too many failed sign-in attempts; retry later.",
        Family.CLIENT,
    )

    # -- a presented token ---------------------------------------------------------------
    SUBJECT_MALFORMED = "subject_malformed", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_TOO_LARGE = "subject_too_large", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_TOO_DEEP = "subject_too_deep", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_DUPLICATE_MEMBER = "subject_duplicate_member", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_FORBIDDEN_HEADER = "subject_forbidden_header", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_BAD_TYP = "subject_bad_typ", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_BAD_ALG = "subject_bad_alg", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_BAD_KID = "subject_bad_kid", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_UNKNOWN_KID = "subject_unknown_kid", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_BAD_SIGNATURE = "subject_bad_signature", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_BAD_ISS = "subject_bad_iss", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_BAD_AUD = "subject_bad_aud", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_MISSING_CLAIM = "subject_missing_claim", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_EXPIRED = "subject_expired", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_NOT_YET_VALID = "subject_not_yet_valid", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_UNKNOWN = "subject_unknown", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_LINEAGE_MISMATCH = "subject_lineage_mismatch", "invalid_request", _INVALID_SUBJECT, Family.TOKEN
    SUBJECT_MALFORMED_ACT = (
        "subject_malformed_act",
        "invalid_request",
        "The subject token's delegation chain is not acceptable.",
        Family.TOKEN,
    )
    SUBJECT_WRONG_AUDIENCE = (
        "subject_wrong_audience",
        "invalid_request",
        "The subject token is not addressed to this client.",
        Family.TOKEN,
    )
    SUBJECT_FOREIGN_CLIENT = (
        "subject_foreign_client",
        "invalid_request",
        "The subject token was issued to another client and carries no delegation chain.",
        Family.TOKEN,
    )
    SUBJECT_REVOKED = "subject_revoked", "invalid_request", _INACTIVE_SUBJECT, Family.TOKEN
    SUBJECT_USER_INACTIVE = "subject_user_inactive", "invalid_request", _INACTIVE_SUBJECT, Family.TOKEN
    SUBJECT_CLAIMS_REFUSED = (
        "subject_claims_refused",
        "invalid_request",
        "The subject token does not satisfy this server's requirements.",
        Family.TOKEN,
    )
    ACTOR_MALFORMED = "actor_malformed", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_TOO_LARGE = "actor_too_large", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_TOO_DEEP = "actor_too_deep", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_DUPLICATE_MEMBER = "actor_duplicate_member", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_FORBIDDEN_HEADER = "actor_forbidden_header", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_BAD_TYP = "actor_bad_typ", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_BAD_ALG = "actor_bad_alg", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_BAD_KID = "actor_bad_kid", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_UNKNOWN_KID = "actor_unknown_kid", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_BAD_SIGNATURE = "actor_bad_signature", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_BAD_ISS = "actor_bad_iss", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_BAD_AUD = "actor_bad_aud", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_MISSING_CLAIM = "actor_missing_claim", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_EXPIRED = "actor_expired", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_NOT_YET_VALID = "actor_not_yet_valid", "invalid_request", _INVALID_ACTOR, Family.TOKEN
    ACTOR_MISMATCH = (
        "actor_mismatch",
        "invalid_request",
        "The actor token does not identify this client.",
        Family.TOKEN,
    )
    ACTOR_REVOKED = "actor_revoked", "invalid_request", "The actor token is not active.", Family.TOKEN
    INVALID_GRANT = (
        "invalid_grant",
        "invalid_grant",
        "The grant is invalid, expired or revoked.",
        Family.TOKEN,
    )
    CODE_REPLAYED = (
        "code_replayed",
        "invalid_grant",
        "The grant is invalid, expired or revoked.",
        Family.TOKEN,
    )

    # -- the delegation policy -----------------------------------------------------------
    CHAIN_ACTOR_DISABLED = (
        "chain_actor_disabled",
        "invalid_request",
        "An actor earlier in the delegation chain is disabled.",
        Family.POLICY,
    )
    MAY_ACT_MISMATCH = (
        "may_act_mismatch",
        "invalid_request",
        "The subject token does not allow this client to act for its subject.",
        Family.POLICY,
    )
    DEPTH_EXCEEDED = (
        "depth_exceeded",
        "invalid_request",
        "The delegation chain would exceed its permitted depth.",
        Family.POLICY,
    )
    CYCLE = "cycle", "invalid_request", "This client already appears in the delegation chain.", Family.POLICY
    TARGET_UNKNOWN = "target_unknown", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    NO_RULE = "no_rule", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    AUDIENCE_NOT_PERMITTED = "audience_not_permitted", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    RULE_NOT_IN_EFFECT = "rule_not_in_effect", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    # A rule that names the target but fails on another condition reads like a target no rule
    # names (or no party is): the client learns nothing about which parties exist. The audit
    # record and the admin's dry-run page keep the precise reason.
    UPSTREAM_NOT_PERMITTED = "upstream_not_permitted", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    USER_NOT_PERMITTED = "user_not_permitted", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    RULE_DEPTH_EXCEEDED = "rule_depth_exceeded", "invalid_target", _FORBIDDEN_TARGET, Family.POLICY
    SCOPE_EXCEEDS_SUBJECT = (
        "scope_exceeds_subject",
        "invalid_scope",
        "The requested scope exceeds the scope of the subject token.",
        Family.POLICY,
    )
    SCOPE_NOT_PERMITTED = (
        "scope_not_permitted",
        "invalid_scope",
        "The requested scope is not permitted for this delegation.",
        Family.POLICY,
    )
    RESOURCE_NOT_OWN = (
        "resource_not_own",
        "invalid_target",
        "An agent's own token can only be addressed to the agent; use token exchange to reach another party.",
        Family.POLICY,
    )
    RESOURCE_NOT_CONSENTED = (
        "resource_not_consented",
        "invalid_target",
        "The resource was not part of what the user authorized.",
        Family.POLICY,
    )
    RESOURCE_NOT_ALLOWED = (
        "resource_not_allowed",
        "invalid_target",
        "The requested resource is not permitted for this client.",
        Family.POLICY,
    )
    SUBJECT_RESERVED = (
        "subject_reserved",
        "invalid_grant",
        "This user's subject identifier is reserved; the token cannot be issued.",
        Family.POLICY,
    )

    # An ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant) is addressed to one external
    # authorization server; checked once the rule allowed the targets, so nothing is revealed.
    ID_JAG_NOT_AN_AUTHORIZATION_SERVER = (
        "id_jag_not_an_authorization_server",
        "invalid_target",
        "An ID-JAG's audience must be an external authorization server's issuer.",
        Family.POLICY,
    )
    ID_JAG_RESOURCE_ELSEWHERE = (
        "id_jag_resource_elsewhere",
        "invalid_target",
        "An ID-JAG's resources must belong to its authorization server.",
        Family.POLICY,
    )
    ID_JAG_ONLY_TARGET = (
        "id_jag_only_target",
        "invalid_target",
        "An external authorization server is reached with an ID-JAG, not an access token.",
        Family.POLICY,
    )

    # An ID-JAG presented to the jwt-bearer grant (RFC 7523 section 3.1: invalid_grant), as the
    # JOSE layer refused it (Reason.for_token_error("id_jag", code)), then the draft's checks.
    ID_JAG_MALFORMED = "id_jag_malformed", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_TOO_LARGE = "id_jag_too_large", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_TOO_DEEP = "id_jag_too_deep", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_DUPLICATE_MEMBER = "id_jag_duplicate_member", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_FORBIDDEN_HEADER = "id_jag_forbidden_header", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_BAD_TYP = "id_jag_bad_typ", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_BAD_ALG = "id_jag_bad_alg", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_BAD_KID = "id_jag_bad_kid", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_UNKNOWN_KID = "id_jag_unknown_kid", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_BAD_SIGNATURE = "id_jag_bad_signature", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_BAD_ISS = "id_jag_bad_iss", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_BAD_AUD = "id_jag_bad_aud", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_MISSING_CLAIM = "id_jag_missing_claim", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_EXPIRED = "id_jag_expired", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_NOT_YET_VALID = "id_jag_not_yet_valid", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_UNTRUSTED_ISSUER = "id_jag_untrusted_issuer", "invalid_grant", _INVALID_ID_JAG, Family.TOKEN
    ID_JAG_CLIENT_MISMATCH = (
        "id_jag_client_mismatch",
        "invalid_grant",
        "The ID-JAG was issued to another client.",
        Family.TOKEN,
    )
    ID_JAG_REPLAYED = "id_jag_replayed", "invalid_grant", "The ID-JAG was already used.", Family.TOKEN
    ID_JAG_BAD_ACT = (
        "id_jag_bad_act",
        "invalid_grant",
        "The ID-JAG's delegation chain is not acceptable.",
        Family.TOKEN,
    )
    ID_JAG_UNKNOWN_USER = (
        "id_jag_unknown_user",
        "invalid_grant",
        "The ID-JAG's subject is not an active user here.",
        Family.TOKEN,
    )
    ID_JAG_CLIENT_NOT_ALLOWED = (
        "id_jag_client_not_allowed",
        "unauthorized_client",
        "This client may not redeem ID-JAGs of this issuer.",
        Family.CLIENT,
    )
    ID_JAG_RESOURCE_MISMATCH = (
        "id_jag_resource_mismatch",
        "invalid_target",
        "The requested resource is not one the ID-JAG names.",
        Family.TOKEN,
    )
    ID_JAG_NO_RESOURCE = (
        "id_jag_no_resource",
        "invalid_target",
        "The ID-JAG names no resource and none was requested.",
        Family.TOKEN,
    )
    ID_JAG_RESOURCE_NOT_ALLOWED = (
        "id_jag_resource_not_allowed",
        "invalid_target",
        "This issuer's ID-JAGs may not reach that resource.",
        Family.POLICY,
    )
    ID_JAG_SCOPE_EMPTY = (
        "id_jag_scope_empty",
        "invalid_scope",
        "None of the requested scopes is granted by the ID-JAG.",
        Family.TOKEN,
    )

    # -- the user's approval (OpenID CIBA Core 1.0, poll mode; RFC 9396) ------------------
    # An exchange the rule allows only with the user's approval, asked for without it: the
    # agent is told to ask (a backchannel authentication request), not that it may not.
    APPROVAL_REQUIRED = (
        "approval_required",
        "access_denied",
        "This delegation needs the user's approval: ask for it with a backchannel "
        "authentication request (OpenID CIBA) at the backchannel_authentication_endpoint, "
        "then poll the token endpoint with the CIBA grant.",
        Family.APPROVAL,
    )
    HINT_NOT_SUPPORTED = (
        "hint_not_supported",
        "invalid_request",
        "The subject token names the user: send subject_token, not login_hint_token or id_token_hint.",
        Family.APPROVAL,
    )
    APPROVAL_USER_MISMATCH = (
        "approval_user_mismatch",
        "unknown_user_id",
        "The login_hint does not name the user of the subject token.",
        Family.APPROVAL,
    )
    APPROVAL_NO_USER = (
        "approval_no_user",
        "unknown_user_id",
        "The subject token has no user who could approve the request.",
        Family.APPROVAL,
    )
    APPROVAL_TOO_MANY = (
        "approval_too_many",
        "access_denied",
        "Too many requests of this client wait for the user's decision: wait until they are "
        "decided or expire.",
        Family.APPROVAL,
    )
    BINDING_MESSAGE_INVALID = (
        "binding_message_invalid",
        "invalid_binding_message",
        "The binding message must be at most 100 printable characters.",
        Family.APPROVAL,
    )
    USER_CODE_NOT_SUPPORTED = (
        "user_code_not_supported",
        "invalid_request",
        "This provider does not use a user code.",
        Family.APPROVAL,
    )
    AUTHORIZATION_DETAILS_INVALID = (
        "authorization_details_invalid",
        "invalid_authorization_details",
        "authorization_details must be a JSON array of objects, each with a type this provider accepts.",
        Family.APPROVAL,
    )
    AUTH_REQ_ID_UNKNOWN = (
        "auth_req_id_unknown",
        "invalid_grant",
        "The auth_req_id is invalid.",
        Family.APPROVAL,
    )
    AUTH_REQ_ID_USED = (
        "auth_req_id_used",
        "invalid_grant",
        "The auth_req_id was already used.",
        Family.APPROVAL,
    )
    APPROVAL_PENDING = (
        "approval_pending",
        "authorization_pending",
        "The user has not yet decided.",
        Family.APPROVAL,
    )
    POLLING_TOO_FAST = (
        "polling_too_fast",
        "slow_down",
        "Polling too fast: wait the interval, now five seconds longer.",
        Family.APPROVAL,
        400,
    )
    APPROVAL_DENIED = "approval_denied", "access_denied", "The user denied the request.", Family.APPROVAL
    APPROVAL_CANCELLED = (
        "approval_cancelled",
        "access_denied",
        "The request was cancelled: its subject token was revoked or an agent of its chain disabled.",
        Family.APPROVAL,
    )
    APPROVAL_EXPIRED = (
        "approval_expired",
        "expired_token",
        "The auth_req_id has expired: make a new backchannel authentication request.",
        Family.APPROVAL,
    )
    APPROVAL_DPOP_MISMATCH = (
        "approval_dpop_mismatch",
        "invalid_dpop_proof",
        "The poll must prove the DPoP key of its backchannel authentication request.",
        Family.APPROVAL,
    )
    # The approval page (a user's request, not a client's): answered with a page, audited.
    APPROVAL_NOT_FOUND = (
        "approval_not_found",
        "invalid_request",
        "No such request waits for this user.",
        Family.APPROVAL,
        404,
    )
    APPROVAL_ALREADY_DECIDED = (
        "approval_already_decided",
        "invalid_request",
        "This request was already decided, has expired or was cancelled.",
        Family.APPROVAL,
        409,
    )

    # -- DPoP proofs and bindings (RFC 9449) ---------------------------------------------
    DPOP_MISSING = (
        "dpop_missing",
        "invalid_dpop_proof",
        "A token presented with the DPoP scheme needs a DPoP proof.",
        Family.PROOF,
    )
    DPOP_MULTIPLE_PROOFS = (
        "dpop_multiple_proofs",
        "invalid_dpop_proof",
        "Exactly one DPoP header is allowed.",
        Family.PROOF,
    )
    DPOP_TOO_LARGE = "dpop_too_large", "invalid_dpop_proof", "The DPoP proof is too large.", Family.PROOF
    DPOP_MALFORMED = "dpop_malformed", "invalid_dpop_proof", _BAD_PROOF, Family.PROOF
    DPOP_DUPLICATE_MEMBER = "dpop_duplicate_member", "invalid_dpop_proof", _BAD_PROOF, Family.PROOF
    DPOP_TOO_DEEP = "dpop_too_deep", "invalid_dpop_proof", _BAD_PROOF, Family.PROOF
    DPOP_FORBIDDEN_HEADER = (
        "dpop_forbidden_header",
        "invalid_dpop_proof",
        "The DPoP proof's header may hold typ, alg and jwk only.",
        Family.PROOF,
    )
    DPOP_BAD_TYP = (
        "dpop_bad_typ",
        "invalid_dpop_proof",
        "The DPoP proof's typ must be dpop+jwt.",
        Family.PROOF,
    )
    DPOP_BAD_ALG = (
        "dpop_bad_alg",
        "invalid_dpop_proof",
        "The DPoP proof's algorithm is not accepted.",
        Family.PROOF,
    )
    DPOP_BAD_KEY = (
        "dpop_bad_key",
        "invalid_dpop_proof",
        "The DPoP proof's jwk is not a public key of its algorithm.",
        Family.PROOF,
    )
    DPOP_BAD_SIGNATURE = "dpop_bad_signature", "invalid_dpop_proof", _BAD_PROOF, Family.PROOF
    DPOP_BAD_JTI = "dpop_bad_jti", "invalid_dpop_proof", "The DPoP proof needs a jti.", Family.PROOF
    DPOP_WRONG_METHOD = (
        "dpop_wrong_method",
        "invalid_dpop_proof",
        "The DPoP proof was made for another HTTP method.",
        Family.PROOF,
    )
    DPOP_WRONG_URL = (
        "dpop_wrong_url",
        "invalid_dpop_proof",
        "The DPoP proof was made for another URL.",
        Family.PROOF,
    )
    DPOP_BAD_IAT = "dpop_bad_iat", "invalid_dpop_proof", "The DPoP proof needs a numeric iat.", Family.PROOF
    DPOP_STALE = (
        "dpop_stale",
        "invalid_dpop_proof",
        "The DPoP proof was issued outside the accepted time window.",
        Family.PROOF,
    )
    DPOP_WRONG_ATH = (
        "dpop_wrong_ath",
        "invalid_dpop_proof",
        "The DPoP proof's ath is not the presented token's hash.",
        Family.PROOF,
    )
    DPOP_NONCE_REQUIRED = (
        "dpop_nonce_required",
        "use_dpop_nonce",
        "Resend the DPoP proof with the server's nonce (DPoP-Nonce).",
        Family.PROOF,
    )
    DPOP_NONCE_STALE = (
        "dpop_nonce_stale",
        "use_dpop_nonce",
        "The DPoP nonce is no longer accepted; resend the proof with the new one (DPoP-Nonce).",
        Family.PROOF,
    )
    DPOP_REPLAYED = "dpop_replayed", "invalid_dpop_proof", "The DPoP proof was already used.", Family.PROOF
    DPOP_REQUIRED = (
        "dpop_required",
        "invalid_dpop_proof",
        "This client's tokens must be DPoP-bound: send a DPoP proof.",
        Family.PROOF,
    )
    DPOP_BOUND_SUBJECT = (
        "dpop_bound_subject",
        "invalid_dpop_proof",
        "A DPoP-bound subject token is only exchanged for a DPoP-bound token: send a DPoP proof.",
        Family.PROOF,
    )
    DPOP_IMPLICIT_UNBINDABLE = (
        "dpop_implicit_unbindable",
        "unauthorized_client",
        "This client's tokens must be DPoP-bound; the implicit grant cannot bind them.",
        Family.PROOF,
    )
    DPOP_JKT_MALFORMED = (
        "dpop_jkt_malformed",
        "invalid_request",
        "dpop_jkt must be the base64url SHA-256 thumbprint of a key (RFC 7638).",
        Family.PROOF,
    )
    DPOP_KEY_MISMATCH = (
        "dpop_key_mismatch",
        "invalid_dpop_proof",
        "The DPoP proof is not signed by the key the token is bound to.",
        Family.PROOF,
    )

    # -- the re-check inside the issuing transaction -------------------------------------
    PARTY_DISABLED = (
        "party_disabled",
        "invalid_request",
        "A party of this delegation was disabled; the token cannot be issued.",
        Family.ISSUANCE,
    )
    CLIENT_DISABLED = "client_disabled", "unauthorized_client", "This client is disabled.", Family.ISSUANCE
    USER_INACTIVE = "user_inactive", "invalid_grant", "The user is not active.", Family.ISSUANCE
    KEY_REVOKED = (
        "key_revoked",
        "temporarily_unavailable",
        "Signing keys are changing; retry.",
        Family.ISSUANCE,
    )

    # -- the service ---------------------------------------------------------------------
    DATABASE_ERROR = (
        "database_error",
        "temporarily_unavailable",
        "The service is temporarily unavailable; retry later.",
        Family.SERVICE,
    )
    AUDIT_UNAVAILABLE = (
        "audit_unavailable",
        "temporarily_unavailable",
        "The service is temporarily unavailable; retry later.",
        Family.SERVICE,
    )
    DPOP_REPLAY_UNAVAILABLE = (
        "dpop_replay_unavailable",
        "temporarily_unavailable",
        "The service is temporarily unavailable; retry later.",
        Family.SERVICE,
    )
    ID_JAG_KEYS_UNAVAILABLE = (
        "id_jag_keys_unavailable",
        "temporarily_unavailable",
        "The issuer's keys could not be fetched; try again later.",
        Family.SERVICE,
    )
    ID_JAG_REPLAY_UNAVAILABLE = (
        "id_jag_replay_unavailable",
        "temporarily_unavailable",
        "The server cannot check ID-JAG replay right now; try again later.",
        Family.SERVICE,
    )
    UNHANDLED_EXCEPTION = (
        "unhandled_exception",
        "server_error",
        "The server could not handle the request.",
        Family.SERVICE,
    )
    UNFINISHED = "unfinished", "server_error", "The server could not handle the request.", Family.SERVICE

    # -- Token Status Lists (draft-ietf-oauth-status-list) --------------------------------
    # At the provider's list endpoints (sections 8.1, 8.2 and 8.4).
    STATUS_LIST_NOT_FOUND = (
        "status_list_not_found",
        "invalid_request",
        "No status list is published at this address.",
        Family.REQUEST,
        404,
    )
    STATUS_LIST_NOT_ACCEPTABLE = (
        "status_list_not_acceptable",
        "invalid_request",
        "Status lists are offered as application/statuslist+jwt only.",
        Family.REQUEST,
        406,
    )
    STATUS_LIST_HISTORY_UNSUPPORTED = (
        "status_list_history_unsupported",
        "invalid_request",
        "Historical resolution (the time parameter) is not supported.",
        Family.REQUEST,
        501,
    )
    # On the resource side (section 8.3): the token's entry, then the list it names.
    STATUS_LIST_REVOKED = (
        "status_list_revoked",
        "invalid_token",
        "The access token has been revoked.",
        Family.TOKEN,
    )
    STATUS_LIST_REFERENCE_INVALID = (
        "status_list_reference_invalid",
        "invalid_token",
        "The access token's status reference is invalid.",
        Family.TOKEN,
    )
    STATUS_LIST_UNAVAILABLE = (
        "status_list_unavailable",
        "temporarily_unavailable",
        "Revocation cannot be checked right now.",
        Family.SERVICE,
    )
    STATUS_LIST_SIGNATURE = (
        "status_list_signature",
        "temporarily_unavailable",
        "Revocation cannot be checked right now.",
        Family.SERVICE,
    )
    STATUS_LIST_EXPIRED = (
        "status_list_expired",
        "temporarily_unavailable",
        "Revocation cannot be checked right now.",
        Family.SERVICE,
    )
    STATUS_LIST_SUBJECT_MISMATCH = (
        "status_list_subject_mismatch",
        "temporarily_unavailable",
        "Revocation cannot be checked right now.",
        Family.SERVICE,
    )
    STATUS_LIST_TOO_LARGE = (
        "status_list_too_large",
        "temporarily_unavailable",
        "Revocation cannot be checked right now.",
        Family.SERVICE,
    )
    STATUS_LIST_MALFORMED = (
        "status_list_malformed",
        "temporarily_unavailable",
        "Revocation cannot be checked right now.",
        Family.SERVICE,
    )

    @classmethod
    def for_token_error(cls, role: str, jose_reason: str) -> Reason:
        """The member for a presented token (``role`` is ``subject`` or ``actor``) that the JOSE
        layer refused with ``jose_reason``; ``<role>_malformed`` for a code it does not list."""
        table = cls._value2member_map_
        return table.get(f"{role}_{jose_reason}") or table[f"{role}_malformed"]  # type: ignore[return-value]

    @classmethod
    def for_proof_error(cls, code: str) -> Reason:
        """The member for a DPoP proof check's code (:class:`delegation_idp.rfc9449.ProofError`);
        ``dpop_malformed`` for a code it does not list."""
        member = cls._value2member_map_.get(code)
        return member if isinstance(member, cls) and member.family is Family.PROOF else cls.DPOP_MALFORMED

    @classmethod
    def for_error(cls, error: str) -> Reason:
        """The generic member of an OAuth error code (for errors raised by django-oauth-toolkit
        or oauthlib, which carry no reason of their own)."""
        for member in cls:
            if member.error == error and (member.value == error or member.family is Family.SERVICE):
                return member
        return next((member for member in cls if member.error == error), cls.INVALID_REQUEST)


def markdown_table() -> str:
    """The catalogue as the Markdown table of ``docs/reasons.md`` (a test keeps them equal)::

    python -c "from delegation_idp.core.reasons import markdown_table; print(markdown_table())"
    """
    lines = ["| reason | family | error | status | description |", "| --- | --- | --- | --- | --- |"]
    for reason in Reason:
        error = f"`{reason.error}`" if reason.error else "(none)"
        lines.append(
            f"| `{reason.value}` | {reason.family.value} | {error} | {reason.status} | {reason.description} |"
        )
    return "\n".join(lines)
