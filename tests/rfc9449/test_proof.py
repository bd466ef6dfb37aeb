"""Every check of RFC 9449 section 4.3, one refusal each, with the reason it is refused for."""

from __future__ import annotations

import time

import pytest

from delegation_idp import jose
from delegation_idp.core.reasons import Family, Reason
from delegation_idp.rfc9449 import Proof, ProofError
from tests.rfc9449.conftest import TOKEN, URL
from tests.support.dpop import Prover

pytestmark = pytest.mark.rfc("9449-4.3")


def refused(check, *proofs: str, **options) -> ProofError:
    with pytest.raises(ProofError) as caught:
        check(*proofs, **options)
    return caught.value


def test_a_well_formed_proof_is_accepted_with_its_keys_thumbprint(check, prover):
    proof = prover.proof("GET", URL, jti="j-1")
    accepted = check(proof)
    assert isinstance(accepted, Proof)
    assert accepted.jkt == prover.jkt == jose.thumbprint(prover.jwk)
    assert accepted.jti == "j-1" and accepted.nonce is None


@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "PS256", "RS256"])
def test_every_offered_algorithm_is_accepted(check, alg):
    prover = Prover(alg)
    assert check(prover.proof("GET", URL)).jkt == prover.jkt


def test_every_reason_is_in_the_catalogue_of_proof_refusals():
    """The codes check_proof raises map to members of the PROOF family, answered with the
    RFC 9449 error codes."""
    for code in (
        "dpop_missing",
        "dpop_multiple_proofs",
        "dpop_too_large",
        "dpop_bad_typ",
        "dpop_bad_alg",
        "dpop_bad_key",
        "dpop_bad_signature",
        "dpop_forbidden_header",
        "dpop_bad_jti",
        "dpop_wrong_method",
        "dpop_wrong_url",
        "dpop_bad_iat",
        "dpop_stale",
        "dpop_wrong_ath",
        "dpop_nonce_required",
        "dpop_nonce_stale",
        "dpop_replayed",
    ):
        member = Reason.for_proof_error(code)
        assert member.value == code and member.family is Family.PROOF
        assert member.error in ("invalid_dpop_proof", "use_dpop_nonce")


# -- check 1: one proof, of bounded size ---------------------------------------------------------


def test_no_proof_is_refused(check):
    assert refused(check).reason == "dpop_missing"


def test_two_dpop_headers_are_refused(check, prover):
    first, second = prover.proof("GET", URL), prover.proof("GET", URL)
    assert refused(check, first, second).reason == "dpop_multiple_proofs"
    # A WSGI server joins repeated headers with a comma into one value.
    assert refused(check, f"{first},{second}").reason == "dpop_multiple_proofs"
    # Neither took its place in the replay store: each alone is still good.
    assert check(first).jkt == prover.jkt


def test_an_oversized_proof_is_refused_before_it_is_decoded(check, prover):
    big = prover.proof("GET", URL, padding="x" * 5000)
    assert refused(check, big).reason == "dpop_too_large"
    assert refused(check, "a" * 4097).reason == "dpop_too_large"  # not even a JWS


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b", "a.b.c.d.e", "e30.e30.e30", "%%%.e30.e30"])
def test_a_proof_that_is_not_a_compact_jws_is_refused(check, garbage):
    assert refused(check, garbage).code == "invalid_dpop_proof"


# -- checks 2 to 7: the header and the signature -------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/dpop+jwt", "DPOP+JWT", None])
def test_typ_must_be_exactly_dpop_jwt(check, prover, typ):
    proof = prover.forged(prover.claims("GET", URL), typ=typ)
    assert refused(check, proof).reason == "dpop_bad_typ"


def test_alg_none_is_refused(check, prover):
    assert refused(check, prover.forged(prover.claims("GET", URL), alg="none")).reason == "dpop_bad_alg"


def test_a_symmetric_alg_is_refused_even_if_configured(check, prover):
    proof = prover.forged(prover.claims("GET", URL), alg="HS256")
    assert refused(check, proof).reason == "dpop_bad_alg"
    changes = {"algorithms": ("HS256", "ES256")}
    assert refused(check, proof, policy_changes=changes).reason == "dpop_bad_alg"


def test_an_alg_off_the_allow_list_is_refused(check):
    proof = Prover("RS256").proof("GET", URL)
    assert refused(check, proof, policy_changes={"algorithms": ("ES256",)}).reason == "dpop_bad_alg"


def test_a_header_accepted_once_is_judged_again_under_another_allow_list(check, prover):
    """Checked headers are remembered per process (a client's proofs share one): the memory is
    of the header under the allow-list it passed, never of the header alone."""
    assert check(prover.proof("GET", URL)).jkt == prover.jkt
    later = prover.proof("GET", URL)
    assert refused(check, later, policy_changes={"algorithms": ("EdDSA",)}).reason == "dpop_bad_alg"
    assert check(later).jkt == prover.jkt


def test_a_jwk_with_private_members_is_refused(check, prover):
    proof = prover.forged(prover.claims("GET", URL), jwk=prover.private_jwk)
    assert "d" in prover.private_jwk
    assert refused(check, proof).reason == "dpop_bad_key"


