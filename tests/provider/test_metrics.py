"""Prometheus metrics: what the token, introspection and revocation endpoints count, with which
labels, the signing-key gauges, and the protection of the metrics view."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from delegation_idp import TOKEN_EXCHANGE_GRANT, audit, signals
from delegation_idp.conf import DEFAULTS
from delegation_idp.core.reasons import Reason
from delegation_idp.lineage import revocation
from delegation_idp.models import SigningKey
from delegation_idp.provider import keys, metrics, policy_store
from tests.conftest import Agent
from tests.helpers import decode, with_idp

TOKEN = "metrics-scraper-token-for-tests-only-0123456789"
BEARER = f"Bearer {TOKEN}"
REQUESTS = "delegation_idp_requests_total"
BY_CLIENT = "delegation_idp_requests_by_client_total"
DURATION = "delegation_idp_request_duration_seconds"
DEPTH = "delegation_idp_exchange_chain_depth"
REVOKED = "delegation_idp_revoked_tokens_total"
POLICY = "delegation_idp_policy_cache_lookups_total"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(body: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


class Scrape:
    """Scrapes of the site's /metrics with the scraper's token; ``delta`` compares two."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def body(self) -> str:
        response = self.client.get("/metrics", HTTP_AUTHORIZATION=BEARER)
        assert response.status_code == 200, response.content
        return response.content.decode()

    def __call__(self) -> Samples:
        return parse(self.body())


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(autouse=True)
def fresh_metrics() -> Any:
    """Counts start at zero in every test (the instruments are per process)."""
    metrics.reset()
    yield
    metrics.reset()


@pytest.fixture
def metrics_on(settings: Any) -> Any:
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "METRICS": True, "METRICS_TOKEN": TOKEN}
    return settings


@pytest.fixture
def scrape(metrics_on: Any, client: Any, db: Any) -> Scrape:
    return Scrape(client)


def exchange_labels(result: str = "granted", reason: str = "allowed") -> dict[str, str]:
    return {"endpoint": "token", "grant": TOKEN_EXCHANGE_GRANT, "result": result, "reason": reason}


# -- what is counted -------------------------------------------------------------------------


def test_exchanges_and_refusals_are_counted_once_by_grant_result_and_reason(
    scrape, cast, clients, issue_user_token, exchange, token_endpoint, introspect, revoke_endpoint, agent_for
):
    before = scrape()
    tokens = [issue_user_token()]
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        response = exchange(name, tokens[-1], target)
        assert response.status_code == 200, response.content
        tokens.append(response.json()["access_token"])
    assert exchange("agent1", tokens[0], "https://unknown.example.com").status_code == 400
    assert token_endpoint({"grant_type": "client_credentials"}, clients["wrong-secret"]).status_code == 401
    assert token_endpoint({"grant_type": "made-up-grant"}, cast["agent1"]).status_code == 400
    assert token_endpoint({"scope": "tasks.read"}, cast["agent1"]).status_code == 400
    assert introspect(tokens[3], agent_for(tokens[3])).json()["active"] is True
    assert revoke_endpoint(tokens[3], agent_for(tokens[3])).status_code == 200
    after = scrape()

    assert delta(before, after, REQUESTS, **exchange_labels()) == 3
    assert delta(before, after, REQUESTS, **exchange_labels("denied", "target_unknown")) == 1
    code = {"endpoint": "token", "grant": "authorization_code"}
    assert delta(before, after, REQUESTS, **code, result="granted", reason="allowed") == 1
    cc = {"endpoint": "token", "grant": "client_credentials"}
    assert delta(before, after, REQUESTS, **cc, result="denied", reason="invalid_client") == 1
    other = {"endpoint": "token", "grant": "other", "result": "denied"}
    assert delta(before, after, REQUESTS, **other, reason="unsupported_grant_type") == 1
    assert delta(before, after, REQUESTS, **other, reason="missing_parameter") == 1
    for endpoint in ("introspection", "revocation"):
        labels = {"endpoint": endpoint, "grant": "", "result": "granted", "reason": "allowed"}
        assert delta(before, after, REQUESTS, **labels) == 1
    # Ten requests, each counted once, in one series.
    total = sum(after[key] - before.get(key, 0.0) for key in after if key[0] == REQUESTS)
    assert total == 10

    timed = {"endpoint": "token", "grant": TOKEN_EXCHANGE_GRANT, "result": "granted"}
    assert delta(before, after, f"{DURATION}_count", **timed) == 3
    assert delta(before, after, f"{DURATION}_sum", **timed) > 0
    assert delta(before, after, f"{DURATION}_bucket", **timed, le="+Inf") == 3
    # The three exchanges issued tokens one, two and three actors deep.
    assert delta(before, after, f"{DEPTH}_count") == 3
    assert delta(before, after, f"{DEPTH}_sum") == 1 + 2 + 3
    assert [delta(before, after, f"{DEPTH}_bucket", le=le) for le in ("1.0", "2.0", "3.0")] == [1, 2, 3]


