"""``manage.py createrule``: add a delegation rule for an agent, checked as the admin checks it.

The rule goes through the admin's own form (``DelegationRuleForm``), so the command refuses
exactly what the admin refuses. Running it again with the same rule creates nothing (and moves
nothing: ``--position`` places a new rule only). A new rule comes after the agent's others unless
``--position`` puts it earlier (:mod:`delegation_idp.provider.precedence`).

``--approval always`` (or ``above`` with ``--approval-scopes`` and/or ``--approval-depth``) makes
each hop it allows wait for the user's approval (OpenID CIBA); ``--approval-lifetime`` is how
long such a request waits (10 s to 24 h; default the ``APPROVAL_REQUEST_LIFETIME`` setting) and
``--approval-reuse`` how long an approval also answers identical requests (0: never).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from delegation_idp.admin.rules import DelegationRuleForm
from delegation_idp.management import cli
from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider import precedence

# The form's fields, by the option that sets them (for error messages).
OPTIONS = {
    "actor": "AGENT",
    "audiences": "--audience",
    "max_scope": "--scope",
    "allow_direct_from_user": "--from-user",
    "upstream_actors": "--upstream",
    "max_depth": "--max-depth",
    "users": "--user",
    "groups": "--group",
    "valid_from": "--valid-from",
    "valid_until": "--valid-until",
    "description": "--description",
    "position": "--position",
    "approval": "--approval",
    "approval_scopes": "--approval-scopes",
    "approval_min_depth": "--approval-depth",
    "approval_lifetime": "--approval-lifetime",
    "approval_reuse_seconds": "--approval-reuse",
}


def _same_rule(rule: DelegationRule, data: dict[str, Any]) -> bool:
    """Whether the stored ``rule`` says exactly what the form's cleaned ``data`` says."""

    def pks(values: Any) -> frozenset[Any]:
        return frozenset(v.pk for v in values)

    return (
        frozenset(rule.max_scope.split()) == frozenset(data["max_scope"].split())
        and pks(rule.audiences.all()) == pks(data["audiences"])
        and pks(rule.upstream_actors.all()) == pks(data["upstream_actors"])
        and pks(rule.users.all()) == pks(data["users"])
        and pks(rule.groups.all()) == pks(data["groups"])
        and (rule.allow_direct_from_user, rule.max_depth, rule.valid_from, rule.valid_until)
        == (data["allow_direct_from_user"], data["max_depth"], data["valid_from"], data["valid_until"])
        and (rule.enabled, rule.description) == (data["enabled"], data["description"])
        and (rule.approval, rule.approval_min_depth, rule.approval_lifetime, rule.approval_reuse_seconds)
        == (
            data["approval"],
            data["approval_min_depth"],
            data["approval_lifetime"],
            data["approval_reuse_seconds"],
        )
        and frozenset(rule.approval_scopes.split()) == frozenset(data["approval_scopes"].split())
    )


