"""Properties of the ``act`` claim (RFC 8693 section 4.1) in ``delegation_idp.core.actchain``:
the parser accepts only bounded chains of actor objects, and building then reading a chain
gives it back with the new actor outermost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_idp.core.actchain import ActChainError, build_act, chain_from_act, delegate, nest

pytestmark = pytest.mark.rfc("8693-4.1")

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


@given(chain=st.lists(actor, max_size=7), new=actor)
def test_delegation_puts_the_new_actor_outermost_and_keeps_the_rest(chain, new):
    """``delegate`` and ``build_act`` agree: the nested claim of the delegated chain is the new
    actor wrapped around the subject token's claim, unchanged."""
    chain = tuple(chain)
    delegated = delegate(chain, new)
    assert delegated == (new, *chain)
    assert nest(delegated) == build_act(new, nest(chain))
    assert chain_from_act(nest(delegated), max_depth=8) == delegated