def test_no_label_carries_a_client_id_a_token_or_a_value_the_request_chose(
    scrape, cast, user_token, exchange, token_endpoint
):
    """Off by default: with METRICS_CLIENT_ID_LABELS unset nothing names a client, and a
    grant type or client id a request invents never becomes a label value."""
    granted = exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"]
    invented = Agent("x", "invented-client-id-7f3a", "secret", "", "")
    token_endpoint({"grant_type": "invented-grant-9c1d"}, invented)
    token_endpoint({"grant_type": "client_credentials"}, invented)
    body = scrape.body()
    claims = decode(granted)[1]
    for secret in (
        *(agent.client_id for agent in cast.agents.values()),
        "invented-client-id-7f3a",
        "invented-grant-9c1d",
        claims["jti"],
        claims["sub"],
        granted,
    ):
        assert secret not in body
    assert not series(parse(body), BY_CLIENT)


def test_client_id_labels_name_only_clients_that_proved_their_id(
    scrape, metrics_on, cast, user_token, exchange, token_endpoint
):
    metrics_on.DELEGATION_IDP = {**metrics_on.DELEGATION_IDP, "METRICS_CLIENT_ID_LABELS": True}
    agent1 = cast["agent1"].client_id
    before = scrape()
    exchange("agent1", user_token, cast["agent2"].uri)
    exchange("agent1", user_token, "https://unknown.example.com")  # refused by the policy
    invented = Agent("x", "invented-client-id-7f3a", "secret", "", "")
    token_endpoint({"grant_type": "client_credentials"}, invented)  # refused: no such client
    wrong = Agent("agent1", agent1, "not-its-secret", "", "")
    token_endpoint({"grant_type": "client_credentials"}, wrong)  # refused: a real id, unproven
    after = scrape()

    refused = exchange_labels("denied", "target_unknown")
    assert delta(before, after, BY_CLIENT, **exchange_labels(), client_id=agent1) == 1
    assert delta(before, after, BY_CLIENT, **refused, client_id=agent1) == 1
    unproven = {"endpoint": "token", "grant": "client_credentials", "result": "denied"}
    assert delta(before, after, BY_CLIENT, **unproven, reason="invalid_client", client_id="") == 2
    labelled = series(after, BY_CLIENT)
    assert {s["client_id"] for s in labelled} <= {"", *(a.client_id for a in cast.agents.values())}
    assert not any(s["client_id"] == agent1 and s["reason"] == "invalid_client" for s in labelled)


def _labelled(counter: Any) -> list[dict[str, str]]:
    return [sample.labels for family in counter.collect() for sample in family.samples]


@settings(max_examples=60, deadline=None)
@given(
    event=st.one_of(st.sampled_from(sorted(metrics.ENDPOINTS)), st.text(max_size=30)),
    grant_type=st.one_of(st.sampled_from(sorted(metrics.GRANTS)), st.text(max_size=60)),
    reason=st.one_of(st.sampled_from([r.value for r in Reason]), st.text(max_size=30)),
    decision=st.sampled_from(["granted", "denied", ""]),
    client_id=st.text(min_size=1, max_size=40),
)
def test_label_values_stay_within_their_sets_whatever_the_record_holds(
    event, grant_type, reason, decision, client_id
):
    metrics.reset()
    record = audit.Attempt(
        event=event, grant_type=grant_type, reason=reason, decision=decision, client_id=client_id
    )
    with with_idp(METRICS=True, METRICS_CLIENT_ID_LABELS=True):
        metrics.on_request_audited(audit.Attempt, record=record, seconds=0.004)
    counted = metrics.instruments()
    reasons = {r.value for r in Reason} | {"other"}
    for labels in _labelled(counted.requests) + _labelled(counted.requests_by_client):
        assert labels["endpoint"] in {*metrics.ENDPOINTS.values(), "other"}
        assert labels["grant"] in {*metrics.GRANTS, "other", ""}
        assert labels["result"] in {"granted", "denied"}
        assert labels["reason"] in reasons
    proven = decision == "granted" or (
        reason in metrics._REASONS and metrics._REASONS[reason].family in metrics.PROVEN_FAMILIES
    )
    assert metrics.proven_client_id(record) == (client_id if proven else "")


