"""The dry run of a redemption (leg 2): the admin's *Try a delegation* page and
``manage.py explain --redeem`` say what the ``jwt-bearer`` grant would answer for an ID-JAG of
a trusted issuer with the claims an admin types, and why; they ask the real redemption's own
decisions (:mod:`delegation_idp.rfc7523.decisions`) in the same order, and only read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp.models import AuditEvent, ExternalIdentity, Party, TokenLineage, TrustedIssuer
from delegation_idp.provider import dry_run
from delegation_idp.rfc7523.decisions import just_in_time_username
from tests.cli.conftest import run
from tests.idjag.conftest import ENTERPRISE

pytestmark = pytest.mark.usefixtures("trusted")

TRY_URL = "/admin/delegation_idp/party/try/"
SCOPE = "tasks.read tasks.write"


def app(cast: Any, agent: str = "agent2") -> Any:
    return get_application_model().objects.get(client_id=cast[agent].client_id)


def dry(
    cast: Any, trusted: TrustedIssuer, *, agent: str = "agent2", **params: Any
) -> dry_run.RedemptionDryRun:
    """A dry run of agent2 redeeming an ID-JAG like ``make_id_jag``'s, ``params`` overriding."""
    arguments: dict[str, Any] = {
        "sub": cast.user.get_username(),
        "asserted_resources": (cast.resource_server,),
        "asserted_scope": SCOPE,
    }
    arguments.update(params)
    return dry_run.try_redemption(TrustedIssuer.objects.get(pk=trusted.pk), app(cast, agent), **arguments)


def state() -> tuple[int, ...]:
    """Everything a dry run must leave as it was."""
    return (
        get_user_model().objects.count(),
        ExternalIdentity.objects.count(),
        get_access_token_model().objects.count(),
        TokenLineage.objects.count(),
        AuditEvent.objects.count(),
    )


def disable_issuer(cast: Any, trusted: TrustedIssuer) -> None:
    TrustedIssuer.objects.filter(pk=trusted.pk).update(enabled=False)


def disable_client(cast: Any, trusted: TrustedIssuer) -> None:
    Party.objects.filter(uri=cast["agent2"].uri).update(enabled=False)


def require_dpop(cast: Any, trusted: TrustedIssuer) -> None:
    Party.objects.filter(uri=cast["agent2"].uri).update(dpop_required=True)


def staff_user(cast: Any, trusted: TrustedIssuer) -> None:
    get_user_model().objects.filter(pk=cast.user.pk).update(is_staff=True)


def no_such_field(cast: Any, trusted: TrustedIssuer) -> None:
    TrustedIssuer.objects.filter(pk=trusted.pk).update(user_field="no_such_field")


def just_in_time(cast: Any, trusted: TrustedIssuer) -> None:
    TrustedIssuer.objects.filter(pk=trusted.pk).update(user_mapping=TrustedIssuer.JUST_IN_TIME)


def nothing(cast: Any, trusted: TrustedIssuer) -> None:
    pass


# (id, setup, the ID-JAG's claims (make_id_jag's overrides), the request's parameters, the
#  redeeming agent, the OAuth error ("" allowed), the reason)
Case = tuple[str, Callable[[Any, TrustedIssuer], None], dict[str, Any], dict[str, Any], str, str, str]
CASES: list[Case] = [
    ("allowed", nothing, {}, {}, "agent2", "", "allowed"),
    ("allowed-narrowed", nothing, {}, {"scope": "tasks.read"}, "agent2", "", "allowed"),
    ("just-in-time", just_in_time, {"sub": "enterprise-42"}, {}, "agent2", "", "allowed"),
    ("untrusted-issuer", disable_issuer, {}, {}, "agent2", "invalid_grant", "id_jag_untrusted_issuer"),
    (
        "client-not-allowed",
        nothing,
        {"client_id": "agent1"},
        {},
        "agent1",
        "unauthorized_client",
        "id_jag_client_not_allowed",
    ),
    (
        "resource-malformed",
        nothing,
        {},
        {"resource": "not-a-uri"},
        "agent2",
        "invalid_target",
        "resource_malformed",
    ),
    (
        "resource-mismatch",
        nothing,
        {},
        {"resource": "https://agent1.example.com"},
        "agent2",
        "invalid_target",
        "id_jag_resource_mismatch",
    ),
    ("no-resource", nothing, {"resource": None}, {}, "agent2", "invalid_target", "id_jag_no_resource"),
    (
        "target-unknown",
        nothing,
        {"resource": "https://unknown.example.org/mcp"},
        {},
        "agent2",
        "invalid_target",
        "target_unknown",
    ),
    (
        "resource-not-allowed",
        nothing,
        {"resource": "mcp-server1"},
        {},
        "agent2",
        "invalid_target",
        "id_jag_resource_not_allowed",
    ),
    (
        "scope-empty",
        nothing,
        {"scope": "tasks.read"},
        {"scope": "tasks.write"},
        "agent2",
        "invalid_scope",
        "id_jag_scope_empty",
    ),
    ("client-disabled", disable_client, {}, {}, "agent2", "unauthorized_client", "actor_disabled"),
    ("dpop-required", require_dpop, {}, {}, "agent2", "invalid_dpop_proof", "dpop_required"),
    ("unknown-user", nothing, {"sub": "nobody-here"}, {}, "agent2", "invalid_grant", "id_jag_unknown_user"),
    ("staff-user", staff_user, {}, {}, "agent2", "invalid_grant", "id_jag_unknown_user"),
    ("no-such-user-field", no_such_field, {}, {}, "agent2", "invalid_grant", "id_jag_unknown_user"),
]
IDS = [c[0] for c in CASES]


