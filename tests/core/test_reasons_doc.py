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