def test_revoked_tokens_are_counted_by_cause(
    scrape, chain, revoke_endpoint, agent_for, django_capture_on_commit_callbacks
):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        # RFC 7009 by its client: the token and the one exchanged from it.
        assert revoke_endpoint(chain[2], agent_for(chain[2])).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(decode(chain[0])[1]["jti"], reason="admin")  # the rest
    after = scrape()
    assert delta(before, after, REVOKED, cause="revoked") == 2
    assert delta(before, after, REVOKED, cause="admin") == 2


def test_policy_look_ups_count_hits_misses_and_uncached_reads(scrape, metrics_on, cast, user_token, exchange):
    policy_store.forget()
    before = scrape()
    exchange("agent1", user_token, cast["agent2"].uri)
    first = scrape()
    exchange("agent1", user_token, cast["agent2"].uri)
    second = scrape()
    assert delta(before, first, POLICY, result="miss") > 0
    assert delta(first, second, POLICY, result="miss") == 0
    assert delta(first, second, POLICY, result="hit") > 0

    metrics_on.DELEGATION_IDP = {**metrics_on.DELEGATION_IDP, "POLICY_CACHE": False}
    exchange("agent1", user_token, cast["agent2"].uri)
    third = scrape()
    assert delta(second, third, POLICY, result="uncached") > 0
    assert delta(second, third, POLICY, result="hit") == delta(second, third, POLICY, result="miss") == 0


def test_counting_costs_an_exchange_no_database_query(scrape, cast, user_token, exchange):
    from tests.perf.test_queries import EXCHANGE_QUERIES, queries_of

    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200
    response, queries = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    assert response.status_code == 200
    assert len(queries) == EXCHANGE_QUERIES, "\n".join(queries)
    assert value(scrape(), REQUESTS, **exchange_labels()) == 2


def test_nothing_is_counted_while_metrics_are_off(cast, user_token, exchange, token_endpoint):
    assert DEFAULTS["METRICS"] is False
    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200
    assert token_endpoint({"grant_type": "made-up-grant"}, cast["agent1"]).status_code == 400
    exposed = generate_latest(REGISTRY).decode()
    assert "delegation_idp_" not in exposed  # no instrument was even made


def test_a_failing_receiver_neither_fails_the_request_nor_goes_unlogged(cast, user_token, exchange, caplog):
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.request_audited.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="delegation_idp.audit"):
            response = exchange("agent1", user_token, cast["agent2"].uri)
    finally:
        signals.request_audited.disconnect(broken)
    assert response.status_code == 200
    assert "request_audited receiver" in caplog.text and "receiver bug" in caplog.text


def test_counting_that_fails_never_fails_an_exchange(
    metrics_on, cast, user_token, exchange, monkeypatch, caplog
):
    """A multiprocess directory that is not one: every count raises; the exchange is issued."""

    def unwritable() -> Any:
        raise FileNotFoundError("/run/prometheus/counter_1234.db")

    monkeypatch.setattr(metrics, "instruments", unwritable)
    with caplog.at_level(logging.ERROR):
        response = exchange("agent1", user_token, cast["agent2"].uri)
    assert response.status_code == 200, response.content
    assert "a policy look-up was not counted" in caplog.text
    assert "request_audited receiver" in caplog.text


# -- the signing keys, read at each scrape ---------------------------------------------------------


