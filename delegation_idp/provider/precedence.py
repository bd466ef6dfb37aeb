"""The precedence of an actor's delegation rules: ``DelegationRule.position``, lowest first.

The evaluator tries an actor's rules in that order (ties: the lowest id) and the first that
allows decides (:func:`delegation_idp.core.policy.explain`). The admin's move up / move down
controls and ``manage.py createrule --position`` reorder through these functions: each
renumbers the actor's rules 1, 2, ... in their new order, under a lock on the actor's row so
two reorders of one actor never interleave. Every write goes to the rule table, so the policy
version triggers (:mod:`delegation_idp.provider.policy_triggers`) make the next request in every
process see the new order.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from delegation_idp.models import DelegationRule, Party

__all__ = ["DOWN", "UP", "move", "ordered", "place"]

UP = -1
DOWN = 1


def ordered(actor_id: int) -> list[DelegationRule]:
    """The actor's rules in the order the evaluator tries them."""
    return list(DelegationRule.objects.filter(actor_id=actor_id).order_by("position", "id"))


def _renumber(rules: list[DelegationRule]) -> None:
    now = timezone.now()
    for number, rule in enumerate(rules, start=1):
        if rule.position != number:
            DelegationRule.objects.filter(pk=rule.pk).update(position=number, updated=now)
            rule.position = number


@transaction.atomic
def move(rule: DelegationRule, step: int) -> bool:
    """Move ``rule`` one place earlier (:data:`UP`) or later (:data:`DOWN`) among its actor's
    rules; False when it is already first (or last)."""
    Party.objects.select_for_update().filter(pk=rule.actor_id).first()
    rules = ordered(rule.actor_id)
    index = next(i for i, r in enumerate(rules) if r.pk == rule.pk)
    other = index + (UP if step < 0 else DOWN)
    if not 0 <= other < len(rules):
        _renumber(rules)
        return False
    rules[index], rules[other] = rules[other], rules[index]
    _renumber(rules)
    return True


@transaction.atomic
def place(rule: DelegationRule, position: int) -> int:
    """Put ``rule`` at ``position`` (1: tried first) among its actor's rules; those from that
    place on move one later. Returns the position it got (at most one past the last)."""
    Party.objects.select_for_update().filter(pk=rule.actor_id).first()
    rules = [r for r in ordered(rule.actor_id) if r.pk != rule.pk]
    index = min(max(position, 1), len(rules) + 1) - 1
    rules.insert(index, rule)
    rule.position = -1  # renumbered below, whatever it held
    _renumber(rules)
    return index + 1
