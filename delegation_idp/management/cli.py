"""What the management commands that name a party share: finding it, turning validation
errors into one clear ``CommandError``, and describing rules in text and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider.agents import PartyLookupError, find_party

__all__ = [
    "ACTING_KINDS",
    "errors_message",
    "groups",
    "no_rules_warning",
    "party",
    "rule_data",
    "rule_text",
    "users",
    "validation_message",
    "write_json",
]

ACTING_KINDS = (Party.AGENT, Party.MCP_SERVER)


def party(reference: str, *, acting: bool = False) -> Party:
    """The party ``reference`` names (identity URI, client id or display name); with
    ``acting``, one that may act (an agent or MCP server, never a resource server)."""
    try:
        found = find_party(reference)
    except PartyLookupError as exc:
        raise CommandError(str(exc)) from exc
    if acting and found.kind not in ACTING_KINDS:
        raise CommandError(
            f"{found} is a {found.get_kind_display().lower()}: only an agent or an MCP server acts."
        )
    return found


def users(usernames: Iterable[str]) -> list[Any]:
    User = get_user_model()
    found = []
    for username in usernames:
        user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        found.append(user)
    return found


def groups(names: Iterable[str]) -> list[Group]:
    found = []
    for name in names:
        group = Group.objects.filter(name=name).first()
        if group is None:
            raise CommandError(f"No group {name!r}.")
        found.append(group)
    return found


def errors_message(errors: Mapping[str, Any], options: Mapping[str, str] | None = None) -> str:
    """A form's or a ``ValidationError``'s messages on one line, each under the command-line
    option it came from (``options`` maps field names to options)."""
    names = options or {}
    parts = []
    for field, messages in errors.items():
        text = " ".join(str(m) for m in messages)
        parts.append(text if field == "__all__" else f"{names.get(field, field)}: {text}")
    return "; ".join(parts)


def validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return errors_message(exc.message_dict)
    return " ".join(exc.messages)


def write_json(command: BaseCommand, data: Any) -> None:
    command.stdout.write(json.dumps(data, default=str))


def no_rules_warning(party: Party) -> str:
    """What to say about an agent without rules, and what to run next."""
    return (
        f"Warning: {party.uri} has no delegation rules yet, so every token exchange it asks "
        "for is refused with invalid_target (reason no_rule). Add one, e.g.:\n"
        f"  python manage.py createrule {party.uri} --audience <party it calls> "
        "--scope '<scopes>' --from-user\n"
        "(--from-user: it receives the user's own token; --upstream <agent>: it continues "
        f"another agent's chain), then check with: python manage.py explain {party.uri} ..."
    )


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def rule_data(rule: DelegationRule) -> dict[str, Any]:
    """A rule as JSON: its fields, with parties by identity URI and users by username."""
    return {
        "id": rule.pk,
        "actor": rule.actor.uri,
        "description": rule.description,
        "position": rule.position,
        "enabled": rule.enabled,
        "in_effect": rule.as_view().in_effect(timezone.now()),
        "audiences": sorted(p.uri for p in rule.audiences.all()),
        "max_scope": rule.max_scope,
        "direct_from_user": rule.allow_direct_from_user,
        "upstream_actors": sorted(p.uri for p in rule.upstream_actors.all()),
        "max_depth": rule.max_depth,
        "users": sorted(u.get_username() for u in rule.users.all()),
        "groups": sorted(g.name for g in rule.groups.all()),
        "valid_from": _when(rule.valid_from),
        "valid_until": _when(rule.valid_until),
        # The user's approval (OpenID CIBA): never, always or "above" the scopes or depth.
        "approval": rule.approval,
        "approval_scopes": rule.approval_scopes.split(),
        "approval_min_depth": rule.approval_min_depth,
        "approval_lifetime": rule.approval_lifetime,
        "approval_reuse_seconds": rule.approval_reuse_seconds,
    }


def rule_text(data: Mapping[str, Any]) -> str:
    """:func:`rule_data` in one line for people."""
    sources = (["a user token"] if data["direct_from_user"] else []) + data["upstream_actors"]
    window = ""
    if data["valid_from"] or data["valid_until"]:
        window = f", valid {data['valid_from'] or '…'} to {data['valid_until'] or '…'}"
    whom = ", ".join(data["users"] + [f"group {g}" for g in data["groups"]]) or "any user"
    state = "in effect" if data["in_effect"] else ("disabled" if not data["enabled"] else "not in effect")
    title = f' "{data["description"]}"' if data["description"] else ""
    depth = f", depth ≤ {data['max_depth']}" if data["max_depth"] is not None else ""
    return (
        f"rule {data['id']}{title}: to {', '.join(data['audiences'])}; scope {data['max_scope']}; "
        f"from {' or '.join(sources)}{depth}; for {whom}{window}; {state}"
        + (f"; precedence {data['position']}" if data.get("position") is not None else "")
        + _approval_text(data)
    )


def _approval_text(data: Mapping[str, Any]) -> str:
    """ "; needs the user's approval ..." for a rule that may need it, else ""."""
    mode = data.get("approval", DelegationRule.APPROVAL_NEVER)
    if mode == DelegationRule.APPROVAL_ALWAYS:
        when = "always"
    elif mode == DelegationRule.APPROVAL_ABOVE:
        parts = []
        if data["approval_scopes"]:
            parts.append(f"for {' '.join(data['approval_scopes'])}")
        if data["approval_min_depth"] is not None:
            parts.append(f"from depth {data['approval_min_depth']}")
        when = " or ".join(parts)
    else:
        return ""
    lifetime = data["approval_lifetime"]
    terms = [f"; needs the user's approval {when}"]
    if lifetime is not None:
        terms.append(f"request lives {lifetime} s")
    if data["approval_reuse_seconds"]:
        terms.append(f"reused for {data['approval_reuse_seconds']} s")
    return ", ".join(terms)
