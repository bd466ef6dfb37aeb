"""The per-process policy cache: keyed by a version row that database triggers change on
every write to the policy tables, so no write path can leave a process with stale policy.

The whole suite runs with the cache on and never clears it between tests, whose
transactions are rolled back: that the other policy tests pass is part of the proof.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth2_provider.models import get_application_model

from delegation_idp.models import DelegationRule, Party, PolicyVersion
from delegation_idp.provider import policy_store as rules
from delegation_idp.provider import policy_triggers as triggers

POLICY_TABLES = ("delegation_idp_party", "delegation_idp_delegationrule")


def version() -> str:
    return PolicyVersion.objects.get(pk=1).version


def policy_reads(queries: list[dict[str, Any]]) -> list[str]:
    """Reads of parties and rules for a decision. (The client's own party comes with the
    application row, and the issuance re-check reads party rows under a lock on purpose.)"""
    return [
        q["sql"]
        for q in queries
        if any(f'FROM "{table}' in q["sql"] for table in POLICY_TABLES)
        # the issuance re-check: one statement of labelled branches, on PostgreSQL led by
        # the branch that bounds its lock wait
        and not q["sql"].startswith(("SELECT 'party'", "SELECT 'lock_timeout'"))
    ]


@pytest.fixture
def agent1(cast: Any) -> Party:
    return Party.objects.get(uri=cast["agent1"].uri)


@pytest.fixture
def rule(agent1: Party) -> DelegationRule:
    return DelegationRule.objects.get(actor=agent1)


@pytest.fixture
def exchanged(cast: Any, user_token: str, exchange: Any):
    """agent1 -> agent2 exchange of the user token: the answer's (status, error)."""

    def run() -> tuple[int, str]:
        response = exchange("agent1", user_token, cast["agent2"].uri)
        return response.status_code, response.json().get("error", "")

    return run


# -- the triggers --------------------------------------------------------------------


@pytest.mark.django_db
def test_triggers_are_installed_by_the_migration() -> None:
    assert connection.vendor in triggers.VENDORS
    assert triggers.installed(connection)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "write",
    [
        pytest.param(
            lambda c: Party.objects.create(uri="https://new.example.com", name="n"), id="party insert"
        ),
        pytest.param(
            lambda c: Party.objects.filter(uri=c["agent2"].uri).update(name="x"), id="party bulk update"
        ),
        pytest.param(lambda c: Party.objects.filter(uri=c.resource_server).delete(), id="party delete"),
        pytest.param(lambda c: DelegationRule.objects.update(max_scope="tasks.read"), id="rule bulk update"),
        pytest.param(lambda c: DelegationRule.objects.all()[0].delete(), id="rule delete"),
        pytest.param(lambda c: DelegationRule.objects.all()[0].audiences.clear(), id="audiences link"),
        pytest.param(
            lambda c: DelegationRule.objects.all()[0].upstream_actors.add(Party.objects.all()[0]),
            id="upstream link",
        ),
        pytest.param(lambda c: DelegationRule.objects.all()[0].users.add(c.user), id="users link"),
        pytest.param(
            lambda c: DelegationRule.objects.all()[0].groups.add(Group.objects.create(name="g")),
            id="groups link",
        ),
        pytest.param(
            lambda c: Party.objects.get(uri=c.resource_server).clients.add(
                get_application_model().objects.create(name="legacy", client_type="confidential")
            ),
            id="client allow-list link",
        ),
        pytest.param(lambda c: Group.objects.create(name="unrelated"), id="unrelated table: no change"),
    ],
)
def test_every_write_to_a_policy_table_changes_the_version(cast: Any, write: Any, request: Any) -> None:
    before = version()
    write(cast)
    changed = version() != before
    assert changed is ("unrelated" not in request.node.callspec.id)