class Command(BaseCommand):
    help = (
        "Add a delegation rule for an agent or MCP server: which audiences it may call, with "
        "which largest scope, from a user token or from which upstream agents, for whom and when. "
        "Idempotent: an identical rule is not created twice."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("agent", help="The acting agent: identity URI, client id or display name")
        parser.add_argument(
            "--audience",
            action="append",
            default=[],
            required=True,
            help="A party it may request tokens for (repeatable)",
        )
        parser.add_argument(
            "--scope", required=True, help="The largest scope it may pass on, space-separated"
        )
        parser.add_argument(
            "--from-user",
            action="store_true",
            help="It may act directly on a user's token (the first hop of a chain)",
        )
        parser.add_argument(
            "--upstream",
            action="append",
            default=[],
            help="An agent whose chain it may continue, the subject token's outermost act.sub (repeatable)",
        )
        parser.add_argument(
            "--max-depth", help="The deepest position at which it may act (1 = directly for the user)"
        )
        parser.add_argument("--user", action="append", default=[], help="Only for this user (repeatable)")
        parser.add_argument("--group", action="append", default=[], help="Only for this group (repeatable)")
        parser.add_argument("--valid-from", default="", help="In effect from (ISO 8601 date and time)")
        parser.add_argument("--valid-until", default="", help="In effect until, excluded (ISO 8601)")
        parser.add_argument("--description", default="", help="What the rule is for")
        parser.add_argument(
            "--position",
            type=int,
            help=(
                "Its precedence among the agent's rules (1 = tried first; the first that allows "
                "decides); the rules from there on move one later. Default: after the others"
            ),
        )
        approval = parser.add_argument_group("the user's approval (OpenID CIBA)")
        approval.add_argument(
            "--approval",
            choices=[choice for choice, _label in DelegationRule.APPROVAL_CHOICES],
            default=DelegationRule.APPROVAL_NEVER,
            help="Whether a hop it allows waits for the user's approval: never (default), always, or "
            "above: for --approval-scopes or from --approval-depth",
        )
        approval.add_argument(
            "--approval-scopes",
            default="",
            help="With --approval above: scopes (space-separated, within --scope) whose grant needs approval",
        )
        approval.add_argument(
            "--approval-depth", help="With --approval above: from this chain depth on, approval is needed"
        )
        approval.add_argument(
            "--approval-lifetime",
            help="How long an approval request waits for the user, seconds (10 to 86400; default the "
            "APPROVAL_REQUEST_LIFETIME setting)",
        )
        approval.add_argument(
            "--approval-reuse",
            default="0",
            help="For how many seconds an approval also answers identical requests (default 0: never)",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["position"] is not None and options["position"] < 1:
            raise CommandError("--position: 1 is the first place (the rule tried first).")
        actor = cli.party(options["agent"], acting=True)
        data = {
            "actor": actor.pk,
            "description": options["description"],
            "enabled": True,
            "audiences": [cli.party(ref).pk for ref in options["audience"]],
            "max_scope": options["scope"],
            "allow_direct_from_user": options["from_user"],
            "upstream_actors": [cli.party(ref, acting=True).pk for ref in options["upstream"]],
            "max_depth": options["max_depth"] or "",
            "users": [u.pk for u in cli.users(options["user"])],
            "groups": [g.pk for g in cli.groups(options["group"])],
            "valid_from": options["valid_from"],
            "valid_until": options["valid_until"],
            "approval": options["approval"],
            "approval_scopes": options["approval_scopes"],
            "approval_min_depth": options["approval_depth"] or "",
            "approval_lifetime": options["approval_lifetime"] or "",
            "approval_reuse_seconds": options["approval_reuse"],
        }
        form = DelegationRuleForm(data=data)
        if not form.is_valid():
            raise CommandError(cli.errors_message(form.errors, OPTIONS))
        with transaction.atomic():
            # One createrule at a time per actor, so two identical runs make one rule.
            Party.objects.select_for_update().filter(pk=actor.pk).first()
            existing = DelegationRule.objects.filter(actor=actor).prefetch_related(
                "audiences", "upstream_actors", "users", "groups"
            )
            rule = next((r for r in existing if _same_rule(r, form.cleaned_data)), None)
            created = rule is None
            if rule is None:
                rule = form.save()
                if options["position"] is not None:
                    precedence.place(rule, options["position"])
        rule = (
            DelegationRule.objects.select_related("actor")
            .prefetch_related("audiences", "upstream_actors", "users", "groups")
            .get(pk=rule.pk)
        )
        described = cli.rule_data(rule)
        if actor.self_registered:
            self.stderr.write(
                self.style.WARNING(
                    f"Warning: {actor.uri} registered itself ({actor.registration}): the registration "
                    "rules govern it until an admin promotes it, and only then does this rule apply."
                )
            )
        if options["json"]:
            cli.write_json(self, {"created": created, "rule": described})
            return
        self.stdout.write(
            f"{'Created' if created else 'Unchanged, already there:'} {cli.rule_text(described)}"
        )
