"""Leg 1 from the other subjects the draft allows (draft-ietf-oauth-identity-assertion-authz-grant
section 4.3): an OpenID Connect ID token or a refresh token that this provider issued to the
requesting agent when the user signed in to it. Each gets the ID-JAG an access-token subject
gets, as a child of the root access token's lineage row; each refusal is ``invalid_request``
with its reason, audited, with no token issued and no row changed."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from jwcrypto import jwk
from oauth2_provider.models import get_access_token_model, get_id_token_model, get_refresh_token_model

from delegation_idp import jose
from delegation_idp.lineage import revocation
from delegation_idp.models import AuditEvent, Party, TokenLineage
from delegation_idp.rfc8693 import GRANT_TYPE, ID_TOKEN_TYPE, REFRESH_TOKEN_TYPE
from tests.helpers import assert_oauth_error, decode, with_idp
from tests.idjag.conftest import AS_ISSUER, MCP_RESOURCE
from tests.security.forge import b64, segment

pytestmark = pytest.mark.usefixtures("id_jag_rule")

TYPES = {"id_token": ID_TOKEN_TYPE, "refresh_token": REFRESH_TOKEN_TYPE}


def rows() -> tuple[int, ...]:
    """Every row a leg-1 request could add or change: to show that a refusal changed none."""
    RefreshToken = get_refresh_token_model()
    return (
        get_access_token_model().objects.count(),
        TokenLineage.objects.count(),
        TokenLineage.objects.filter(revoked_at__isnull=False).count(),
        get_id_token_model().objects.count(),
        RefreshToken.objects.count(),
        RefreshToken.objects.filter(revoked__isnull=False).count(),
    )


def refused(response: Any, before: tuple[int, ...], reason: str) -> None:
    assert_oauth_error(response, 400, "invalid_request")
    assert rows() == before, "a refused request changed rows"
    event = AuditEvent.objects.filter(event="token_exchange").order_by("-id").first()
    assert event is not None
    assert (event.decision, event.error, event.reason, event.jti) == ("denied", "invalid_request", reason, "")


@pytest.fixture
def ask(request_id_jag):
    """Leg 1 as ``agent`` with ``subject`` of the given kind (``id_token`` or ``refresh_token``)."""

    def post(kind: str, subject: str, agent: str = "agent1", **params: Any) -> Any:
        return request_id_jag(agent, subject, subject_token_type=TYPES[kind], **params)

    return post


def oidc_key() -> jose.SigningKey:
    """The site's OpenID Connect signing key (the test settings' RSA key), to forge with."""
    key = jwk.JWK.from_pem(settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"].encode())
    return jose.SigningKey(kid=key.thumbprint(), alg="RS256", jwk=key)


def forged(id_token: str, key: jose.SigningKey | None = None, **changes: Any) -> str:
    """``id_token``'s claims with ``changes`` (None removes), signed as django-oauth-toolkit
    signs (header ``typ`` ``JWT``, ``alg``, ``kid``) by ``key`` (the site's by default)."""
    claims = {**decode(id_token)[1], **changes}
    return jose.sign({k: v for k, v in claims.items() if v is not None}, key or oidc_key(), typ="JWT")


def other_rsa_key(kid: str | None = None) -> jose.SigningKey:
    key = jwk.JWK.generate(kty="RSA", size=2048)
    return jose.SigningKey(kid=kid or key.thumbprint(), alg="RS256", jwk=key)


# -- issued ---------------------------------------------------------------------------------------


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_the_subject_gets_an_id_jag(kind, sign_in, ask, cast):
    tokens = sign_in()
    root = decode(tokens["access_token"])[1]
    response = ask(kind, tokens[kind], scope="tasks.read")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["issued_token_type"], body["token_type"]) == (
        "urn:ietf:params:oauth:token-type:id-jag",
        "N_A",
    )
    claims = decode(body["access_token"])[1]
    assert claims["iss"] == "http://testserver"
    assert claims["sub"] == root["sub"] == cast.user.email  # the user, as in the root token
    assert claims["aud"] == AS_ISSUER
    assert claims["client_id"] == cast["agent1"].client_id
    assert claims["resource"] == MCP_RESOURCE
    assert claims["scope"] == "tasks.read"
    assert claims["act"] == {"sub": cast["agent1"].uri}  # the requester is the first actor
    assert "cnf" not in claims


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_the_scope_is_the_root_tokens_within_the_rule(kind, sign_in, ask):
    tokens = sign_in(scope="openid tasks.write")  # the rule passes on tasks.read only
    response = ask(kind, tokens[kind], scope="tasks.read")
    assert_oauth_error(response, 400, "invalid_scope")
    tokens = sign_in()
    assert decode(ask(kind, tokens[kind]).json()["access_token"])[1]["scope"] == "tasks.read"


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_recorded_as_a_child_of_the_root_token(kind, sign_in, ask):
    tokens = sign_in()
    root = decode(tokens["access_token"])[1]["jti"]
    claims = decode(ask(kind, tokens[kind]).json()["access_token"])[1]
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert (row.parent_jti, row.root_jti, row.depth) == (root, root, 1)
    assert row.path == f"{root}/{claims['jti']}"
    assert row.grant_type == GRANT_TYPE
    assert row.audience == [AS_ISSUER]
    event = AuditEvent.objects.get(jti=claims["jti"])
    assert (event.decision, event.reason, event.parent_jti) == ("granted", "allowed", root)


