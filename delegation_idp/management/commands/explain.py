"""``manage.py explain``: the dry run of a delegation on the command line.

The admin's *Try a delegation* page with the same form and the same function
(:func:`delegation_idp.provider.dry_run.try_delegation`): the decision the token endpoint
would make for this agent, chain, audience, scope and user, with its reason code and every
rule's outcome. It reads only. When the allowing rule needs the user's approval (OpenID CIBA)
the answer is "allowed after the user's approval": ``allowed`` stays true (the policy allows),
``needs_approval`` is true, the reason is ``approval_required`` (what the token endpoint answers
until the user approves) and ``approval`` holds the rule's terms
(:func:`delegation_idp.provider.dry_run.approval_summary`).

With ``--redeem ISSUER`` it dry-runs leg 2 of an ID-JAG instead
(:func:`delegation_idp.provider.dry_run.try_redemption`, through the same form): the
``jwt-bearer`` grant redeeming, for the client ``AGENT`` names (a party or a client id), an
ID-JAG of that trusted issuer with the claims given (``--sub``, ``--id-jag-resource``,
``--id-jag-scope``, ``--claim-value``) and the request's ``--resource``,
``--requested-scope`` and ``--dpop``. The ID-JAG's signature, ``exp`` and ``jti`` are not
part of a dry run; a just-in-time user is never created.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from oauth2_provider.models import get_application_model

from delegation_idp.admin.approvals import summary_words
from delegation_idp.admin.try_delegation import TryDelegationForm, rule_title
from delegation_idp.core.reasons import Reason
from delegation_idp.management import cli
from delegation_idp.models import DelegationRule, TrustedIssuer
from delegation_idp.provider import agents, dry_run

OPTIONS = {
    "actor": "AGENT",
    "chain": "--chain",
    "audiences": "--audience",
    "username": "--user",
    "subject_scope": "--scope",
    "requested_scope": "--requested-scope",
    "may_act": "--may-act",
    "trusted_issuer": "--redeem",
    "client": "AGENT",
    "id_jag_sub": "--sub",
    "id_jag_claim": "--claim-value",
    "id_jag_resources": "--id-jag-resource",
    "resources": "--resource",
    "id_jag_scope": "--id-jag-scope",
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


def _trusted_issuer(reference: str) -> TrustedIssuer:
    """A trusted issuer by its issuer URL or its display name (case-insensitive), one only."""
    matches = list(TrustedIssuer.objects.filter(Q(issuer=reference) | Q(name__iexact=reference))[:2])
    if len(matches) != 1:
        raise CommandError(
            f"No trusted issuer is named {reference!r}."
            if not matches
            else f"Two or more trusted issuers are named {reference!r}: give its issuer URL."
        )
    return matches[0]


def _client(reference: str) -> Any:
    """The redeeming client: a registered party's application, or an application by client id."""
    Application = get_application_model()
    application = Application.objects.filter(client_id=reference).first()
    if application is not None:
        return application
    found = cli.party(reference)
    if found.application is None:
        raise CommandError(f"{found} has no OAuth client here.")
    return found.application


