"""The adversarial matrix of the token endpoint.

Every case states the exact status and ``error`` it must get (RFC 8693 section
2.2.2: invalid or unacceptable subject and actor tokens are ``invalid_request``),
and every case asserts that no token was issued, that one audit event with
decision ``denied`` was written, that the token never reached that event, and
that nothing was fetched from the network or decompressed.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from jwcrypto import jwe, jwk

from delegation_idp.models import AuditEvent, Party
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import assert_oauth_error, decode, snapshot

from . import forge
from .conftest import Context, tripwires

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
AGENT2 = "https://agent2.example.com"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"


@dataclass
class Req:
    """One request to the token endpoint."""

    form: dict[str, Any] | str | bytes
    agent: str | None = "agent1"
    method: str = "post"
    query: str = ""
    content_type: str = "application/x-www-form-urlencoded"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    id: str
    status: int
    error: str
    build: Callable[[Context], Req]
    reason: str | None = None  # the audit record's reason, where it is stable


def form(token: str, audience: str | None = AGENT2, **params: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
    }
    if audience is not None:
        data["audience"] = audience
    data.update(params)
    return {k: v for k, v in data.items() if v is not None}


def subject(build: Callable[[Context], str], agent: str = "agent1", audience: str = AGENT2) -> Callable:
    """A case whose only hostile part is the subject token."""
    return lambda c: Req(form(build(c), audience), agent)


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def flip_last_signature_bit(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[-1] ^= 1
    return f"{head}.{payload}.{forge.b64(bytes(raw))}"


def der_signature(c: Context) -> str:
    header, claims = forge.own_header(), forge.claims_of(c.user_token)
    return forge.sign_raw(header, claims, der=True)


def jws_json(c: Context, general: bool) -> str:
    head, payload, sig = c.user_token.split(".")
    if general:
        return json.dumps({"payload": payload, "signatures": [{"protected": head, "signature": sig}]})
    return json.dumps({"payload": payload, "protected": head, "signature": sig})


def real_jwe(c: Context, **extra: Any) -> str:
    """A genuine compact JWE of the subject token's claims, encrypted to our own public key."""
    members = {k: v for k, v in forge.own_key().public_jwk().items() if k not in ("use", "alg")}
    public = jwk.JWK(**members)
    header = {"alg": "ECDH-ES+A128KW", "enc": "A128GCM", "kid": forge.own_key().kid, **extra}
    token = jwe.JWE(json.dumps(forge.claims_of(c.user_token)).encode(), protected=json.dumps(header))
    token.add_recipient(public)
    return token.serialize(compact=True)


def zip_bomb_jwe(c: Context) -> str:
    """A JWE whose ciphertext inflates to 50 MB (CVE-2024-28102). Raw segments: it need
    not decrypt, it must simply never reach a decompressor."""
    import zlib as real_zlib

    compressed = real_zlib.compress(b"\0" * 50_000_000, 9)[:4000]
    header = {"alg": "dir", "enc": "A128GCM", "zip": "DEF", "kid": forge.own_key().kid}
    return ".".join([forge.segment(header), "", forge.b64(b"\0" * 12), forge.b64(compressed), "A" * 22])


