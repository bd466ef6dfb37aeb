"""``manage.py listagents``: every party with its rules and its last activity."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from delegation_idp.models import AuditEvent, Party
from delegation_idp.provider.agents import register_party
from tests.cli.conftest import SCOPE, run


def by_uri(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["uri"]: row for row in rows}


def test_parties_with_rules_and_last_activity(parties: Any) -> None:
    rule = run("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user", "--json").json()[
        "rule"
    ]
    token = parties.user_token(parties.alpha)
    assert parties.exchange(parties.alpha, token, parties.store.uri).status_code == 400  # not permitted
    assert parties.exchange(parties.alpha, token, parties.beta.uri).status_code == 200
    latest = AuditEvent.objects.filter(client_id=parties.alpha.client_id).order_by("-created", "-id").first()
    assert latest is not None and latest.decision == "granted"

    rows = by_uri(run("listagents", "--json").json())
    assert list(rows) == sorted(rows) == [parties.alpha.uri, parties.beta.uri, parties.store.uri]
    alpha = rows[parties.alpha.uri]
    assert {k: alpha[k] for k in ("name", "kind", "enabled", "client_id", "registration")} == {
        "name": "Alpha",
        "kind": "agent",
        "enabled": True,
        "client_id": parties.alpha.client_id,
        "registration": "admin",
    }
    assert alpha["rules"] == [rule]
    assert alpha["last_activity"] == {
        "at": latest.created.isoformat(),
        "event": latest.event,
        "decision": "granted",
        "reason": latest.reason,
    }
    beta, store = rows[parties.beta.uri], rows[parties.store.uri]
    assert beta["rules"] == [] and beta["last_activity"] is None
    assert store["client_id"] == "" and store["last_activity"] is None


def blocks(out: str) -> dict[str, str]:
    """The text output's block of each party, by display name."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            name = line.split(" <")[0]
            found[name] = ""
        found[name] += line + "\n"
    return found


def test_text_output_says_which_agents_can_exchange_nothing(parties: Any) -> None:
    args = ("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user")
    rule_id = run(*args, "--description", "hand over", "--json").json()["rule"]["id"]
    Party.objects.filter(uri=parties.beta.uri).update(enabled=False)
    found = blocks(run("listagents").stdout)
    assert list(found) == ["Alpha", "Beta", "Store"]
    assert found["Alpha"].startswith(
        f"Alpha <{parties.alpha.uri}>: agent, enabled, client {parties.alpha.client_id}"
    )
    assert (
        f'rule {rule_id} "hand over": to {parties.beta.uri}; scope {SCOPE}; from a user token'
        in found["Alpha"]
    )
    assert "last activity: none" in found["Alpha"]
    assert "agent, DISABLED" in found["Beta"]
    assert "no rules: every exchange it asks for is refused (no_rule)" in found["Beta"]
    assert found["Store"] == f"Store <{parties.store.uri}>: resource server (audience only), enabled\n"


def test_kind_filter(parties: Any) -> None:
    rows = run("listagents", "--kind", "resource_server", "--json").json()
    assert [row["uri"] for row in rows] == [parties.store.uri]


def test_the_query_count_does_not_grow_with_the_parties(parties: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            run("listagents", "--json")
        return len(captured)

    run("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user")
    few = queries()
    for n in range(4):
        register_party(f"https://extra{n}.example.com", f"Extra {n}")
        run("createrule", f"Extra {n}", "--audience", "Store", "--scope", SCOPE, "--from-user")
    assert queries() == few