class Command(BaseCommand):
    help = (
        "Dry-run a token exchange (or, with --authorize, an authorization request) against the "
        "stored policy: print the decision, its reason code and every rule's outcome; or, with "
        "--redeem, the jwt-bearer redemption of an ID-JAG of a trusted issuer. Reads only."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "agent",
            help="The requesting agent: identity URI, client id or display name (with --redeem: the "
            "redeeming client, a party or a client id)",
        )
        parser.add_argument(
            "--audience",
            action="append",
            default=[],
            help="A target party (repeatable; required but with --redeem)",
        )
        parser.add_argument(
            "--scope",
            default="",
            help="The subject token's scope, space-separated (required but with --redeem)",
        )
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
        redeem = parser.add_argument_group("a redemption of an ID-JAG (RFC 7523)")
        redeem.add_argument(
            "--redeem",
            metavar="ISSUER",
            default="",
            help="Dry-run the jwt-bearer redemption of an ID-JAG of this trusted issuer (its issuer URL "
            "or name) instead; --requested-scope is the request's scope",
        )
        redeem.add_argument("--sub", default="", help="The ID-JAG's sub")
        redeem.add_argument(
            "--claim-value", default="", help="The value of the issuer's claim, when it maps users by another"
        )
        redeem.add_argument(
            "--id-jag-resource", action="append", default=[], help="A resource the ID-JAG names (repeatable)"
        )
        redeem.add_argument(
            "--resource", action="append", default=[], help="A resource parameter of the request (repeatable)"
        )
        redeem.add_argument("--id-jag-scope", default="", help="The ID-JAG's scope (default: no scope claim)")
        redeem.add_argument("--dpop", action="store_true", help="The request carries a DPoP proof (RFC 9449)")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["redeem"]:
            self._redeem(options)
            return
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
        run = form.try_delegation()
        decision = run.decision
        rules = {rule.pk: rule for rule in DelegationRule.objects.filter(actor=actor)}
        reason = run.reason
        result = {
            "allowed": decision.allowed,
            "needs_approval": run.approval is not None,
            "reason": reason.value,
            "error": reason.error if reason is not Reason.ALLOWED else None,
            "description": reason.description,
            "approval": dry_run.approval_summary(run.approval),
            "granted_scope": " ".join(sorted(decision.granted_scope)),
            "audience": list(decision.audience),
            "rule_id": decision.rule_id,
            "authorize": run.authorize,
            "issued_chain": list(run.issued_chain),
            "depth": run.context.depth,
            "max_depth": run.limits.max_depth,
            "rules": [
                {
                    "id": o.rule_id,
                    "description": rules[o.rule_id].description if o.rule_id in rules else "",
                    "reason": o.reason.value,
                }
                for o in run.explanation.rules
            ],
            # What the agent's rules would allow for this chain, user and scope, audience by audience.
            "allowed_audiences": [
                {
                    "audience": a.uri,
                    "rule_id": a.rule_id,
                    "rule": rule_title(rules.get(a.rule_id) if a.rule_id is not None else None, a.rule_id),
                    "granted_scope": " ".join(sorted(a.granted_scope)),
                    "needs_approval": a.approval is not None,
                }
                for a in run.allowed
            ],
        }
        if options["json"]:
            cli.write_json(self, result)
            return
        self._write(result, actor.uri)

    def _redeem(self, options: dict[str, Any]) -> None:
        form = TryDelegationForm(
            data={
                "request_kind": TryDelegationForm.REDEEM,
                "trusted_issuer": _trusted_issuer(options["redeem"]).pk,
                "client": _client(options["agent"]).pk,
                "id_jag_sub": options["sub"],
                "id_jag_claim": options["claim_value"],
                "id_jag_resources": "\n".join(options["id_jag_resource"]),
                "resources": "\n".join(options["resource"]),
                "id_jag_scope": options["id_jag_scope"],
                "requested_scope": options["requested_scope"],
                "dpop": options["dpop"],
            }
        )
        if not form.is_valid():
            raise CommandError(cli.errors_message(form.errors, OPTIONS))
        result = form.try_redemption().summary()
        if options["json"]:
            cli.write_json(self, result)
            return
        if result["allowed"]:
            self.stdout.write("allowed: the jwt-bearer grant would issue an access token")
            self.stdout.write(f"  audience: {', '.join(result['audience'])}")
            self.stdout.write(f"  resource owners: {', '.join(result['owners'])}")
            self.stdout.write(f"  granted scope: {result['granted_scope']}")
        else:
            self.stdout.write(f"refused: {result['reason']} (the token endpoint answers {result['error']})")
            self.stdout.write(f"  {result['description']}")
        users = {
            "new": "a new user would be created just in time: {username}",
            "linked": "linked user {username}",
            "existing": "existing user {username}",
        }
        if result["user"]:
            self.stdout.write("  local user: " + users[result["user"]].format(username=result["username"]))
        elif result["user_why"]:
            self.stdout.write(f"  no local user: {result['user_why']}")
        self.stdout.write(
            "  not checked by a dry run: client authentication, signature, iss, exp, iat, nbf, act, jti"
        )

    def _write(self, result: dict[str, Any], actor: str) -> None:
        if result["needs_approval"]:
            rule = result["rule_id"]
            self.stdout.write(
                f"allowed after the user's approval by rule {rule} (reason code: approval_required)"
            )
            self.stdout.write(f"  {summary_words(result['approval'])}")
            self.stdout.write(f"  until the user approves, the token endpoint answers {result['error']}:")
            self.stdout.write(f"  {result['description']}")
        if result["allowed"]:
            if not result["needs_approval"]:
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
        if result["allowed_audiences"]:
            self.stdout.write("  audiences the rules would allow for this chain, user and scope:")
            for allowed in result["allowed_audiences"]:
                after = ", after the user's approval" if allowed["needs_approval"] else ""
                scope = allowed["granted_scope"]
                self.stdout.write(
                    f"    {allowed['audience']} (rule {allowed['rule_id']}, scope {scope}{after})"
                )
        else:
            self.stdout.write("  audiences the rules would allow for this chain, user and scope: none")
        if result["reason"] == Reason.NO_RULE:
            self.stdout.write(f"  {actor} has no rules: add one with `manage.py createrule {actor} ...`.")