def p2c_bomb(c: Context) -> str:
    """PBES2 with 2**31-1 iterations (CVE-2023-6681)."""
    header = {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2c": 2**31 - 1, "p2s": forge.b64(b"salt" * 4)}
    return ".".join([forge.segment(header), "A" * 54, "A" * 16, "A" * 22, "A" * 22])


def embedded_jwk(c: Context) -> str:
    """Signed by the attacker, with the attacker's public key in the header (CVE-2018-0114)."""
    attacker = forge.foreign_key()
    header = {
        "alg": "ES256",
        "kid": forge.own_key().kid,
        "typ": "at+jwt",
        "jwk": json.loads(attacker.jwk.export_public()),
    }
    return forge.sign_raw(header, forge.claims_of(c.user_token), attacker)


def header_member(name: str, value: Any) -> Callable[[Context], str]:
    """A hostile header member on a token validly signed by our own key."""
    return lambda c: forge.resign(c.user_token, header=forge.own_header(**{name: value}))


def raw_duplicate_header(c: Context) -> str:
    key = forge.own_key()
    header = f'{{"alg":"{key.alg}","kid":"{key.kid}","typ":"at+jwt","alg":"none"}}'
    return forge.sign_raw(header, forge.claims_of(c.user_token))


def raw_duplicate_claim(name: str, value: str) -> Callable[[Context], str]:
    def build(c: Context) -> str:
        body = json.dumps(forge.claims_of(c.user_token), separators=(",", ":"))
        payload = body[:-1] + f',"{name}":{json.dumps(value)}}}'
        return forge.sign_raw(forge.own_header(), payload)

    return build


def alg_none(alg: str) -> Callable[[Context], str]:
    def build(c: Context) -> str:
        header = {"alg": alg, "kid": forge.own_key().kid, "typ": "at+jwt"}
        return f"{forge.segment(header)}.{forge.segment(forge.claims_of(c.user_token))}."

    return build


def disable_quietly(name: str) -> Callable[[Context], Req]:
    """A chain actor disabled without the revocation signal: policy must still refuse."""

    def build(c: Context) -> Req:
        tokens = c.chain
        Party.objects.filter(uri=c.uri(name)).update(enabled=False)
        return Req(form(tokens[2], c.cast.resource_server), "mcp-server1")

    return build


def disable_with_signal(name: str) -> Callable[[Context], Req]:
    def build(c: Context) -> Req:
        tokens = c.chain
        party = Party.objects.get(uri=c.uri(name))
        party.enabled = False
        party.save()
        return Req(form(tokens[2], c.cast.resource_server), "mcp-server1")

    return build


def revoked_ancestor(c: Context) -> Req:
    from delegation_idp.lineage.revocation import revoke_subtree

    tokens = c.chain
    revoke_subtree(decode(tokens[0])[1]["jti"])
    return Req(form(tokens[2], c.cast.resource_server), "mcp-server1")


def disabled_requester(c: Context) -> Req:
    token = c.user_token
    Party.objects.filter(uri=c.uri("agent1")).update(enabled=False)
    return Req(form(token))


def inactive_user(c: Context) -> Req:
    token = c.user_token
    c.cast.user.is_active = False
    c.cast.user.save()
    return Req(form(token))


def act_of(*actors: str) -> dict[str, Any]:
    from delegation_idp.core.actchain import nest

    result = nest(actors)
    assert result is not None
    return result


NFD_ISSUER = "http://testserve" + unicodedata.normalize("NFD", "r\u0301")

# -- request shape -----------------------------------------------------------------

REQUEST_SHAPE = [
    Case(
        "get",
        405,
        "invalid_request",
        lambda c: Req({"grant_type": GRANT}, method="get"),
        "method_not_allowed",
    ),
    Case(
        "put", 405, "invalid_request", lambda c: Req(form(c.user_token), method="put"), "method_not_allowed"
    ),
    Case("delete", 405, "invalid_request", lambda c: Req("", method="delete"), "method_not_allowed"),
    Case(
        "query-string-parameters",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token), query=urlencode({"subject_token": c.user_token})),
    ),
    Case(
        "query-string-only",
        400,
        "invalid_request",
        lambda c: Req("", query=urlencode(form(c.user_token))),
    ),
    Case(
        "missing-subject-token",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, subject_token=None)),
        "missing_parameter",
    ),
    Case(
        "missing-subject-token-type",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, subject_token_type=None)),
        "missing_parameter",
    ),
    Case(
        "missing-target",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, audience=None)),
        "missing_parameter",
    ),
    Case(
        "missing-grant-type",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, grant_type=None)),
        "missing_parameter",
    ),
    Case("empty-body", 400, "invalid_request", lambda c: Req("")),
    Case(
        "empty-subject-token",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, subject_token="")),
        "empty_parameter",
    ),
    Case(
        "empty-audience",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, audience="")),
        "empty_parameter",
    ),
    Case(
        "empty-scope", 400, "invalid_request", lambda c: Req(form(c.user_token, scope="")), "empty_parameter"
    ),
    Case(
        "empty-actor-token",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, actor_token="", actor_token_type=ACCESS_TOKEN_TYPE)),
        "empty_parameter",
    ),
    Case(
        "empty-grant-type",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, grant_type="")),
        "missing_parameter",
    ),
    Case(
        "repeated-subject-token",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, subject_token=[c.user_token, c.user_token])),
        "repeated_parameter",
    ),
    Case(
        "repeated-subject-token-type",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, subject_token_type=[ACCESS_TOKEN_TYPE, ACCESS_TOKEN_TYPE])),
        "repeated_parameter",
    ),
    Case(
        "repeated-grant-type",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, grant_type=[GRANT, GRANT])),
        "repeated_parameter",
    ),
    Case(
        "repeated-scope",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, scope=["tasks.read", "tasks.write"])),
        "repeated_parameter",
    ),
    Case(
        "unknown-grant-type",
        400,
        "unsupported_grant_type",
        lambda c: Req(form(c.user_token, grant_type="urn:example:grant")),
    ),
    Case(
        "grant-type-case-variant",
        400,
        "unsupported_grant_type",
        lambda c: Req(form(c.user_token, grant_type=GRANT.upper())),
    ),
    Case(
        "json-body",
        400,
        "invalid_request",
        lambda c: Req(json.dumps(form(c.user_token)), content_type="application/json"),
        "bad_content_type",
    ),
    Case(
        "multipart-body",
        400,
        "invalid_request",
        lambda c: Req("--x--", content_type="multipart/form-data; boundary=x"),
        "bad_content_type",
    ),
    Case(
        "no-content-type",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token)), content_type=""),
    ),
    Case(
        "broken-percent-escape",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token)) + "&scope=%zz"),
        "bad_encoding",
    ),
    Case(
        "truncated-percent-escape",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token)) + "&scope=tasks%2"),
        "bad_encoding",
    ),
    Case(
        "non-utf8-percent-escape",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token, audience=None)) + "&audience=%E9t%E9"),
        "bad_encoding",
    ),
    Case(
        "non-utf8-raw-bytes",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token)).encode() + b"&scope=\xff\xfe"),
        "bad_encoding",
    ),
    Case(
        "nul-in-parameter",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token)) + "&scope=tasks.read%00"),
        "bad_encoding",
    ),
    Case(
        "non-utf8-basic-credentials",
        401,
        "invalid_client",
        lambda c: Req(form(c.user_token), None, headers={"HTTP_AUTHORIZATION": basic(b"\xff\xfe:\xfd")}),
        "bad_basic_credentials",
    ),
    Case(
        "basic-not-base64",
        401,
        "invalid_client",
        lambda c: Req(form(c.user_token), None, headers={"HTTP_AUTHORIZATION": "Basic ***"}),
        "bad_basic_credentials",
    ),
    Case(
        "basic-without-colon",
        401,
        "invalid_client",
        lambda c: Req(form(c.user_token), None, headers={"HTTP_AUTHORIZATION": basic(b"agent1")}),
        "bad_basic_credentials",
    ),
    Case(
        "basic-and-client-secret",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, client_secret=c.cast["agent1"].client_secret)),
        "multiple_client_authentication",
    ),
    Case(
        "basic-and-client-assertion",
        400,
        "invalid_request",
        lambda c: Req(
            form(
                c.user_token,
                client_assertion="a.b.c",
                client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
        ),
        "multiple_client_authentication",
    ),
    Case(
        "request-too-large",
        413,
        "invalid_request",
        lambda c: Req(form(c.user_token, scope="x" * 40_000)),
        "request_too_large",
    ),
    Case(
        "garbage-content-length",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token), headers={"CONTENT_LENGTH": "12abc"}),
        "bad_content_length",
    ),
]

