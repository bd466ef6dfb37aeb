"""Celery tasks: thin wrappers around the service functions (also reachable as
management commands), so the logic is tested without a worker and the tasks
only add scheduling."""

from __future__ import annotations

from celery import shared_task

from . import keys


@shared_task(name="delegation_idp.tasks.rotate_keys", ignore_result=True)
def rotate_keys(force: bool = False) -> dict:
    result = keys.rotate_keys(force=force)
    return {
        "created": result.created,
        "promoted": result.promoted,
        "retired": result.retired,
        "removed": list(result.removed),
    }