def claims_for(cast: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """``make_id_jag``'s overrides with the cast's names resolved."""
    claims = dict(overrides)
    if "client_id" in claims:
        claims["client_id"] = cast[claims["client_id"]].client_id
    if claims.get("resource") == "mcp-server1":
        claims["resource"] = cast["mcp-server1"].uri
    return claims


def dry_for(
    cast: Any, trusted: TrustedIssuer, claims: dict[str, Any], request: dict[str, Any], agent: str
) -> Any:
    """The dry run of the redemption of an ID-JAG with ``claims`` (as ``make_id_jag`` takes
    them) and a request with ``request``'s parameters."""
    resource = claims.get("resource", cast.resource_server)
    requested = request.get("resource")
    return dry(
        cast,
        trusted,
        agent=agent,
        sub=claims.get("sub", cast.user.get_username()),
        asserted_resources=() if resource is None else (resource,),
        asserted_scope=claims.get("scope", SCOPE),
        requested_resources=() if requested is None else (requested,),
        requested_scope=request.get("scope"),
    )


@pytest.mark.parametrize(
    ("case", "setup", "claims", "request_params", "agent", "error", "reason"), CASES, ids=IDS
)
def test_each_answer_of_the_dry_run(cast, trusted, case, setup, claims, request_params, agent, error, reason):
    setup(cast, trusted)
    before = state()
    answer = dry_for(cast, trusted, claims_for(cast, claims), request_params, agent)
    assert (answer.reason.value, answer.error or "") == (reason, error)
    assert answer.allowed is (reason == "allowed")
    assert state() == before, "a dry run changed something"


@pytest.mark.parametrize(
    ("case", "setup", "claims", "request_params", "agent", "error", "reason"), CASES, ids=IDS
)
def test_the_dry_run_and_the_real_redemption_agree(
    cast, trusted, redeem, make_id_jag, case, setup, claims, request_params, agent, error, reason
):
    """The same situation, dry-run and then redeemed with a validly signed ID-JAG: the same
    reason (the audit record's), the same error, and when allowed the same scope and audience."""
    setup(cast, trusted)
    claims = claims_for(cast, claims)
    answer = dry_for(cast, trusted, claims, request_params, agent)
    response = redeem(make_id_jag(**claims), agent=agent, **request_params)
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.event == "id_jag_redemption"
    assert answer.reason.value == (event.reason or "allowed") == reason
    if reason == "allowed":
        assert response.status_code == 200, response.content
        lineage = TokenLineage.objects.get(jti=event.jti)
        summary = answer.summary()
        assert summary["granted_scope"] == response.json()["scope"]
        assert summary["audience"] == list(event.granted_audience)
        expected_user = (
            ExternalIdentity.objects.get(issuer=trusted, subject=claims["sub"]).user
            if summary["user"] == "new"
            else cast.user
        )
        assert lineage.user_id == expected_user.pk
        assert summary["username"] == expected_user.get_username()
    else:
        assert response.status_code != 200
        assert response.json()["error"] == answer.error == error


def test_the_allowed_answer_says_what_would_be_issued(cast, trusted):
    answer = dry(cast, trusted, requested_scope="tasks.read admin")
    summary = answer.summary()
    assert summary["allowed"] and summary["reason"] == "allowed" and summary["error"] is None
    assert summary["audience"] == [cast.resource_server]
    assert summary["owners"] == [cast.resource_server]
    assert summary["granted_scope"] == "tasks.read"  # the requested and the asserted, intersected
    assert (summary["user"], summary["username"]) == ("existing", cast.user.get_username())
    assert summary["issuer"] == ENTERPRISE and summary["client_id"] == cast["agent2"].client_id


def test_without_a_scope_parameter_all_the_asserted_scope_is_granted(cast, trusted):
    assert dry(cast, trusted).summary()["granted_scope"] == SCOPE


def test_a_bound_request_satisfies_a_party_that_requires_dpop(cast, trusted):
    require_dpop(cast, trusted)
    assert dry(cast, trusted).reason.value == "dpop_required"
    assert dry(cast, trusted, dpop=True).allowed


def test_an_existing_user_by_another_claim(cast, trusted):
    TrustedIssuer.objects.filter(pk=trusted.pk).update(subject_claim="email", user_field="email")
    get_user_model().objects.filter(pk=cast.user.pk).update(email="user@enterprise.example.com")
    assert dry(cast, trusted, sub="opaque-123").reason.value == "id_jag_unknown_user"
    summary = dry(cast, trusted, sub="opaque-123", claim_value="user@enterprise.example.com").summary()
    assert (summary["reason"], summary["user"], summary["username"]) == (
        "allowed",
        "existing",
        cast.user.get_username(),
    )


def test_the_reason_there_is_no_local_user(cast, trusted):
    assert "no user's username equals the claim" in dry(cast, trusted, sub="nobody").summary()["user_why"]
    staff_user(cast, trusted)
    assert "staff" in dry(cast, trusted).summary()["user_why"]


def test_just_in_time_creates_nothing_and_names_the_user_it_would_create(cast, trusted, redeem, make_id_jag):
    just_in_time(cast, trusted)
    before = state()
    summary = dry(cast, trusted, sub="enterprise-42").summary()
    assert state() == before, "the dry run created a user or a link"
    assert not ExternalIdentity.objects.exists()
    assert summary["user"] == "new"
    assert summary["username"] == just_in_time_username(trusted, "enterprise-42")
    # Redeemed for real, the user is created; a dry run then names it as linked.
    assert redeem(make_id_jag(sub="enterprise-42")).status_code == 200
    linked = ExternalIdentity.objects.get(subject="enterprise-42").user
    assert linked.get_username() == summary["username"]
    again = dry(cast, trusted, sub="enterprise-42").summary()
    assert (again["user"], again["username"]) == ("linked", linked.get_username())
    get_user_model().objects.filter(pk=linked.pk).update(is_active=False)
    inactive = dry(cast, trusted, sub="enterprise-42").summary()
    assert inactive["reason"] == "id_jag_unknown_user" and "inactive" in inactive["user_why"]


def test_a_dry_run_spends_no_jti(cast, trusted, redeem, make_id_jag):
    """Nothing is remembered: the real redemption after a dry run is a first use."""
    dry(cast, trusted)
    assert redeem(make_id_jag(jti=dry_run.DRY_RUN)).status_code == 200


# -- the admin page ----------------------------------------------------------------------------


def page_query(cast: Any, trusted: TrustedIssuer, **params: Any) -> dict[str, Any]:
    query = {
        "request_kind": "redeem",
        "trusted_issuer": trusted.pk,
        "client": app(cast).pk,
        "id_jag_sub": cast.user.get_username(),
        "id_jag_resources": cast.resource_server,
        "id_jag_scope": SCOPE,
    }
    query.update(params)
    return query


def test_the_page_offers_a_redemption(admin_client, cast, trusted):
    response = admin_client.get(TRY_URL)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'value="redeem"' in content
    assert "jwt-bearer redemption of an ID-JAG from a trusted issuer (RFC 7523)" in content
    for name in (
        "trusted_issuer",
        "client",
        "id_jag_sub",
        "id_jag_resources",
        "resources",
        "id_jag_scope",
        "dpop",
    ):
        assert f'name="{name}"' in content, name
    assert "signature" in content  # what a dry run does not check is said


def test_the_page_answers_an_allowed_redemption(admin_client, cast, trusted):
    just_in_time(cast, trusted)
    before = state()
    response = admin_client.get(
        TRY_URL, page_query(cast, trusted, id_jag_sub="enterprise-7", requested_scope="tasks.read")
    )
    assert response.status_code == 200
    assert response.context["form"].is_valid(), response.context["form"].errors
    result = response.context["result"]
    assert (result["reason"], result["granted_scope"], result["user"]) == ("allowed", "tasks.read", "new")
    content = response.content.decode()
    assert 'id="try-reason">allowed<' in content
    assert 'id="try-scope">tasks.read<' in content
    assert "a new user would be created just in time" in content
    assert cast.resource_server in content
    assert state() == before, "the page changed something"


def test_the_page_answers_a_refused_redemption(admin_client, cast, trusted):
    response = admin_client.get(TRY_URL, page_query(cast, trusted, resources="https://agent1.example.com"))
    content = response.content.decode()
    assert 'id="try-reason">id_jag_resource_mismatch<' in content
    assert 'id="try-error">invalid_target<' in content
    response = admin_client.get(TRY_URL, page_query(cast, trusted, id_jag_sub="nobody-here"))
    assert 'id="try-reason">id_jag_unknown_user<' in response.content.decode()
    assert "no user&#x27;s username equals the claim" in response.content.decode()


@pytest.mark.parametrize("missing", ["trusted_issuer", "client", "id_jag_sub"])
def test_the_page_needs_an_issuer_a_client_and_a_sub(admin_client, cast, trusted, missing):
    response = admin_client.get(TRY_URL, page_query(cast, trusted, **{missing: ""}))
    form = response.context["form"]
    assert not form.is_valid() and missing in form.errors
    assert response.context["result"] is None
    # The other kinds' fields are not asked for a redemption.
    assert not {"actor", "audiences", "subject_scope"} & set(form.errors)


def test_the_other_kinds_still_need_their_fields(admin_client, cast, trusted):
    form = admin_client.get(TRY_URL, {"request_kind": "exchange"}).context["form"]
    assert {"actor", "audiences", "subject_scope"} <= set(form.errors)
    assert not {"trusted_issuer", "client", "id_jag_sub"} & set(form.errors)


def test_a_non_staff_user_cannot_reach_the_page(client, cast, trusted):
    client.force_login(cast.user)
    response = client.get(TRY_URL, page_query(cast, trusted))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# -- manage.py explain --redeem -----------------------------------------------------------------


def test_explain_dry_runs_a_redemption(cast, trusted):
    before = state()
    args = ("explain", cast["agent2"].client_id, "--redeem", ENTERPRISE, "--sub", cast.user.get_username())
    data = run(*args, "--id-jag-resource", cast.resource_server, "--id-jag-scope", SCOPE, "--json").json()
    assert (data["reason"], data["granted_scope"], data["user"]) == ("allowed", SCOPE, "existing")
    refused = run(*args, "--id-jag-scope", SCOPE, "--json").json()
    assert (refused["reason"], refused["error"]) == ("id_jag_no_resource", "invalid_target")
    text = run(
        *args,
        "--id-jag-resource",
        cast.resource_server,
        "--id-jag-scope",
        SCOPE,
        "--requested-scope",
        "tasks.read",
    ).stdout
    assert text.startswith("allowed: the jwt-bearer grant would issue an access token\n")
    assert "  granted scope: tasks.read\n" in text
    assert f"  local user: existing user {cast.user.get_username()}\n" in text
    assert (
        "refused: id_jag_scope_empty (the token endpoint answers invalid_scope)"
        in run(*args, "--id-jag-resource", cast.resource_server, "--requested-scope", "tasks.read").stdout
    )
    with pytest.raises(CommandError, match="--sub: This field is required"):
        run("explain", cast["agent2"].client_id, "--redeem", ENTERPRISE)
    with pytest.raises(CommandError, match="No trusted issuer"):
        run("explain", cast["agent2"].client_id, "--redeem", "https://idp.nowhere.example.org", "--sub", "x")
    assert state() == before


def test_explain_still_needs_an_audience_without_redeem(cast):
    with pytest.raises(CommandError, match="--audience: This field is required"):
        run("explain", cast["agent1"].uri, "--scope", SCOPE)


def test_a_redemption_needs_the_permission_to_view_users(client, cast, trusted, django_user_model):
    """The answer names local users (who matches a claim value, staff or not): an admin who may
    view parties but not users gets no answer, only the reason."""
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("party-viewer", "viewer@example.com", "pw-viewer-123")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_party"))
    client.force_login(viewer)
    response = client.get(TRY_URL, page_query(cast, trusted))
    assert response.status_code == 200
    assert response.context["result"] is None
    content = response.content.decode()
    assert "needs the permission to view users" in content
    assert 'id="try-reason"' not in content and 'id="try-user"' not in content  # no answer shown
    opts = django_user_model._meta
    viewer.user_permissions.add(Permission.objects.get(codename=f"view_{opts.model_name}"))
    client.force_login(django_user_model.objects.get(pk=viewer.pk))
    assert client.get(TRY_URL, page_query(cast, trusted)).context["result"]["user"] == "existing"
