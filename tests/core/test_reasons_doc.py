"""The catalogue of reason codes and its page in docs/ say the same."""

from __future__ import annotations

from pathlib import Path

from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Family, Reason, markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "reasons.md"


def test_the_docs_table_is_the_catalogue():
    text = DOC.read_text()
    table = text.split("<!-- reasons:begin -->\n", 1)[1].split("\n<!-- reasons:end -->", 1)[0]
    assert table == markdown_table()
    for reason in Reason:
        assert f"| `{reason.value}` |" in table


def test_every_refusal_has_one_class_status_and_description():
    codes = [reason.value for reason in Reason]
    assert len(codes) == len(set(codes))
    for reason in Reason:
        assert reason.description and reason.family in Family
        if reason is Reason.ALLOWED:
            assert reason.error == "" and reason.status == 200
            continue
        exc = refusal(reason)
        assert exc.error == reason.error and exc.status == reason.status and exc.reason is reason
        assert exc.as_dict() == {"error": reason.error, "error_description": reason.description}


def test_the_policy_page_lists_the_policy_reasons_with_their_errors():
    """docs/policy.md explains when each policy reason applies; its error column is the
    catalogue's, and it lists every reason the evaluator (and the exchange's first question,
    may this client exchange at all) can answer with."""
    import re

    from delegation_idp.core.policy import OUTCOMES

    page = (DOC.parent / "policy.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| (`[a-z_]+`|–) \|", page, re.M)
    listed = {Reason(code): error.strip("`") for code, error in rows}
    assert set(listed) == OUTCOMES | {Reason.NOT_AN_AGENT}
    for reason, error in listed.items():
        assert error == (reason.error or "–"), reason