def test_the_client_id_is_the_agents_at_the_authorization_server(sign_in, ask, cast):
    Party.objects.filter(uri=AS_ISSUER).update(client_ids={cast["agent1"].uri: "agent-one-at-tools"})
    claims = decode(ask("id_token", sign_in()["id_token"]).json()["access_token"])[1]
    assert claims["client_id"] == "agent-one-at-tools"


def test_an_id_token_signed_by_an_inactive_key_verifies(sign_in, ask, settings):
    """A retired key (OIDC_RSA_PRIVATE_KEYS_INACTIVE) still verifies the ID tokens it signed."""
    tokens = sign_in()
    retired = settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"]
    replacement = other_rsa_key().jwk.export_to_pem(private_key=True, password=None).decode()
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "OIDC_RSA_PRIVATE_KEY": replacement,
        "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [retired],
    }
    assert ask("id_token", tokens["id_token"]).status_code == 200


def test_the_refresh_tokens_successor_and_its_id_token_are_subjects(sign_in, ask, token_endpoint, cast):
    tokens = sign_in()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = token_endpoint(form, cast["agent1"]).json()
    assert "id_token" in renewed
    for kind in ("id_token", "refresh_token"):
        assert ask(kind, renewed[kind]).status_code == 200, kind
    before = rows()
    refused(ask("refresh_token", tokens["refresh_token"]), before, "subject_revoked")  # rotated
    refused(ask("id_token", tokens["id_token"]), before, "subject_revoked")  # its access token went


# -- refused: the request ---------------------------------------------------------------------------


@pytest.mark.rfc("8693-2.1")
@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_only_for_an_id_jag(kind, sign_in, exchange, cast):
    tokens = sign_in()
    before = rows()
    response = exchange("agent1", tokens[kind], cast["agent2"].uri, subject_token_type=TYPES[kind])
    refused(response, before, "id_jag_only_subject_type")


def test_the_actor_token_stays_an_access_token(sign_in, ask):
    tokens = sign_in()
    before = rows()
    response = ask(
        "id_token", tokens["id_token"], actor_token=tokens["id_token"], actor_token_type=ID_TOKEN_TYPE
    )
    refused(response, before, "unsupported_token_type")


# -- refused: the ID token ----------------------------------------------------------------------------


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
def test_an_id_token_of_another_client(sign_in, ask):
    theirs = sign_in("agent2")["id_token"]
    before = rows()
    refused(ask("id_token", theirs), before, "subject_wrong_audience")


def test_an_id_token_of_another_client_re_addressed(sign_in, ask, cast):
    """Validly signed and addressed to agent1, but django-oauth-toolkit issued it to agent2."""
    theirs = sign_in("agent2")["id_token"]
    before = rows()
    refused(ask("id_token", forged(theirs, aud=cast["agent1"].client_id)), before, "subject_unknown")


def test_an_expired_id_token(sign_in, ask):
    tokens = sign_in()
    before = rows()
    refused(
        ask("id_token", forged(tokens["id_token"], exp=int(time.time()) - 600)), before, "subject_expired"
    )


def test_an_id_token_whose_row_expired(sign_in, ask):
    tokens = sign_in()
    get_id_token_model().objects.update(expires=timezone.now() - timezone.timedelta(seconds=1))
    before = rows()
    refused(ask("id_token", tokens["id_token"]), before, "subject_expired")


def test_an_id_token_of_an_unknown_jti(sign_in, ask):
    tokens = sign_in()
    before = rows()
    refused(ask("id_token", forged(tokens["id_token"], jti=str(uuid.uuid4()))), before, "subject_unknown")


def test_an_id_token_of_another_issuer(sign_in, ask):
    tokens = sign_in()
    before = rows()
    refused(
        ask("id_token", forged(tokens["id_token"], iss="https://elsewhere.example")),
        before,
        "subject_bad_iss",
    )


@pytest.mark.rfc("8725-3.1")
def test_a_forged_signature_under_our_kid(sign_in, ask):
    tokens = sign_in()
    before = rows()
    impostor = forged(tokens["id_token"], key=other_rsa_key(kid=oidc_key().kid))
    refused(ask("id_token", impostor), before, "subject_bad_signature")