# -- token validity -----------------------------------------------------------------

TOKEN_VALIDITY = [
    Case(
        "expired",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, exp=forge.now() - 3600, iat=forge.now() - 7200)),
        "subject_expired",
    ),
    Case(
        "expired-beyond-leeway",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, exp=forge.now() - 31)),
        "subject_expired",
    ),
    Case(
        "exp-as-string",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, exp=str(forge.now() + 600))),
        "subject_expired",
    ),
    Case(
        "exp-missing",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, exp=None)),
        "subject_missing_claim",
    ),
    Case(
        "nbf-beyond-leeway",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, nbf=forge.now() + 120)),
        "subject_not_yet_valid",
    ),
    Case(
        "iat-in-the-future",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iat=forge.now() + 3600)),
        "subject_not_yet_valid",
    ),
    Case(
        "flipped-signature",
        400,
        "invalid_request",
        subject(lambda c: flip_last_signature_bit(c.user_token)),
        "subject_bad_signature",
    ),
    Case(
        "truncated-signature",
        400,
        "invalid_request",
        subject(lambda c: c.user_token[:-4]),
        "subject_bad_signature",
    ),
    Case(
        "empty-signature",
        400,
        "invalid_request",
        subject(lambda c: c.user_token.rsplit(".", 1)[0] + "."),
        "subject_bad_signature",
    ),
    Case(
        "claims-swapped-under-signature",
        400,
        "invalid_request",
        subject(
            lambda c: ".".join(
                [
                    c.user_token.split(".")[0],
                    forge.segment(forge.claims_of(c.user_token, scope="tasks.read admin")),
                    c.user_token.split(".")[2],
                ]
            )
        ),
        "subject_bad_signature",
    ),
    *[
        Case(f"alg-{alg}", 400, "invalid_request", subject(alg_none(alg)), "subject_bad_alg")
        for alg in ("none", "None", "NONE", "nOnE")
    ],
    Case(
        "hs256-keyed-with-public-pem",
        400,
        "invalid_request",
        subject(lambda c: forge.hs256(c.user_token, forge.public_pem())),
        "subject_bad_alg",
    ),
    Case(
        "hs256-keyed-with-public-jwk",
        400,
        "invalid_request",
        subject(lambda c: forge.hs256(c.user_token, json.dumps(forge.own_key().public_jwk()).encode())),
        "subject_bad_alg",
    ),
    Case(
        "rs256-header-on-es256-key",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(alg="RS256"))),
        "subject_bad_alg",
    ),
    Case(
        "es256-zero-signature",
        400,
        "invalid_request",
        subject(lambda c: c.user_token.rsplit(".", 1)[0] + "." + forge.b64(b"\0" * 64)),
        "subject_bad_signature",
    ),
    Case(
        "es256-der-encoded-signature",
        400,
        "invalid_request",
        subject(der_signature),
        "subject_bad_signature",
    ),
    Case(
        "es256-r-equals-s-equals-n",
        400,
        "invalid_request",
        subject(
            lambda c: (
                c.user_token.rsplit(".", 1)[0]
                + "."
                + forge.b64(
                    bytes.fromhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551") * 2
                )
            )
        ),
        "subject_bad_signature",
    ),
    Case(
        "foreign-issuer",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iss="https://evil.example.com")),
        "subject_bad_iss",
    ),
    Case(
        "issuer-prefix-trick",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iss="http://testserver.evil.example.com")),
        "subject_bad_iss",
    ),
    Case(
        "issuer-trailing-slash",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iss="http://testserver/")),
        "subject_bad_iss",
    ),
    Case(
        "issuer-as-array",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iss=["http://testserver"])),
        "subject_bad_iss",
    ),
    Case(
        "issuer-array-with-ours-first",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iss=["http://testserver", "https://evil.example.com"])),
        "subject_bad_iss",
    ),
    Case(
        "issuer-missing",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, iss=None)),
        "subject_missing_claim",
    ),
    Case(
        "never-issued-jti",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, jti="never-issued-by-this-provider")),
        "subject_unknown",
    ),
    Case(
        "foreign-key-foreign-kid",
        400,
        "invalid_request",
        subject(
            lambda c: forge.sign_raw(
                {"alg": "ES256", "kid": "attacker-key", "typ": "at+jwt"},
                forge.claims_of(c.user_token),
                forge.foreign_key(),
            )
        ),
        "subject_unknown_kid",
    ),
    Case(
        "foreign-key-our-kid",
        400,
        "invalid_request",
        subject(
            lambda c: forge.sign_raw(forge.own_header(), forge.claims_of(c.user_token), forge.foreign_key())
        ),
        "subject_bad_signature",
    ),
    Case(
        "id-token-type",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, subject_token_type=ID_TOKEN_TYPE)),
        "id_jag_only_subject_type",  # accepted for an ID-JAG only (tests/idjag/test_signin_subjects.py)
    ),
    Case(
        "id-token-typ-jwt",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(typ="JWT"))),
        "subject_bad_typ",
    ),
    Case(
        "refresh-token-type",
        400,
        "invalid_request",
        lambda c: Req(form("opaque-refresh-token-value", subject_token_type=REFRESH_TOKEN_TYPE)),
        "id_jag_only_subject_type",  # accepted for an ID-JAG only (tests/idjag/test_signin_subjects.py)
    ),
    Case(
        "opaque-token-as-access-token",
        400,
        "invalid_request",
        subject(lambda c: "Yq3pD0fVJ5l4h7bQ9x2wT8kR1mN6sC"),
        "subject_malformed",
    ),
    Case(
        "typ-missing",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(typ=None))),
        "subject_bad_typ",
    ),
    Case(
        "typ-logout-jwt",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(typ="logout+jwt"))),
        "subject_bad_typ",
    ),
    Case(
        "typ-not-a-string",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(typ=["at+jwt"]))),
        "subject_bad_typ",
    ),
    Case(
        "actor-token-flipped-signature",
        400,
        "invalid_request",
        lambda c: Req(
            form(
                c.user_token,
                actor_token=flip_last_signature_bit(c.user_token),
                actor_token_type=ACCESS_TOKEN_TYPE,
            )
        ),
        "actor_bad_signature",
    ),
]

