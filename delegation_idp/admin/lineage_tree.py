"""What the lineage admin's own pages show: a token's tree as nested nodes (siblings in the order
they were issued), the subtree a revocation would mark, and who acted for a user, every party by
name (one :class:`~delegation_idp.admin.display.PartyNames` query per page).

The templates draw the nodes as nested lists with CSS connectors (``admin.css``, its "lineage"
section); no script.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.safestring import SafeString

from delegation_idp.admin.display import PartyNames, party_chain, status
from delegation_idp.admin.lineage_columns import compact_time, short_jti
from delegation_idp.lineage.queries import ActedFor
from delegation_idp.models import AuditEvent, TokenLineage

__all__ = ["Node", "acted_rows", "build_tree", "flatten", "names_for", "row_status"]


def row_status(row: TokenLineage, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "active" if row.expires_at > now else "expired"


def names_for(rows: Iterable[TokenLineage]) -> PartyNames:
    """The parties of these rows' clients, audiences and actors, in one query."""
    rows = list(rows)
    uris = {u for r in rows for u in (*r.audience, *r.chain) if isinstance(u, str)}
    return PartyNames(client_ids={r.client_id for r in rows}, uris=uris)


@dataclass
class Node:
    """One token of a tree, as the tree page draws it."""

    row: TokenLineage
    status: str
    party: SafeString
    audience: SafeString
    actors: SafeString
    selected: bool = False
    #: an ancestor is revoked: the whole branch is shown struck through
    in_revoked_branch: bool = False
    depth: int = 0
    children: list[Node] = field(default_factory=list)

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"

    @property
    def badge(self) -> SafeString:
        return status(self.status)

    @property
    def short_jti(self) -> SafeString:
        return short_jti(self.row.jti)

    @property
    def issued(self) -> SafeString:
        return compact_time(self.row.issued_at)

    @property
    def expires(self) -> SafeString:
        return compact_time(self.row.expires_at)

    @property
    def revoked_at(self) -> SafeString:
        return compact_time(self.row.revoked_at)


def build_tree(
    rows: Sequence[TokenLineage], *, now: datetime, selected: TokenLineage | None = None
) -> list[Node]:
    """The rows (one tree, or a subtree) as nested nodes: each node's children are the rows whose
    ``parent_jti`` is its ``jti``, in the order they were issued; the roots are the rows whose
    parent is not among them. ``depth`` counts from the first root (0)."""
    names = names_for(rows)
    nodes = {
        r.jti: Node(
            row=r,
            status=row_status(r, now),
            party=names.client(r.client_id),
            audience=party_chain(names, [a for a in r.audience if isinstance(a, str)], sep=", "),
            actors=party_chain(names, r.chain),
            selected=selected is not None and r.pk == selected.pk,
        )
        for r in rows
    }
    roots: list[Node] = []
    for node in nodes.values():
        parent = nodes.get(node.row.parent_jti) if node.row.parent_jti else None
        (parent.children if parent is not None else roots).append(node)

    def order(siblings: list[Node], depth: int, revoked_above: bool) -> None:
        siblings.sort(key=lambda n: (n.row.issued_at, n.row.pk))
        for n in siblings:
            n.depth, n.in_revoked_branch = depth, revoked_above
            order(n.children, depth + 1, revoked_above or n.revoked)

    order(roots, 0, False)
    return roots


def flatten(nodes: Iterable[Node]) -> list[Node]:
    """The nodes depth first, in the order the page draws them."""
    out: list[Node] = []
    for node in nodes:
        out.append(node)
        out.extend(flatten(node.children))
    return out


@dataclass(frozen=True)
class ActedRow:
    entry: ActedFor
    client: SafeString
    chain: SafeString


@dataclass(frozen=True)
class DeniedRow:
    event: AuditEvent
    client: SafeString
    chain: SafeString
    audience: SafeString


def _page_names(acted: Sequence[ActedFor], denied: Sequence[AuditEvent]) -> PartyNames:
    uris = {u for a in acted for u in a.chain} | {
        u for e in denied for u in (*(e.chain or ()), *(e.requested_audience or ())) if isinstance(u, str)
    }
    client_ids = {a.client_id for a in acted} | {e.client_id for e in denied}
    return PartyNames(client_ids=client_ids, uris=uris)


def acted_rows(acted: Sequence[ActedFor], denied: Sequence[AuditEvent]) -> tuple[list[Any], list[Any]]:
    """The "who has acted" page's two tables, every party by name (one query for both)."""
    names = _page_names(acted, denied)
    chains = [
        ActedRow(entry=a, client=names.client(a.client_id), chain=party_chain(names, a.chain, compact=False))
        for a in acted
    ]
    refused = [
        DeniedRow(
            event=e,
            client=names.client(e.client_id),
            chain=party_chain(names, [u for u in e.chain or () if isinstance(u, str)]),
            audience=party_chain(
                names, [u for u in e.requested_audience or () if isinstance(u, str)], sep=", "
            ),
        )
        for e in denied
    ]
    return chains, refused
