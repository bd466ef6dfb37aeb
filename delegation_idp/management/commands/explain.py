"""``manage.py explain``: the dry run of a delegation on the command line.

The admin's *Try a delegation* page with the same form and the same function
(:func:`delegation_idp.provider.dry_run.try_delegation`): the decision the token endpoint
would make for this agent, chain, audience, scope and user, with its reason code and every
rule's outcome. It reads only.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp.admin.parties import TryDelegationForm
from delegation_idp.core import policy
from delegation_idp.core.reasons import Reason
from delegation_idp.management import cli
from delegation_idp.models import DelegationRule
from delegation_idp.provider import agents, dry_run

OPTIONS = {
    "actor": "AGENT",
    "chain": "--chain",
    "audiences": "--audience",
    "username": "--user",
    "subject_scope": "--scope",
    "requested_scope": "--requested-scope",
    "may_act": "--may-act",
}


def _chain_uri(reference: str) -> str:
    """A chain member by any name; an identity URI that names no party is kept as it is (the
    answer is then ``chain_actor_disabled``, as at the token endpoint)."""
    try:
        return agents.find_party(reference).uri
    except agents.NoSuchParty:
        if "://" in reference:
            return reference
        raise CommandError(f"No registered party is named {reference!r}.") from None
    except agents.PartyLookupError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = (
        "Dry-run a token exchange (or, with --authorize, an authorization request) against the "
        "stored policy: print the decision, its reason code and every rule's outcome. Reads only."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("agent", help="The requesting agent: identity URI, client id or display name")
        parser.add_argument(
            "--audience", action="append", default=[], required=True, help="A target party (repeatable)"
        )
        parser.add_argument("--scope", required=True, help="The subject token's scope, space-separated")
        parser.add_argument(
            "--requested-scope", default="", help="The scope parameter of the request (default: none)"
        )
        parser.add_argument(
            "--chain",
            action="append",
            default=[],
            help="An actor of the subject token's act chain, the nearest (most recent) first "
            "(repeatable; none: a user's own token)",
        )
        parser.add_argument(
            "--user", default="", help="The user the token is for (default: none in particular)"
        )
        parser.add_argument("--may-act", default="", help="The subject token's may_act claim, as JSON")
        parser.add_argument(
            "--authorize",
            action="store_true",
            help="Ask the authorization endpoint's question instead: may a user authorize the agent "
            "for these audiences (RFC 8707)?",
        )
        parser.add_argument(
            "--id-jag",
            action="store_true",
            help="Ask for an ID-JAG instead of an access token (the audience: an external "
            "authorization server)",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = cli.party(options["agent"], acting=True)
        form = TryDelegationForm(
            data={
                "request_kind": TryDelegationForm.AUTHORIZE
                if options["authorize"]
                else TryDelegationForm.ID_JAG
                if options["id_jag"]
                else TryDelegationForm.EXCHANGE,
                "actor": actor.pk,
                "chain": "\n".join(_chain_uri(ref) for ref in options["chain"]),
                "audiences": [cli.party(ref).pk for ref in options["audience"]],
                "username": options["user"],
                "subject_scope": options["scope"],
                "requested_scope": options["requested_scope"],
                "may_act": options["may_act"],
            }
        )
        if not form.is_valid():
            raise CommandError(cli.errors_message(form.errors, OPTIONS))
        data = form.cleaned_data
        requested = policy.scope_set(data["requested_scope"]) if data["requested_scope"] else None
        run = dry_run.try_delegation(
            actor,
            data["chain"],
            [p.uri for p in data["audiences"]],
            subject_scope=policy.scope_set(data["subject_scope"]),
            requested_scope=requested,
            user=data["username"],
            may_act=data["may_act"],
            authorize=data["request_kind"] == TryDelegationForm.AUTHORIZE,
            id_jag=data["request_kind"] == TryDelegationForm.ID_JAG,
        )
        decision = run.decision
        descriptions = dict(DelegationRule.objects.filter(actor=actor).values_list("pk", "description"))
        result = {
            "allowed": decision.allowed,
            "reason": decision.reason.value,
            "error": decision.error,
            "description": decision.description,
            "granted_scope": " ".join(sorted(decision.granted_scope)),
            "audience": list(decision.audience),
            "rule_id": decision.rule_id,
            "authorize": run.authorize,
            "issued_chain": list(run.issued_chain),
            "depth": run.context.depth,
            "max_depth": run.limits.max_depth,
            "rules": [
                {"id": o.rule_id, "description": descriptions.get(o.rule_id, ""), "reason": o.reason.value}
                for o in run.explanation.rules
            ],
        }
        if options["json"]:
            cli.write_json(self, result)
            return
        self._write(result, actor.uri)

    def _write(self, result: dict[str, Any], actor: str) -> None:
        if result["allowed"]:
            self.stdout.write(f"allowed by rule {result['rule_id']} (reason code: allowed)")
            self.stdout.write(f"  granted scope: {result['granted_scope']}")
            self.stdout.write(f"  audience: {', '.join(result['audience'])}")
            if not result["authorize"]:
                self.stdout.write(f"  issued chain, nearest first: {' <- '.join(result['issued_chain'])}")
        else:
            self.stdout.write(f"refused: {result['reason']} (the token endpoint answers {result['error']})")
            self.stdout.write(f"  {result['description']}")
        if not result["authorize"]:
            self.stdout.write(f"  depth {result['depth']} of at most {result['max_depth']}")
        for outcome in result["rules"]:
            title = f' "{outcome["description"]}"' if outcome["description"] else ""
            self.stdout.write(f"  rule {outcome['id']}{title}: {outcome['reason']}")
        if result["reason"] == Reason.NO_RULE:
            self.stdout.write(f"  {actor} has no rules: add one with `manage.py createrule {actor} ...`.")