# -- JOSE abuse ----------------------------------------------------------------------

JOSE_ABUSE = [
    Case(
        "crit-unknown",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(crit=["urn:example:x"]))),
        "subject_forbidden_header",
    ),
    Case(
        "crit-empty",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(crit=[]))),
        "subject_forbidden_header",
    ),
    Case(
        "b64-false",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(b64=False, crit=["b64"]))),
        "subject_forbidden_header",
    ),
    *[
        Case(f"kid-{label}", 400, "invalid_request", subject(header_member("kid", kid)), reason)
        for label, kid, reason in (
            ("path-traversal", "../../../../../../dev/null", "subject_unknown_kid"),
            ("sql-injection", "x' OR '1'='1", "subject_unknown_kid"),
            ("url", "https://evil.example.com/key.json", "subject_unknown_kid"),
            ("nul", "\u0000", "subject_unknown_kid"),
            ("empty", "", "subject_bad_kid"),
            ("number", 1, "subject_bad_kid"),
            ("null", None, "subject_bad_kid"),
            ("object", {"$ne": ""}, "subject_bad_kid"),
            ("long", "k" * 129, "subject_bad_kid"),
            ("huge", "k" * 2000, "subject_too_large"),
        )
    ],
    *[
        Case(
            f"header-{name}",
            400,
            "invalid_request",
            subject(header_member(name, value)),
            "subject_forbidden_header",
        )
        for name, value in (
            ("jku", "https://evil.example.com/jwks.json"),
            ("x5u", "https://evil.example.com/cert.pem"),
            ("x5c", ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
            ("x5t", "dGh1bWJwcmludA"),
            ("zip", "DEF"),
            ("enc", "A128GCM"),
            ("p2c", 2**31 - 1),
            ("cty", "JWT"),
        )
    ],
    Case(
        "header-jwk-attacker-signed",
        400,
        "invalid_request",
        subject(embedded_jwk),
        "subject_forbidden_header",
    ),
    Case(
        "jku-and-foreign-kid",
        400,
        "invalid_request",
        subject(
            lambda c: forge.sign_raw(
                {"alg": "ES256", "kid": "evil", "typ": "at+jwt", "jku": "https://evil.example.com/jwks"},
                forge.claims_of(c.user_token),
                forge.foreign_key(),
            )
        ),
        "subject_forbidden_header",
    ),
    Case(
        "json-serialization-flattened",
        400,
        "invalid_request",
        subject(lambda c: jws_json(c, False)),
        "subject_malformed",
    ),
    Case(
        "json-serialization-general",
        400,
        "invalid_request",
        subject(lambda c: jws_json(c, True)),
        "subject_malformed",
    ),
    Case("jwe-to-our-key", 400, "invalid_request", subject(real_jwe), "subject_malformed"),
    Case("jwe-zip-bomb", 400, "invalid_request", subject(zip_bomb_jwe), "subject_malformed"),
    Case("jwe-pbes2-p2c-bomb", 400, "invalid_request", subject(p2c_bomb), "subject_malformed"),
    Case(
        "four-segments",
        400,
        "invalid_request",
        subject(lambda c: c.user_token + "." + c.user_token.split(".")[2]),
        "subject_malformed",
    ),
    Case(
        "duplicate-header-alg",
        400,
        "invalid_request",
        subject(raw_duplicate_header),
        "subject_duplicate_member",
    ),
    Case(
        "duplicate-claim-sub",
        400,
        "invalid_request",
        subject(raw_duplicate_claim("sub", "admin@example.com")),
        "subject_duplicate_member",
    ),
    Case(
        "duplicate-claim-aud",
        400,
        "invalid_request",
        subject(raw_duplicate_claim("aud", "https://agent1.example.com")),
        "subject_duplicate_member",
    ),
    Case(
        "nan-claim",
        400,
        "invalid_request",
        subject(
            lambda c: forge.sign_raw(
                forge.own_header(), json.dumps(forge.claims_of(c.user_token, exp=float("nan")))
            )
        ),
        "subject_malformed",
    ),
    Case(
        "header-not-an-object",
        400,
        "invalid_request",
        subject(lambda c: forge.sign_raw(["ES256"], forge.claims_of(c.user_token))),
        "subject_malformed",
    ),
    Case(
        "claims-not-an-object",
        400,
        "invalid_request",
        subject(lambda c: forge.sign_raw(forge.own_header(), [forge.claims_of(c.user_token)])),
        "subject_malformed",
    ),
    Case(
        "padded-base64",
        400,
        "invalid_request",
        subject(lambda c: c.user_token.split(".")[0] + "==." + ".".join(c.user_token.split(".")[1:])),
        "subject_malformed",
    ),
    Case(
        "standard-base64-alphabet",
        400,
        "invalid_request",
        subject(lambda c: c.user_token.replace("-", "+").replace("_", "/") + "+/"),
    ),
    Case(
        "token-64kb",
        413,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, pad="x" * 64 * 1024)),
        "request_too_large",
    ),
    Case(
        "token-3mb",
        413,
        "invalid_request",
        subject(lambda c: c.user_token.split(".")[0] + "." + "A" * 3 * 1024 * 1024 + ".x"),
        "request_too_large",
    ),
    Case(
        "token-over-max-token-bytes",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, pad="x" * 9000)),
        "subject_too_large",
    ),
    Case(
        "act-nested-10000",
        413,
        "invalid_request",
        subject(lambda c: forge.sign_raw(forge.own_header(), _with_raw_act(c.user_token, 10_000))),
        "request_too_large",
    ),
    Case(
        "act-nested-beyond-json-depth",
        400,
        "invalid_request",
        subject(lambda c: forge.sign_raw(forge.own_header(), _with_raw_act(c.user_token, 40))),
        "subject_too_deep",
    ),
    Case(
        "act-nested-beyond-delegation-depth",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, act=forge.nested_act(8))),
        "depth_exceeded",
    ),
    Case(
        "alg-with-zero-width-space",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, header=forge.own_header(alg="ES256\u200b"))),
        "subject_bad_alg",
    ),
]