def key_gauges(collector: metrics.SigningKeyCollector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for family in collector.collect():
        for sample in family.samples:
            state = sample.labels.get("state")
            out[f"{sample.name}/{state}" if state else sample.name] = sample.value
    return out


def test_key_age_and_rotation_due_follow_the_key_life_cycle(db, settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "KEY_ROTATION_PERIOD": 86400}
    t0 = timezone.now().replace(microsecond=0) - timedelta(hours=10)
    keys.new_key(SigningKey.CURRENT, t0)
    now = t0 + timedelta(hours=10)
    gauges = key_gauges(metrics.SigningKeyCollector(now=lambda: now))
    assert gauges["delegation_idp_signing_key_age_seconds"] == 10 * 3600
    assert gauges["delegation_idp_signing_key_rotation_due_seconds"] == 14 * 3600
    assert gauges["delegation_idp_signing_keys/current"] == 1
    assert gauges["delegation_idp_signing_keys/next"] == 0

    # The next key, published, takes over at its activation time.
    keys.new_key(SigningKey.NEXT, now, activates_at=now + timedelta(minutes=5))
    gauges = key_gauges(metrics.SigningKeyCollector(now=lambda: now))
    assert gauges["delegation_idp_signing_key_rotation_due_seconds"] == 300
    assert gauges["delegation_idp_signing_keys/next"] == 1

    # Beat stopped: past its takeover, the due time goes negative.
    late = now + timedelta(hours=1)
    assert key_gauges(metrics.SigningKeyCollector(now=lambda: late))[
        "delegation_idp_signing_key_rotation_due_seconds"
    ] == -(3600 - 300)


def test_the_scrape_reports_the_keys_and_survives_a_database_failure(scrape, monkeypatch, caplog):
    keys.ensure_current_key()
    assert value(scrape(), "delegation_idp_signing_keys", state="current") == 1

    def down(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("server closed the connection")

    monkeypatch.setattr(SigningKey.objects, "values_list", down)
    with caplog.at_level(logging.WARNING, logger="delegation_idp.provider.metrics"):
        samples = scrape()
    assert not series(samples, "delegation_idp_signing_keys")
    assert "signing keys not read (DatabaseError)" in caplog.text


# -- the view ----------------------------------------------------------------------------------


def test_the_view_is_off_by_default(client, db):
    response = client.get("/metrics", HTTP_AUTHORIZATION=BEARER)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", "Bearer", f"bearer  {TOKEN}x"],
)
def test_a_request_without_the_token_is_forbidden(metrics_on, client, db, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics", **headers)
    assert response.status_code == 403
    assert response["Cache-Control"] == "no-store"
    assert b"delegation_idp" not in response.content


def test_the_token_opens_the_view_never_cached(metrics_on, client, db):
    response = client.get("/metrics", HTTP_AUTHORIZATION=BEARER)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=BEARER).status_code == 405


def test_openmetrics_is_served_when_asked_for(metrics_on, client, db):
    response = client.get(
        "/metrics", HTTP_AUTHORIZATION=BEARER, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_the_address_allow_list(settings, client, db):
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "METRICS": True,
        "METRICS_ALLOWED_ADDRESSES": ["10.1.0.0/16", "192.0.2.7"],
    }
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    # A forwarded address counts only from a trusted proxy.
    spoofed = {"REMOTE_ADDR": "198.51.100.1", "HTTP_X_FORWARDED_FOR": "10.1.2.3"}
    assert client.get("/metrics", **spoofed).status_code == 403
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "TRUSTED_PROXIES": ["198.51.100.1"]}
    assert client.get("/metrics", **spoofed).status_code == 200


def test_with_both_protections_set_both_apply(metrics_on, client, db):
    metrics_on.DELEGATION_IDP = {**metrics_on.DELEGATION_IDP, "METRICS_ALLOWED_ADDRESSES": ["127.0.0.1"]}
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=BEARER).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.1", HTTP_AUTHORIZATION=BEARER).status_code == 403


@pytest.mark.parametrize("addresses", [[], ["not-an-address"], ["10.0.0.0/33"]])
def test_on_without_a_working_protection_answers_no_one(settings, client, db, addresses):
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "METRICS": True,
        "METRICS_TOKEN": None,
        "METRICS_ALLOWED_ADDRESSES": addresses,
    }
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer ").status_code == 403


# -- the dashboard and the docs ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_grafana_dashboard_queries_only_metrics_the_site_exposes(
    scrape, cast, user_token, exchange, django_capture_on_commit_callbacks
):
    token = exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"]
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(decode(token)[1]["jti"], reason="admin")
    exposed = {name for name, _labels in scrape()}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for query in queries for name in re.findall(r"\bdelegation_idp_\w+", query)}
    assert len(queries) >= 10 and named
    assert named <= exposed, named - exposed
    families = {
        re.sub(r"_(total|bucket|sum|count|created)$", "", name)
        for name in exposed
        if "delegation_idp_" in name
    }
    assert {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in named} == families - {
        "delegation_idp_requests_by_client",  # off by default: not on the dashboard
    }


def test_every_metric_is_explained_in_the_deployment_guide(scrape, cast, user_token, exchange):
    exchange("agent1", user_token, cast["agent2"].uri)
    guide = (ROOT / "docs" / "deployment.md").read_text()
    families = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for name, _labels in scrape()
        if name.startswith("delegation_idp_") and not name.endswith("_created")
    }
    assert len(families) >= 7
    for family in families | {BY_CLIENT}:
        assert f"`{family}`" in guide, family
