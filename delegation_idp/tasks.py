"""Celery tasks: thin wrappers around the service functions (also reachable as
management commands), so the logic is tested without a worker and the tasks
only add scheduling."""

from __future__ import annotations

from celery import shared_task

from delegation_idp.lineage import publication, retention
from delegation_idp.provider import rotation, status_lists


@shared_task(name="delegation_idp.tasks.rotate_keys", ignore_result=True)
def rotate_keys(force: bool = False) -> dict:
    """``manage.py rotate_keys``: advance the key life cycle (idempotent, safe to run twice at once)."""
    return rotation.rotate_keys(force=force).as_dict()


@shared_task(name="delegation_idp.tasks.sweep_expired", ignore_result=True)
def sweep_expired(batch_size: int | None = None) -> dict:
    """``manage.py sweep_tokens``: expired tokens and records past retention, in batches."""
    result = retention.sweep_expired(batch_size=batch_size)
    return {
        "access_tokens": result.access_tokens,
        "lineage": result.lineage,
        "audit": result.audit,
        "approvals": result.approvals,
    }


@shared_task(name="delegation_idp.tasks.publish_revocations", ignore_result=True)
def publish_revocations(batch_size: int | None = None) -> dict:
    """``manage.py publish_revocations``: rewrite the Redis revocation set."""
    return {"published": publication.publish_revocations(batch_size=batch_size)}


@shared_task(name="delegation_idp.tasks.publish_status_lists", ignore_result=True)
def publish_status_lists(force: bool = False) -> dict:
    """``manage.py publish_status_lists``: sign again every status list that changed (all with
    ``force``). Beat runs it every ``STATUS_LIST_PUBLISH_DELAY`` seconds; each revocation
    queues it too."""
    return {"signed": status_lists.publish_status_lists(force=force)}


@shared_task(name="delegation_idp.tasks.retire_status_lists", ignore_result=True)
def retire_status_lists() -> dict:
    """``manage.py publish_status_lists --retire``: retire lists whose tokens all expired."""
    return {"retired": status_lists.retire_status_lists()}