def _with_raw_act(token: str, depth: int) -> str:
    body = json.dumps(forge.claims_of(token), separators=(",", ":"))
    return body[:-1] + ',"act":' + forge.deep_act_json(depth) + "}"


# -- authorization --------------------------------------------------------------------

AUTHORIZATION = [
    Case(
        "scope-beyond-subject",
        400,
        "invalid_scope",
        lambda c: Req(form(c.user_token, scope="tasks.read admin")),
        "scope_exceeds_subject",
    ),
    Case(
        "scope-known-but-not-granted",
        400,
        "invalid_scope",
        lambda c: Req(form(c.user_token, scope="profile")),
        "scope_exceeds_subject",
    ),
    Case(
        "scope-escalation-in-resigned-token",
        400,
        "invalid_scope",
        lambda c: Req(
            form(forge.issued(c.user_token, scope="tasks.read tasks.write profile"), scope="profile")
        ),
        "scope_not_permitted",
    ),
    Case(
        "unknown-audience",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, "https://unknown.example.com")),
        "target_unknown",
    ),
    Case(
        "audience-not-permitted",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, c.cast.resource_server)),
        "audience_not_permitted",
    ),
    Case(
        "one-of-two-audiences-not-permitted",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, [AGENT2, c.cast.resource_server])),
        "audience_not_permitted",
    ),
    Case(
        "audience-is-the-requester",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, c.uri("agent1"))),
        "audience_not_permitted",
    ),
    Case(
        "relative-resource",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, None, resource="/tasks")),
        "resource_malformed",
    ),
    Case(
        "fragment-resource",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, None, resource=AGENT2 + "/#frag")),
        "resource_malformed",
    ),
    Case(
        "empty-fragment-resource",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, None, resource=AGENT2 + "#")),
        "resource_malformed",
    ),
    Case(
        "resource-prefix-lookalike",
        400,
        "invalid_target",
        lambda c: Req(form(c.user_token, None, resource="https://agent2.example.com.evil.example/x")),
        "target_unknown",
    ),
    Case(
        "public-client",
        400,
        "unauthorized_client",
        lambda c: Req(form(c.user_token, client_id=c.clients["public-client"].client_id), None),
    ),
    Case(
        "confidential-client-not-an-agent",
        400,
        "unauthorized_client",
        lambda c: Req(form(c.user_token), "plain-client"),
        "not_an_agent",
    ),
    Case("no-client-authentication", 401, "invalid_client", lambda c: Req(form(c.user_token), None)),
    Case("wrong-client-secret", 401, "invalid_client", lambda c: Req(form(c.user_token), "wrong-secret")),
    Case(
        "requester-not-in-subject-aud",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, c.uri("mcp-server1")), "agent2"),
        "subject_wrong_audience",
    ),
    Case(
        "may-act-names-another-agent",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, may_act={"sub": c.uri("agent2")})),
        "may_act_mismatch",
    ),
    Case(
        "may-act-foreign-issuer",
        400,
        "invalid_request",
        subject(
            lambda c: forge.resign(c.user_token, may_act={"sub": c.uri("agent1"), "iss": "https://evil"})
        ),
        "may_act_mismatch",
    ),
    Case(
        "may-act-not-an-object",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, may_act=c.uri("agent1"))),
        "may_act_mismatch",
    ),
    Case(
        "impersonation-actor-token-is-the-user",
        400,
        "invalid_request",
        lambda c: Req(form(c.user_token, actor_token=c.user_token, actor_token_type=ACCESS_TOKEN_TYPE)),
        "actor_mismatch",
    ),
    Case(
        "impersonation-act-stripped",
        400,
        "invalid_request",
        lambda c: Req(form(forge.issued(c.chain[1], act=None), c.uri("mcp-server1")), "agent2"),
        # agent1's token without act, held by agent2: an unrecorded hop.
        "subject_foreign_client",
    ),
    Case(
        "impersonation-id-token-requested",
        400,
        "invalid_request",
        lambda c: Req(form(c.chain[1], c.uri("mcp-server1"), requested_token_type=ID_TOKEN_TYPE), "agent2"),
        "unsupported_token_type",
    ),
    Case(
        "act-malformed-string",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, act=c.uri("agent2"))),
        "subject_malformed_act",
    ),
    Case(
        "act-malformed-list",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, act=[{"sub": c.uri("agent2")}])),
        "subject_malformed_act",
    ),
    Case(
        "act-with-foreign-member",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, act={"sub": c.uri("agent2"), "scope": "admin"})),
        "subject_malformed_act",
    ),
    Case(
        "act-empty-object",
        400,
        "invalid_request",
        subject(lambda c: forge.resign(c.user_token, act={})),
        "subject_malformed_act",
    ),
    Case(
        "depth-limit",
        400,
        "invalid_request",
        subject(
            lambda c: forge.issued(
                c.user_token, act=act_of(AGENT2, "https://mcp-server1.example.com", AGENT2, AGENT2, AGENT2)
            )
        ),
        "depth_exceeded",
    ),
    Case(
        "cycle",
        400,
        "invalid_request",
        subject(lambda c: forge.issued(c.user_token, act=act_of("https://agent1.example.com"))),
        "cycle",
    ),
    Case(
        "cycle-deeper",
        400,
        "invalid_request",
        subject(lambda c: forge.issued(c.user_token, act=act_of(AGENT2, "https://agent1.example.com"))),
        "cycle",
    ),
    Case(
        "unknown-actor-in-chain",
        400,
        "invalid_request",
        subject(lambda c: forge.issued(c.user_token, act=act_of("https://ghost.example.com"))),
        "chain_actor_disabled",
    ),
    Case(
        "disabled-agent-mid-chain-quietly",
        400,
        "invalid_request",
        disable_quietly("agent1"),
        "chain_actor_disabled",
    ),
    Case(
        "disabled-agent-mid-chain",
        400,
        "invalid_request",
        disable_with_signal("agent1"),
        "subject_revoked",
    ),
    Case("revoked-ancestor", 400, "invalid_request", revoked_ancestor, "subject_revoked"),
    Case("deactivated-user", 400, "invalid_request", inactive_user, "subject_revoked"),
    Case(
        "disabled-requester",
        400,
        "unauthorized_client",
        lambda c: disabled_requester(c),
        "actor_disabled",
    ),
    Case(
        "upstream-not-permitted",
        400,
        "invalid_target",
        lambda c: Req(
            form(forge.issued(c.chain[1], aud=c.uri("mcp-server1")), c.cast.resource_server), "mcp-server1"
        ),
        "upstream_not_permitted",
    ),
]

