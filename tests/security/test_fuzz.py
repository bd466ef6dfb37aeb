"""Property-based fuzzing (issue 8, point 3): the token endpoint's form input and the
``act`` chain parser. Never a 500; never a token without a valid subject token and an
allowing rule."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from delegation_idp.core import policy
from delegation_idp.core.actchain import ActChainError, build_act, chain_from_act, nest
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.helpers import decode, snapshot

from . import forge

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
AGENT1 = "https://agent1.example.com"
AGENT2 = "https://agent2.example.com"
ALLOWED_STATUSES = {200, 400, 401, 405, 413, 415, 429}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

PARAMETERS = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "audience",
    "resource",
    "scope",
    "requested_token_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
]
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


def token_mutations(valid: str) -> st.SearchStrategy[str]:
    """The valid subject token, or something close to it that must not pass."""
    head, payload, sig = valid.split(".")
    return st.one_of(
        st.just(valid),
        st.builds(
            lambda i, ch: valid[:i] + ch + valid[i + 1 :],
            st.integers(0, len(valid) - 1),
            st.sampled_from("A_-.=+/ "),
        ),
        st.builds(lambda n: valid[: max(0, len(valid) - n)], st.integers(1, 40)),
        st.just(f"{head}.{payload}."),
        st.just(f"{head}.{forge.segment({'sub': 'admin'})}.{sig}"),
        st.just(valid + "." + sig),
        text,
    )


def value_for(name: str, valid: str) -> st.SearchStrategy[Any]:
    choices: dict[str, list[Any]] = {
        "grant_type": [GRANT, "client_credentials", "authorization_code", "refresh_token"],
        "subject_token_type": [ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt"],
        "actor_token_type": [ACCESS_TOKEN_TYPE],
        "audience": [
            AGENT2,
            "https://mcp-server1.example.com",
            "https://resource-server.example.com",
            AGENT1,
        ],
        "resource": [AGENT2 + "/tasks", "/relative", AGENT2 + "#f"],
        "scope": ["tasks.read", "tasks.read tasks.write", "admin", "tasks.read admin"],
        "requested_token_type": [ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:id_token"],
    }
    if name in ("subject_token", "actor_token"):
        return token_mutations(valid)
    return st.one_of(st.sampled_from(choices.get(name, ["x"])), text)


@st.composite
def forms(draw: Any, valid: str) -> list[tuple[str, str]]:
    """A valid exchange, a valid exchange with one thing changed, or a random form."""
    base = [
        ("grant_type", GRANT),
        ("subject_token", valid),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("audience", AGENT2),
    ]
    base += draw(st.sampled_from([[], [], [("scope", "tasks.read")], [("resource", AGENT2)]]))
    mode = draw(st.sampled_from(["valid", "one-off", "one-off", "random", "random"]))
    if mode == "valid":
        return base
    if mode == "one-off":
        index = draw(st.integers(0, len(base) - 1))
        name, value = base[index]
        change = draw(st.sampled_from(["drop", "repeat", "replace", "add"]))
        if change == "drop":
            return base[:index] + base[index + 1 :]
        if change == "repeat":
            return [*base, (name, draw(st.sampled_from([value, draw(value_for(name, valid))])))]
        if change == "replace":
            return [*base[:index], (name, draw(value_for(name, valid))), *base[index + 1 :]]
        extra = draw(st.sampled_from(PARAMETERS))
        return [*base, (extra, draw(value_for(extra, valid)))]
    pairs: list[tuple[str, str]] = []
    for name in PARAMETERS:
        if name in ("grant_type", "subject_token", "subject_token_type", "audience"):
            present = draw(st.integers(0, 9)) > 0  # usually present
        else:
            present = draw(st.integers(0, 9)) == 0  # occasionally present
        for _ in range(draw(st.sampled_from([1, 1, 1, 1, 2])) if present else 0):
            pairs.append((name, draw(value_for(name, valid))))
    pairs += draw(st.lists(st.tuples(text, text), max_size=3))
    return pairs


@pytest.mark.django_db
@FUZZ
@given(data=st.data())
def test_form_fuzzing_never_500_and_never_an_unjustified_token(data, cast, user_token, token_endpoint):
    pairs = data.draw(forms(user_token))
    authenticated = data.draw(st.sampled_from(["agent1", "agent1", "agent1", "agent2", None]))
    raw_tail = data.draw(st.sampled_from(["", "", "", "", "", "&%zz", "&a=%E9", "&&&", "&=", "&x"]))
    body = urlencode(pairs) + raw_tail
    before = snapshot()

    response = token_endpoint(body, cast[authenticated] if authenticated else None)
    event(f"status {response.status_code}")

    assert response.status_code in ALLOWED_STATUSES, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    if response.status_code != 200:
        assert snapshot() == before
        assert "access_token" not in response.json()
        return
    # A token was issued: it must be justified by the valid subject token and agent1's rule.
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    assert authenticated == "agent1"
    assert values["grant_type"] == [GRANT]
    assert values["subject_token"] == [user_token]
    targets = values.get("audience", []) + values.get("resource", [])
    # RFC 8707: a resource URL means the party whose identity URI it starts with.
    assert targets and all(t == AGENT2 or t.startswith(AGENT2 + "/") for t in targets), targets
    issued = decode(response.json()["access_token"])[1]
    assert issued["sub"] == "user@example.com"
    assert issued["aud"] == AGENT2
    assert issued["act"] == {"sub": AGENT1}
    assert set(issued["scope"].split()) <= {"tasks.read", "tasks.write"}
    if "scope" in values:
        assert set(issued["scope"].split()) == set(values["scope"][0].split())
    # Exactly one token: its lineage row (an exchanged token has no AccessToken row).
    assert snapshot() == (before[0], before[1] + 1)


@pytest.mark.django_db
@FUZZ
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "text/plain"]),
)
def test_raw_body_fuzzing_never_500(body, content_type, cast, token_endpoint):
    before = snapshot()
    response = token_endpoint(body, cast["agent1"], content_type=content_type)
    assert response.status_code in ALLOWED_STATUSES - {200}, (response.status_code, response.content[:200])
    assert response.json()["error"]
    assert snapshot() == before


# -- the act-chain parser ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["sub", "act", "iss", "client_id", "scope", "x"]), children, max_size=4
        )
    ),
    max_leaves=30,
)
actor = st.text(min_size=1, max_size=30)


@given(act=json_values, max_depth=st.integers(1, 8))
def test_act_parser_accepts_only_bounded_chains_of_actor_objects(act, max_depth):
    try:
        chain = chain_from_act(act, max_depth=max_depth)
    except ActChainError:
        return
    assert isinstance(chain, tuple)
    assert len(chain) <= max_depth
    assert all(isinstance(a, str) and a for a in chain)
    if act is not None:
        # What was accepted is exactly the nested structure the chain describes, minus
        # identity members the chain does not carry.
        node = act
        for name in chain:
            assert node["sub"] == name
            node = node.get("act")
        assert node is None


@given(chain=st.lists(actor, max_size=8), new=actor)
def test_nest_and_parse_round_trip(chain, new):
    chain = tuple(chain)
    assert chain_from_act(nest(chain), max_depth=8) == chain
    rebuilt = chain_from_act(build_act(new, nest(chain)), max_depth=9)
    assert rebuilt == (new, *chain)


@given(chain=st.lists(actor, min_size=6, max_size=20))
def test_parser_refuses_chains_beyond_the_limit(chain):
    with pytest.raises(ActChainError):
        chain_from_act(nest(chain), max_depth=5)


# -- the policy: no allowing rule, no token --------------------------------------------------

uris = st.sampled_from([AGENT1, AGENT2, "https://mcp.example.com", "https://rs.example.com"])
scopes = st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=3)


@st.composite
def rules(draw: Any) -> policy.RuleView:
    return policy.RuleView(
        id=draw(st.integers(1, 50)),
        actor=draw(uris),
        audiences=draw(st.frozensets(uris, max_size=3)),
        max_scope=draw(scopes),
        max_depth=draw(st.none() | st.integers(1, 5)),
        upstream=draw(st.frozensets(uris, max_size=2)),
        direct_from_user=draw(st.booleans()),
        enabled=draw(st.booleans()),
    )


@given(
    requester=uris,
    chain=st.lists(uris, max_size=4),
    targets=st.lists(uris, max_size=2),
    subject_scope=scopes,
    requested=st.none() | scopes,
    rule_list=st.lists(rules(), max_size=4),
)
def test_policy_never_allows_without_a_matching_rule(
    requester, chain, targets, subject_scope, requested, rule_list
):
    from datetime import UTC, datetime

    now = datetime(2030, 1, 1, tzinfo=UTC)
    parties = {
        u: policy.PartyView(uri=u)
        for u in (AGENT1, AGENT2, "https://mcp.example.com", "https://rs.example.com")
    }
    ctx = policy.ExchangeContext(
        requester=parties[requester],
        chain=tuple(chain),
        targets=tuple(dict.fromkeys(targets)),
        subject_scope=subject_scope,
        requested_scope=requested,
        now=now,
        parties=parties,
    )
    decision = policy.evaluate(ctx, rule_list, policy.Limits())
    if not decision.allowed:
        assert decision.error in {"invalid_request", "invalid_target", "invalid_scope", "unauthorized_client"}
        return
    assume(decision.rule_id is not None)
    matching = [r for r in rule_list if r.id == decision.rule_id and r.actor == requester and r.enabled]
    assert matching, "allowed without an enabled rule of the requester"
    rule = matching[0]
    assert set(ctx.targets) <= rule.audiences and ctx.targets
    assert decision.granted_scope and decision.granted_scope <= rule.max_scope & subject_scope
    assert (rule.direct_from_user and not chain) or (chain and chain[0] in rule.upstream)
    assert requester not in chain
    assert len(chain) + 1 <= 5