@pytest.mark.django_db
def test_removing_a_client_from_an_allow_list_changes_the_version(cast: Any) -> None:
    party = Party.objects.get(uri=cast.resource_server)
    party.clients.add(_legacy_client())
    before = version()
    Party.clients.through.objects.filter(party=party).delete()  # bulk, no signals
    assert version() != before


@pytest.mark.django_db
def test_raw_sql_changes_the_version_too(cast: Any) -> None:
    before = version()
    with connection.cursor() as cursor:
        cursor.execute('UPDATE "delegation_idp_delegationrule" SET "enabled" = %s', [False])
    assert version() != before


# -- the cache in use ----------------------------------------------------------------


def test_a_steady_exchange_reads_no_policy_rows(exchanged: Any) -> None:
    assert exchanged() == (200, "")
    with CaptureQueriesContext(connection) as ctx:
        assert exchanged() == (200, "")
    assert policy_reads(ctx.captured_queries) == []
    # the version row comes with the subject token's lineage row, not in a query of its own
    assert not [q for q in ctx.captured_queries if q["sql"].startswith('SELECT "version"')]


def test_the_first_exchange_after_a_change_reads_the_policy_again(exchanged: Any, agent1: Party) -> None:
    assert exchanged() == (200, "")
    Party.objects.filter(pk=agent1.pk).update(contact="ops@example.com")  # any write to a policy table
    with CaptureQueriesContext(connection) as ctx:
        assert exchanged() == (200, "")
    assert policy_reads(ctx.captured_queries), "the cache was not invalidated"


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        pytest.param(
            lambda r, p: DelegationRule.objects.filter(pk=r.pk).update(enabled=False),
            "invalid_target",
            id="rule disabled by bulk update",
        ),
        pytest.param(lambda r, p: r.delete(), "invalid_target", id="rule deleted"),
        pytest.param(lambda r, p: r.audiences.clear(), "invalid_target", id="audience removed"),
        pytest.param(lambda r, p: r.users.set([p]), "invalid_target", id="rule limited to another user"),
        pytest.param(
            lambda r, p: DelegationRule.objects.filter(pk=r.pk).update(max_scope="other"),
            "invalid_scope",
            id="scope narrowed by bulk update",
        ),
    ],
)
def test_a_cached_policy_never_outlives_an_edit(
    exchanged: Any, rule: DelegationRule, django_user_model: Any, edit: Any, error: str
) -> None:
    assert exchanged() == (200, "")
    assert exchanged() == (200, "")  # now served from the cache
    edit(rule, django_user_model.objects.create_user("someone-else"))
    assert exchanged() == (400, error)


def test_a_raw_sql_edit_is_seen_at_once(exchanged: Any, cast: Any) -> None:
    assert exchanged() == (200, "")
    target = Party.objects.get(uri=cast["agent2"].uri)
    with connection.cursor() as cursor:
        cursor.execute('UPDATE "delegation_idp_party" SET "enabled" = %s WHERE "id" = %s', [False, target.pk])
    assert exchanged() == (400, "invalid_target")


def test_a_rolled_back_edit_leaves_nothing_behind_in_the_cache(exchanged: Any, rule: DelegationRule) -> None:
    """The rolled-back transaction cached its own view under its own version; that
    version is random, so it can never be taken for a committed one."""
    assert exchanged() == (200, "")
    with pytest.raises(RuntimeError), transaction.atomic():
        DelegationRule.objects.filter(pk=rule.pk).update(enabled=False)
        assert exchanged() == (400, "invalid_target")
        raise RuntimeError("roll back")
    assert exchanged() == (200, "")
    DelegationRule.objects.filter(pk=rule.pk).update(max_scope="other")
    assert exchanged() == (400, "invalid_scope")


def test_the_cache_can_be_switched_off(exchanged: Any, settings: Any) -> None:
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "POLICY_CACHE": False}
    assert not rules.current().cached
    assert exchanged() == (200, "")
    with CaptureQueriesContext(connection) as ctx:
        assert exchanged() == (200, "")
    assert policy_reads(ctx.captured_queries), "POLICY_CACHE off must read the policy every time"