# -- unicode tricks --------------------------------------------------------------------

UNICODE = [
    *[
        Case(
            f"aud-{label}",
            400,
            "invalid_target",
            lambda c, v=value: Req(form(c.user_token, v)),
            "target_unknown",
        )
        for label, value in (
            ("homoglyph", "https://\u0430gent2.example.com"),
            ("fullwidth", "\uff48\uff54\uff54\uff50\uff53://agent2.example.com"),
            ("combining-mark", AGENT2 + "\u0301"),
            ("nfd", "https://agent2.exam" + unicodedata.normalize("NFD", "\u00e9")[:1] + "\u0301ple.com"),
            ("trailing-space", AGENT2 + " "),
            ("leading-space", " " + AGENT2),
            ("zero-width", "https://agent2\u200b.example.com"),
            ("upper-case-host", "https://AGENT2.example.com"),
        )
    ],
    Case(
        "aud-nul",
        400,
        "invalid_request",
        lambda c: Req(urlencode(form(c.user_token, None)) + "&audience=" + quote(AGENT2) + "%00"),
        "bad_encoding",
    ),
    *[
        Case(
            f"iss-{label}",
            400,
            "invalid_request",
            subject(lambda c, v=value: forge.resign(c.user_token, iss=v)),
            "subject_bad_iss",
        )
        for label, value in (
            ("homoglyph", "http://t\u0435stserver"),
            ("nfd", NFD_ISSUER),
            ("trailing-space", "http://testserver "),
            ("nul", "http://testserver\u0000"),
            ("upper-case", "HTTP://TESTSERVER"),
        )
    ],
    *[
        Case(
            f"subject-aud-{label}",
            400,
            "invalid_request",
            subject(lambda c, v=value: forge.resign(c.user_token, aud=v)),
            "subject_wrong_audience",
        )
        for label, value in (
            ("homoglyph", "https://\u0430gent1.example.com"),
            ("trailing-space", "https://agent1.example.com "),
            ("nul", "https://agent1.example.com\u0000"),
            ("prefix", "https://agent1.example.com.evil"),
        )
    ],
    *[
        Case(
            f"client-id-{label}",
            401,
            "invalid_client",
            lambda c, f=transform: Req(
                form(c.user_token),
                None,
                headers={
                    "HTTP_AUTHORIZATION": basic(
                        f"{quote(f(c.cast['agent1'].client_id))}:{c.cast['agent1'].client_secret}".encode()
                    )
                },
            ),
        )
        for label, transform in (
            ("trailing-space", lambda s: s + " "),
            ("homoglyph", lambda s: s.replace("a", "\u0430", 1) if "a" in s else "\u0430" + s[1:]),
            ("fullwidth", lambda s: "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in s)),
            ("zero-width", lambda s: s[:3] + "\u200b" + s[3:]),
        )
    ],
    Case(
        "client-id-nul-in-basic",
        401,
        "invalid_client",
        lambda c: Req(
            form(c.user_token),
            None,
            headers={
                "HTTP_AUTHORIZATION": basic(
                    f"{c.cast['agent1'].client_id}%00:{c.cast['agent1'].client_secret}".encode()
                )
            },
        ),
        "bad_basic_credentials",
    ),
    Case(
        "client-id-nul-in-body",
        400,
        "invalid_request",
        lambda c: Req(
            urlencode(form(c.user_token, client_id=c.cast["agent1"].client_id)) + "%00",
            None,
        ),
        "bad_encoding",
    ),
]

FAMILIES = {
    "shape": REQUEST_SHAPE,
    "validity": TOKEN_VALIDITY,
    "jose": JOSE_ABUSE,
    "authz": AUTHORIZATION,
    "unicode": UNICODE,
}
MATRIX = [(family, case) for family, cases in FAMILIES.items() for case in cases]


def send(client: Any, req: Req, ctx: Context) -> Any:
    headers = dict(req.headers)
    if req.agent is not None:
        headers.setdefault("HTTP_AUTHORIZATION", ctx.clients[req.agent].basic)
    body = req.form if isinstance(req.form, (str, bytes)) else urlencode(req.form, doseq=True)
    path = "/o/token/" + (f"?{req.query}" if req.query else "")
    if req.method == "get":
        return client.get(path, **headers)
    return client.generic(req.method.upper(), path, body, content_type=req.content_type, **headers)


@pytest.mark.rfc("8693-2.2.2")
@pytest.mark.parametrize(("family", "case"), MATRIX, ids=[f"{f}:{c.id}" for f, c in MATRIX])
def test_refused(family, case, ctx, client):
    req = case.build(ctx)
    before_tokens, before_events = snapshot(), AuditEvent.objects.count()

    with tripwires() as tripped:
        response = send(client, req, ctx)
    assert tripped == [], "a hostile request reached the network, a decompressor or PBES2"

    body = assert_oauth_error(response, case.status, case.error)
    assert body.get("error_description")
    if case.status == 401:
        assert "WWW-Authenticate" in response
    assert snapshot() == before_tokens, "a refused request issued a token"
    events = list(AuditEvent.objects.order_by("-id")[:2])
    assert AuditEvent.objects.count() == before_events + 1, "exactly one audit event per attempt"
    event = events[0]
    assert event.decision == "denied"
    assert event.error == case.error
    if case.reason is not None:
        assert event.reason == case.reason
    recorded = json.dumps({k: v for k, v in vars(event).items() if not k.startswith("_")}, default=str)
    if "user_token" in vars(ctx):
        assert ctx.user_token.split(".")[2] not in recorded, "a token reached the audit trail"


def test_matrix_covers_every_family_with_several_cases():
    assert {family: len(cases) >= 5 for family, cases in FAMILIES.items()} == dict.fromkeys(FAMILIES, True)
    ids = [c.id for _, c in MATRIX]
    assert len(ids) == len(set(ids))