def test_a_tampered_id_token(sign_in, ask, cast):
    header, payload, signature = sign_in()["id_token"].split(".")
    claims = {**decode(f"{header}.{payload}.{signature}")[1], "sub": "2"}
    before = rows()
    refused(ask("id_token", f"{header}.{segment(claims)}.{signature}"), before, "subject_bad_signature")


def test_an_id_token_of_a_key_not_ours(sign_in, ask):
    tokens = sign_in()
    before = rows()
    refused(ask("id_token", forged(tokens["id_token"], key=other_rsa_key())), before, "subject_unknown_kid")


def test_an_access_token_of_ours_as_an_id_token(sign_in, ask):
    """Our ES256 access tokens are no ID tokens: the algorithm allow-list is RS256."""
    tokens = sign_in()
    before = rows()
    refused(ask("id_token", tokens["access_token"]), before, "subject_bad_alg")


@pytest.mark.rfc("8725-3.1")
def test_an_hs256_id_token(sign_in, ask, cast):
    """An ID token signed with the client secret (django-oauth-toolkit's HS256) is refused: the
    client knows that key, so it could sign any ID token it liked."""
    tokens = sign_in()
    header = {"typ": "JWT", "alg": "HS256"}
    signing_input = f"{segment(header)}.{segment(decode(tokens['id_token'])[1])}"
    mac = hmac.new(cast["agent1"].client_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    before = rows()
    refused(ask("id_token", f"{signing_input}.{b64(mac)}"), before, "subject_bad_alg")


def test_an_id_token_too_large_is_refused_before_parsing(sign_in, ask):
    tokens = sign_in()
    before = rows()
    with with_idp(MAX_TOKEN_BYTES=len(tokens["id_token"]) - 1):
        refused(ask("id_token", tokens["id_token"]), before, "subject_too_large")


# -- refused: the refresh token --------------------------------------------------------------------


def test_a_revoked_refresh_token(sign_in, ask, revoke_endpoint, cast):
    tokens = sign_in()
    assert revoke_endpoint(tokens["refresh_token"], cast["agent1"], hint="refresh_token").status_code == 200
    before = rows()
    refused(ask("refresh_token", tokens["refresh_token"]), before, "subject_revoked")


def test_a_refresh_token_revoked_in_the_table(sign_in, ask):
    """Revoked by django-oauth-toolkit alone (its admin, say): the row's mark is enough."""
    tokens = sign_in()
    get_refresh_token_model().objects.update(revoked=timezone.now())
    before = rows()
    refused(ask("refresh_token", tokens["refresh_token"]), before, "subject_revoked")


def test_another_clients_refresh_token(sign_in, ask):
    theirs = sign_in("agent2")["refresh_token"]
    before = rows()
    refused(ask("refresh_token", theirs), before, "subject_unknown")


def test_an_unknown_refresh_token(sign_in, ask):
    sign_in()
    before = rows()
    refused(ask("refresh_token", "not-a-refresh-token-of-ours"), before, "subject_unknown")


def test_a_refresh_token_past_its_lifetime(sign_in, ask, settings):
    tokens = sign_in()
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REFRESH_TOKEN_EXPIRE_SECONDS": 60}
    get_access_token_model().objects.update(expires=timezone.now() - timezone.timedelta(seconds=61))
    before = rows()
    refused(ask("refresh_token", tokens["refresh_token"]), before, "subject_expired")


# -- refused: the root token and the user (both kinds) ---------------------------------------------


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_revoking_the_root_token_stops_new_id_jags(kind, sign_in, ask, revoke_endpoint, cast):
    tokens = sign_in()
    assert ask(kind, tokens[kind]).status_code == 200
    assert revoke_endpoint(tokens["access_token"], cast["agent1"]).status_code == 200
    before = rows()
    refused(ask(kind, tokens[kind]), before, "subject_revoked")


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_a_revoked_root_lineage_row(kind, sign_in, ask):
    """The root token's lineage row revoked (the admin's "revoke this token and its subtree")."""
    tokens = sign_in()
    revocation.revoke_subtree(decode(tokens["access_token"])[1]["jti"], reason="admin")
    before = rows()
    refused(ask(kind, tokens[kind]), before, "subject_revoked")


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_a_root_lineage_row_marked_revoked_only(kind, sign_in, ask):
    """Marked revoked while its django-oauth-toolkit rows remain: the mark alone refuses."""
    tokens = sign_in()
    TokenLineage.objects.filter(jti=decode(tokens["access_token"])[1]["jti"]).update(
        revoked_at=timezone.now()
    )
    before = rows()
    refused(ask(kind, tokens[kind]), before, "subject_revoked")


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_an_expired_root_token(kind, sign_in, ask):
    tokens = sign_in()
    TokenLineage.objects.filter(jti=decode(tokens["access_token"])[1]["jti"]).update(
        expires_at=timezone.now() - timezone.timedelta(seconds=1)
    )
    before = rows()
    refused(ask(kind, tokens[kind]), before, "subject_expired")


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_an_inactive_user(kind, sign_in, ask, cast):
    tokens = sign_in()
    type(cast.user).objects.filter(pk=cast.user.pk).update(is_active=False)
    before = rows()
    refused(ask(kind, tokens[kind]), before, "subject_user_inactive")


@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_a_disabled_agent(kind, sign_in, ask, cast):
    tokens = sign_in()
    Party.objects.filter(uri=cast["agent1"].uri).update(enabled=False)
    before = rows()
    response = ask(kind, tokens[kind])
    assert_oauth_error(response, 400, "unauthorized_client")
    assert rows() == before


# -- a root token bound to a key (RFC 9449): its ID token and refresh token stand for it -------------


@pytest.fixture
def bound_sign_in(cast, client, token_endpoint):
    """agent1's user signs in with OpenID Connect and agent1 redeems the code with a DPoP proof:
    the root access token is bound to agent1's key. Returns (tokens, prover)."""
    from tests.conftest import authorize_code, code_form
    from tests.support.dpop import Prover

    def run() -> tuple[dict[str, Any], Any]:
        prover, who = Prover(), cast["agent1"]
        code, verifier = authorize_code(client, who, cast.user, f"openid {cast.scope}")
        proof = prover.proof("POST", "http://testserver/o/token/")
        response = token_endpoint(code_form(who, code, verifier), who, HTTP_DPOP=proof)
        assert response.status_code == 200, response.content
        tokens = dict(response.json())
        assert decode(tokens["access_token"])[1]["cnf"] == {"jkt": prover.jkt}
        return tokens, prover

    return run


@pytest.mark.rfc("9449-5")
@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_a_bound_roots_subject_without_a_proof(kind, bound_sign_in, ask):
    """An ID token or refresh token stands for a bound root token: without a proof of its key,
    no ID-JAG, exactly as for the access token itself."""
    tokens, _prover = bound_sign_in()
    before = rows()
    response = ask(kind, tokens[kind], scope="tasks.read")
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert rows() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_bound_subject"


@pytest.mark.rfc("9449-5")
@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_a_bound_roots_subject_with_another_key(kind, bound_sign_in, ask):
    from tests.support.dpop import Prover

    tokens, _prover = bound_sign_in()
    before = rows()
    proof = Prover().proof("POST", "http://testserver/o/token/")
    response = ask(kind, tokens[kind], scope="tasks.read", HTTP_DPOP=proof)
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert rows() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_key_mismatch"


@pytest.mark.rfc("9449-5")
@pytest.mark.parametrize("kind", ["id_token", "refresh_token"])
def test_a_bound_roots_subject_with_its_key(kind, bound_sign_in, ask):
    tokens, prover = bound_sign_in()
    proof = prover.proof("POST", "http://testserver/o/token/")
    response = ask(kind, tokens[kind], scope="tasks.read", HTTP_DPOP=proof)
    assert response.status_code == 200, response.content
    assert "cnf" not in decode(response.json()["access_token"])[1]  # an ID-JAG is never bound


# -- the ID token's header and identifiers ------------------------------------------------------------


def test_an_id_token_without_a_kid(sign_in, ask):
    tokens = sign_in()
    before = rows()
    claims = decode(tokens["id_token"])[1]
    key = oidc_key()
    unnamed = jose.SigningKey(kid="", alg=key.alg, jwk=key.jwk)
    refused(ask("id_token", jose.sign(claims, unnamed, typ="JWT")), before, "subject_bad_kid")


def test_a_token_of_another_type_signed_with_the_oidc_key(sign_in, ask):
    tokens = sign_in()
    before = rows()
    claims = decode(tokens["id_token"])[1]
    refused(ask("id_token", jose.sign(claims, oidc_key(), typ="at+jwt")), before, "subject_bad_typ")


def test_an_id_token_whose_jti_is_no_uuid(sign_in, ask):
    tokens = sign_in()
    before = rows()
    refused(ask("id_token", forged(tokens["id_token"], jti="not-a-uuid")), before, "subject_malformed")


def test_without_oidc_keys_no_id_token_verifies(sign_in, ask, settings):
    tokens = sign_in()
    before = rows()
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEY": ""}
    refused(ask("id_token", tokens["id_token"]), before, "subject_unknown_kid")


def test_a_live_refresh_token_whose_access_token_row_is_gone(sign_in, ask):
    tokens = sign_in()
    get_access_token_model().objects.filter(token_checksum=_checksum(tokens["access_token"])).delete()
    before = rows()
    refused(ask("refresh_token", tokens["refresh_token"]), before, "subject_revoked")


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