@pytest.mark.parametrize(
    "jwk",
    [None, "a string", {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256"}, {"kty": "EC", "x": 1}],
)
def test_a_missing_or_unusable_jwk_is_refused(check, prover, jwk):
    proof = prover.forged(prover.claims("GET", URL), jwk=jwk)
    assert refused(check, proof).reason == "dpop_bad_key"


@pytest.mark.parametrize(
    ("alg", "key_alg"),
    [("ES256", "RS256"), ("ES256", "ES384"), ("ES384", "ES256"), ("EdDSA", "ES256"), ("RS256", "ES256")],
)
def test_a_key_of_another_type_or_curve_than_the_alg_is_refused(check, prover, alg, key_alg):
    other = Prover(key_alg)
    proof = prover.forged(prover.claims("GET", URL), alg=alg, jwk=other.jwk)
    assert refused(check, proof).reason == "dpop_bad_alg"


def test_a_jwk_whose_own_alg_differs_is_refused(check, prover):
    proof = prover.forged(prover.claims("GET", URL), jwk={**prover.jwk, "alg": "ES384"})
    assert refused(check, proof).reason == "dpop_bad_alg"


@pytest.mark.parametrize("member", [{"kid": "k1"}, {"x5c": ["MII"]}, {"jku": "https://evil.example/jwks"}])
def test_a_header_naming_another_key_is_refused(check, prover, member):
    proof = prover.forged(prover.claims("GET", URL), **member)
    assert refused(check, proof).reason == "dpop_forbidden_header"


def test_a_signature_by_another_key_than_the_jwk_is_refused(check, prover):
    thief = Prover()
    proof = prover.forged(prover.claims("GET", URL), signer=thief)
    assert refused(check, proof).reason == "dpop_bad_signature"


def test_a_tampered_signature_or_payload_is_refused(check, prover):
    header, payload, signature = prover.proof("GET", URL).split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert refused(check, f"{header}.{payload}.{flipped}").reason == "dpop_bad_signature"
    other_payload = prover.proof("POST", URL).split(".")[1]
    assert refused(check, f"{header}.{other_payload}.{signature}").reason == "dpop_bad_signature"


# -- checks 8 and 9: htm and htu ------------------------------------------------------------------


@pytest.mark.parametrize("htm", ["POST", "get", "HEAD", ""])
def test_a_proof_for_another_method_is_refused(check, prover, htm):
    assert refused(check, prover.proof(htm, URL)).reason == "dpop_wrong_method"


@pytest.mark.parametrize(
    "htu",
    [
        URL + "?page=2",  # query ignored
        URL + "#top",  # fragment ignored
        "HTTPS://API.Example.COM/tasks/",  # scheme and host case
        "https://api.example.com:443/tasks/",  # the default port
    ],
)
def test_htu_is_compared_without_query_fragment_case_or_default_port(check, prover, htu):
    assert check(prover.proof("GET", htu)).jkt == prover.jkt


def test_the_requests_own_query_is_ignored_too(check, prover):
    assert check(prover.proof("GET", URL), url=URL + "?q=1").jkt == prover.jkt
    assert check(prover.proof("GET", "http://h.example:80/x"), url="http://H.example/x").jkt == prover.jkt


@pytest.mark.parametrize(
    "htu",
    [
        "https://api.example.com/tasks",  # another path (no trailing slash)
        "https://api.example.com/Tasks/",  # path case matters
        "https://api.example.com/tasks/1",
        "https://other.example.com/tasks/",
        "https://api.example.com:8443/tasks/",
        "http://api.example.com/tasks/",
        "/tasks/",  # not absolute
        "",
        7,
        None,
    ],
)
def test_a_proof_for_another_url_is_refused(check, prover, htu):
    claims = {**prover.claims("GET", URL), "htu": htu}
    proof = prover.forged({k: v for k, v in claims.items() if v is not None})
    assert refused(check, proof).reason == "dpop_wrong_url"


def test_a_relative_htu_is_refused_even_where_the_url_is_not_absolute(check, prover):
    """A caller that cannot name the request's URL passes an empty one; no htu matches it."""
    for htu in ("/tasks/", "tasks", "https://api.example.com/tasks/"):
        for url in ("", "/tasks/", "tasks"):
            assert refused(check, prover.proof("GET", htu), url=url).reason == "dpop_wrong_url"


# -- checks 10 and 11: iat, and the jti ----------------------------------------------------------


def test_iat_within_the_window_is_accepted_at_both_edges(check, prover):
    now = time.time()
    assert check(prover.proof("GET", URL, iat=now - 60), now=now).jkt  # max_age back
    assert check(prover.proof("GET", URL, iat=now + 5), now=now).jkt  # leeway ahead


def test_an_old_proof_is_refused(check, prover):
    now = time.time()
    assert refused(check, prover.proof("GET", URL, iat=now - 61), now=now).reason == "dpop_stale"
    assert refused(check, prover.proof("GET", URL, iat=0), now=now).reason == "dpop_stale"


def test_a_proof_from_the_future_is_refused(check, prover):
    now = time.time()
    assert refused(check, prover.proof("GET", URL, iat=now + 6), now=now).reason == "dpop_stale"


@pytest.mark.parametrize("iat", ["1700000000", True, [1], {"t": 1}])
def test_a_non_numeric_iat_is_refused(check, prover, iat):
    assert refused(check, prover.proof("GET", URL, iat=iat)).reason == "dpop_bad_iat"


@pytest.mark.parametrize("jti", ["", 12, ["a"], "j" * 257])
def test_a_missing_or_odd_jti_is_refused(check, prover, jti):
    proof = prover.forged({**prover.claims("GET", URL), "jti": jti})
    assert refused(check, proof).reason == "dpop_bad_jti"
    without = {k: v for k, v in prover.claims("GET", URL).items() if k != "jti"}
    assert refused(check, prover.forged(without)).reason == "dpop_bad_jti"


@pytest.mark.rfc("9449-11.1")
def test_a_replayed_proof_is_refused(check, prover):
    proof = prover.proof("GET", URL)
    assert check(proof).jkt == prover.jkt
    assert refused(check, proof).reason == "dpop_replayed"
    # The same jti under another key is another proof.
    assert check(Prover().proof("GET", URL, jti=proof_jti(proof))).jti == proof_jti(proof)


def proof_jti(proof: str) -> str:
    return jose.unverified_claims(proof, max_bytes=4096, max_json_depth=4)["jti"]


def test_only_a_proof_that_passed_every_other_check_takes_a_place_in_the_store(check, prover):
    """The replay store is consulted last: a proof refused for its ath (the wrong token
    presented with it) is still good with its own token."""
    proof = prover.proof("GET", URL, token=TOKEN)
    assert refused(check, proof, access_token=TOKEN + "x").reason == "dpop_wrong_ath"
    assert check(proof, access_token=TOKEN).jkt == prover.jkt
    assert refused(check, proof, access_token=TOKEN).reason == "dpop_replayed"


# -- check 12: ath ---------------------------------------------------------------------------------


def test_ath_must_be_the_presented_tokens_hash(check, prover):
    assert check(prover.proof("GET", URL, token=TOKEN), access_token=TOKEN).jkt == prover.jkt
    no_ath = prover.proof("GET", URL)
    assert refused(check, no_ath, access_token=TOKEN).reason == "dpop_wrong_ath"
    other = prover.proof("GET", URL, token="another.access.token")
    assert refused(check, other, access_token=TOKEN).reason == "dpop_wrong_ath"
    padded = prover.proof("GET", URL, ath=jose.token_hash(TOKEN) + "=")
    assert refused(check, padded, access_token=TOKEN).reason == "dpop_wrong_ath"


# -- nonces (sections 8 and 9) ------------------------------------------------------------------------


@pytest.mark.rfc("9449-9")
def test_a_required_nonce_missing_or_stale_asks_for_the_current_one(check, prover):
    from delegation_idp.rfc9449 import NonceIssuer

    issuer = NonceIssuer(b"secret", lifetime=10, label="resource")
    now = 1_000_000.0
    changes = {"accepts_nonce": lambda nonce: issuer.accepts(nonce, now)}

    missing = refused(check, prover.proof("GET", URL, iat=now), now=now, policy_changes=changes)
    assert (missing.reason, missing.code) == ("dpop_nonce_required", "use_dpop_nonce")
    for stale in (issuer.current(now - 20), issuer.current(now + 10), "f.abc", 12):
        proof = prover.proof("GET", URL, iat=now, nonce=stale)
        error = refused(check, proof, now=now, policy_changes=changes)
        assert (error.reason, error.code) == ("dpop_nonce_stale", "use_dpop_nonce")
    # The current and the previous window's nonces are accepted.
    for good in (issuer.current(now), issuer.current(now - 10)):
        accepted = check(prover.proof("GET", URL, iat=now, nonce=good), now=now, policy_changes=changes)
        assert accepted.nonce == good


@pytest.mark.rfc("9449-9")
@pytest.mark.parametrize("mac", ["\u00e9", "abc\u00e9def", "\u4e00" * 24])
def test_a_nonce_of_other_characters_is_stale_not_an_error(check, prover, mac):
    """The current window with a MAC of non-ASCII characters: refused as stale, not a 500
    (``hmac.compare_digest`` raises ``TypeError`` on such a str)."""
    from delegation_idp.rfc9449 import NonceIssuer

    issuer = NonceIssuer(b"secret", lifetime=10)
    now = time.time()
    changes = {"accepts_nonce": lambda value: issuer.accepts(value, now)}
    window = issuer.current(now).split(".")[0]
    proof = prover.proof("GET", URL, iat=now, nonce=f"{window}.{mac}")
    error = refused(check, proof, now=now, policy_changes=changes)
    assert (error.reason, error.code) == ("dpop_nonce_stale", "use_dpop_nonce")


def test_a_nonce_is_not_needed_where_none_is_required(check, prover):
    assert check(prover.proof("GET", URL, nonce="whatever")).nonce == "whatever"
