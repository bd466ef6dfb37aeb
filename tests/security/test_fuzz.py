"""Property-based fuzzing of the token endpoint's form input and raw body: never a 500; never
a token without a valid subject token and an allowing rule. The pure parts (the ``act`` parser,
the policy) have their properties in tests/core."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
