"""Lineage rows and audit events made directly, for the admin page tests: a tree whose siblings
were issued in an order their ``jti`` does not sort in, and many rows for a query count."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from delegation_idp.models import AuditEvent, TokenLineage


def lineage(jti: str, *, parent: TokenLineage | None, client_id: str, issued: datetime, **extra: Any) -> Any:
    """One lineage row under ``parent`` (a root without one)."""
    return TokenLineage.objects.create(
        jti=jti,
        parent_jti=parent.jti if parent else "",
        root_jti=parent.root_jti if parent else jti,
        path=f"{parent.path}/{jti}" if parent else jti,
        depth=parent.depth + 1 if parent else 0,
        grant_type=extra.pop("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        subject=extra.pop("subject", "user"),
        client_id=client_id,
        audience=extra.pop("audience", []),
        scope=extra.pop("scope", "tasks.read"),
        kid="k",
        issued_at=issued,
        expires_at=extra.pop("expires", issued + timedelta(hours=1)),
        **extra,
    )


def sibling_tree(cast: Any) -> dict[str, TokenLineage]:
    """A root (agent1) with three children issued early, middle and late, whose jti sort the other
    way round (z-early, m-middle, a-late), and a grandchild under the middle one."""
    now = timezone.now()
    a1, a2, mcp = cast["agent1"], cast["agent2"], cast["mcp-server1"]
    root = lineage("root-0001", parent=None, client_id=a1.client_id, issued=now - timedelta(minutes=10))
    early = lineage(
        "z-early", parent=root, client_id=a2.client_id, issued=now - timedelta(minutes=9), audience=[a2.uri]
    )
    middle = lineage(
        "m-middle",
        parent=root,
        client_id=a2.client_id,
        issued=now - timedelta(minutes=8),
        audience=[mcp.uri],
        act={"sub": a1.uri},
    )
    late = lineage(
        "a-late", parent=root, client_id=mcp.client_id, issued=now - timedelta(minutes=7), audience=[a1.uri]
    )
    grandchild = lineage(
        "g-grand",
        parent=middle,
        client_id=mcp.client_id,
        issued=now - timedelta(minutes=6),
        audience=[cast.resource_server],
        act={"sub": a2.uri, "act": {"sub": a1.uri}},
    )
    return {"root": root, "early": early, "middle": middle, "late": late, "grandchild": grandchild}


def many_rows(cast: Any, count: int, prefix: str) -> None:
    """``count`` roots spread over the cast's clients, some expired, some revoked; and as many
    audit events."""
    now = timezone.now()
    clients = [cast[name].client_id for name in ("agent1", "agent2", "mcp-server1")]
    TokenLineage.objects.bulk_create(
        TokenLineage(
            jti=f"{prefix}-{i:04d}",
            root_jti=f"{prefix}-{i:04d}",
            path=f"{prefix}-{i:04d}",
            grant_type="client_credentials",
            subject="user",
            client_id=clients[i % 3],
            audience=[cast.resource_server, cast["agent2"].uri],
            kid="k",
            issued_at=now - timedelta(minutes=i),
            expires_at=now + timedelta(minutes=30 - i),
            revoked_at=now if i % 5 == 0 else None,
            revocation_reason="admin" if i % 5 == 0 else "",
        )
        for i in range(count)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(
            created=now - timedelta(minutes=i),
            event="token_exchange",
            decision=AuditEvent.DENIED if i % 2 else AuditEvent.GRANTED,
            reason="target_unknown" if i % 2 else "allowed",
            error="invalid_target" if i % 2 else "",
            client_id=clients[i % 3],
            subject="user",
            chain=[cast["agent1"].uri],
            requested_audience=[cast.resource_server],
            jti=f"{prefix}-{i:04d}",
        )
        for i in range(count)
    )