@pytest.fixture
def triggers_dropped(db: Any) -> Any:
    """One trigger dropped, inside the test's transaction (rolled back with it)."""
    rules.forget()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute('DROP TRIGGER delegation_idp_pv_delegationrule ON "delegation_idp_delegationrule"')
        else:
            cursor.execute("DROP TRIGGER delegation_idp_pv_delegationrule_update")
    yield
    rules.forget()


def test_without_its_triggers_the_cache_switches_itself_off(
    triggers_dropped: Any, exchanged: Any, rule: DelegationRule, caplog: Any
) -> None:
    assert not triggers.installed(connection)
    with caplog.at_level(logging.WARNING, logger="delegation_idp.provider.policy_store"):
        assert not rules.current().cached
    assert "delegation_idp.W003" in caplog.text
    assert exchanged() == (200, "")
    before = version()
    DelegationRule.objects.filter(pk=rule.pk).update(enabled=False)
    assert version() == before  # the dropped trigger did not fire ...
    assert exchanged() == (400, "invalid_target")  # ... and the edit is still seen


def test_the_system_check_reports_missing_triggers(triggers_dropped: Any) -> None:
    from delegation_idp.checks import check_policy_triggers

    messages = check_policy_triggers(databases=["default"])
    assert [m.id for m in messages] == ["delegation_idp.W003"]


@pytest.mark.django_db
def test_the_system_check_is_quiet_when_the_triggers_are_there() -> None:
    from delegation_idp.checks import check_policy_triggers

    assert check_policy_triggers(databases=["default"]) == []
    call_command("check", "--database", "default", "--fail-level", "WARNING")


# -- cached answers equal fresh answers ---------------------------------------------

EDITS = st.sampled_from(
    [
        "disable rule",
        "enable rule",
        "narrow scope",
        "widen scope",
        "drop audience",
        "add audience",
        "disable agent2",
        "enable agent2",
        "rename party",
        "new party",
        "allow-list a client",
        "drop the client allow-list",
    ]
)


def _legacy_client() -> Any:
    Application = get_application_model()
    return Application.objects.filter(name="legacy").first() or Application.objects.create(
        name="legacy", client_type="confidential", authorization_grant_type="client-credentials"
    )


def _apply(edit: str, cast: Any, rule: DelegationRule, counter: list[int]) -> None:
    agent2 = Party.objects.get(uri=cast["agent2"].uri)
    if edit == "disable rule":
        DelegationRule.objects.filter(pk=rule.pk).update(enabled=False)
    elif edit == "enable rule":
        DelegationRule.objects.filter(pk=rule.pk).update(enabled=True)
    elif edit == "narrow scope":
        DelegationRule.objects.filter(pk=rule.pk).update(max_scope="tasks.read")
    elif edit == "widen scope":
        DelegationRule.objects.filter(pk=rule.pk).update(max_scope=cast.scope)
    elif edit == "drop audience":
        rule.audiences.remove(agent2)
    elif edit == "add audience":
        rule.audiences.add(agent2)
    elif edit == "disable agent2":
        Party.objects.filter(pk=agent2.pk).update(enabled=False)
    elif edit == "enable agent2":
        Party.objects.filter(pk=agent2.pk).update(enabled=True)
    elif edit == "rename party":
        Party.objects.filter(pk=agent2.pk).update(name=f"renamed {counter[0]}")
    elif edit == "allow-list a client":
        agent2.clients.add(_legacy_client())
    elif edit == "drop the client allow-list":
        agent2.clients.clear()
    else:
        counter[0] += 1
        Party.objects.create(uri=f"https://p{counter[0]}.example.com", name="p")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(EDITS, min_size=1, max_size=6))
def test_cached_answers_always_equal_fresh_answers(cast: Any, edits: list[str]) -> None:
    """After any sequence of edits, what the cache answers is what the database says now."""
    agent1 = Party.objects.get(uri=cast["agent1"].uri)
    rule = DelegationRule.objects.filter(actor=agent1).first()
    assert rule is not None
    uris = {cast["agent2"].uri, cast.resource_server, "https://p1.example.com", "https://unknown.example.com"}
    counter = [0]
    with transaction.atomic():  # each example starts from the cast again
        for edit in edits:
            rules.current().rules_for(agent1)  # warm the cache with the state before the edit
            rules.current().parties(uris)
            rules.current().client_audiences(_legacy_client().pk)
            _apply(edit, cast, rule, counter)
            cached, fresh = rules.current(), rules.PolicyStore()
            assert cached.cached
            assert cached.rules_for(agent1) == fresh.rules_for(agent1)
            assert cached.parties(uris) == fresh.parties(uris)
            assert cached.resource_owners() == fresh.resource_owners()
            legacy = _legacy_client().pk
            assert cached.client_audiences(legacy) == fresh.client_audiences(legacy)
        transaction.set_rollback(True)


def test_the_system_check_is_quiet_before_the_migration_ran(triggers_dropped: Any) -> None:
    """``migrate`` runs the database checks before it migrates: a new database must not warn."""
    from django.db.migrations.recorder import MigrationRecorder

    from delegation_idp.checks import check_policy_triggers

    MigrationRecorder.Migration.objects.filter(app="delegation_idp", name="0002_policyversion").delete()
    assert check_policy_triggers(databases=["default"]) == []


def _disable_a_trigger() -> None:
    """Take one trigger out of service the way an operator or a migration could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses pending FK checks
            cursor.execute('ALTER TABLE "delegation_idp_party" DISABLE TRIGGER delegation_idp_pv_party')
        else:  # a migration that rebuilds the table on SQLite drops its triggers
            cursor.execute("DROP TRIGGER delegation_idp_pv_party_update")


def test_a_running_process_notices_triggers_taken_away(exchanged: Any, cast: Any, monkeypatch: Any) -> None:
    """The check is repeated (every TRIGGER_RECHECK_SECONDS): a warm cache is dropped once
    the triggers are gone, and edits are seen again."""
    rules.forget()
    assert exchanged() == (200, "")
    assert rules.current().cached
    _disable_a_trigger()
    assert not triggers.installed(connection)
    monkeypatch.setattr(rules, "TRIGGER_RECHECK_SECONDS", 0.0)
    assert not rules.current().cached
    Party.objects.filter(uri=cast["agent2"].uri).update(enabled=False)  # the version stays put
    assert exchanged() == (400, "invalid_target")
    rules.forget()


def test_install_policy_triggers_restores_them(db: Any) -> None:
    from delegation_idp.checks import check_policy_triggers

    rules.forget()
    _disable_a_trigger()
    assert [m.id for m in check_policy_triggers(databases=["default"])] == ["delegation_idp.W003"]
    out = io.StringIO()
    call_command("install_policy_triggers", stdout=out)
    assert "installed" in out.getvalue()
    assert triggers.installed(connection)
    assert check_policy_triggers(databases=["default"]) == []
    party = Party.objects.create(uri="https://p.example.com", name="p")
    before = version()
    Party.objects.filter(pk=party.pk).update(contact="x")  # the trigger that was gone fires again
    assert version() != before
    rules.forget()


def test_audiences_longer_than_any_party_uri_are_not_cached(
    exchanged: Any, exchange: Any, user_token: str
) -> None:
    assert exchanged() == (200, "")
    store = rules.current()
    long_uri = "https://x.example.com/" + "a" * 400
    response = exchange("agent1", user_token, long_uri)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
    assert store.parties([long_uri]) == {}
    assert long_uri not in rules._snapshots[connection.alias].parties
