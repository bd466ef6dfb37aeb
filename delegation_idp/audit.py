"""The append-only audit trail of the token endpoint.

Each token-endpoint request gets one :class:`Attempt`, reachable through a
context variable while the request runs, so the view, the grant and the token
generator can each add what they know. The outermost ``attempt()`` writes the
record once, after the issuance transaction has ended, so a failed or rolled
back exchange still leaves its audit record. Tokens themselves never reach it.

A granted token exchange (and a granted client-credentials grant of
django-oauth-toolkit's) is the exception when the records go to the default
sink on the tokens' own database: its record is then written inside the
transaction that stores the token (:func:`write_issued`), so the two commit or
roll back together. No such token exists without its audit record, and the
request costs one commit fewer. If that write fails, the exchange is
refused and the outermost ``attempt()`` writes the refusal as usual. Any other
sink (a log, another database) is written after the transaction, as for every
other request, since it could not roll back with the token.

When the sink fails (the database is down), the record is not lost without a trace: one
JSON line with its event, decision, reason, error, grant type, client id, address and
``jti`` goes to the ``delegation_idp.audit.fallback`` logger (never a token or secret).
Route that logger somewhere durable to keep refusals made during an outage.

Once the record is written, the outermost ``attempt()`` sends ``request_audited`` with the
record and the request's duration: the metrics count each request there, once.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC
from typing import Any

from django.db import DatabaseError, router

from delegation_idp import signals, sql
from delegation_idp.conf import idp_settings
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Issuance
from delegation_idp.models import AuditEvent

logger = logging.getLogger(__name__)
fallback_logger = logging.getLogger("delegation_idp.audit.fallback")

# What the fallback log keeps of a record: identifiers and outcomes, nothing secret.
FALLBACK_FIELDS = ("event", "decision", "reason", "error", "grant_type", "client_id", "client_ip", "jti")

__all__ = [
    "Attempt",
    "AuditWriteFailed",
    "attempt",
    "current",
    "discard_issued_write",
    "export_events",
    "note_issued",
    "write_event",
    "write_issued",
    "write_refusal",
]


@dataclass
class Attempt:
    event: str = "token"
    decision: str = ""
    reason: str = ""
    error: str = ""
    grant_type: str = ""
    client_id: str = ""
    user_id: str = ""
    subject: str = ""
    chain: list[str] = field(default_factory=list)
    requested_audience: list[str] = field(default_factory=list)
    requested_scope: str = ""
    granted_audience: list[str] = field(default_factory=list)
    granted_scope: str = ""
    jti: str = ""
    parent_jti: str = ""
    client_ip: str | None = None
    #: the thumbprint of the DPoP key the request proved (RFC 9449), "" without a proof
    jkt: str = ""
    #: the user who approved the delegation (OpenID CIBA), or decided on the approval page
    approved_by: str = ""

    def deny(self, error: str, reason: Reason | str = "") -> None:
        """Denied with ``error``, for ``reason`` (a catalogue member; a bare error code
        stands for the catalogue's generic member of that error)."""
        self.decision = "denied"
        self.error = error
        self.reason = str(reason or self.reason or Reason.for_error(error))

    def refuse(self, reason: Reason) -> None:
        """Denied for a reason of the catalogue, with its OAuth error."""
        self.deny(reason.error, reason)

    def fields(self) -> dict[str, Any]:
        """The record as the audit sink's keyword arguments (a shallow copy of every field)."""
        return {name: getattr(self, name) for name in FIELDS}

    def grant(self) -> None:
        self.decision = "granted"
        self.error = ""
        self.reason = self.reason if self.reason and self.reason != "allowed" else "allowed"


FIELDS = tuple(f.name for f in dataclass_fields(Attempt))

_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "delegation_idp_attempt", default=None
)
# True once the running attempt was written inside its issuance transaction.
_written: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "delegation_idp_attempt_written", default=False
)


class AuditWriteFailed(Exception):
    """The audit sink failed on a granted exchange's record: the exchange is not issued."""


def current() -> Attempt | None:
    return _current.get()


@contextmanager
def attempt(**initial: Any) -> Iterator[Attempt]:
    """The attempt of the running request; the outermost caller writes it."""
    existing = _current.get()
    if existing is not None:
        for key, value in initial.items():
            if value and not getattr(existing, key):
                setattr(existing, key, value)
        yield existing
        return
    record = Attempt(**initial)
    began = time.perf_counter()
    token = _current.set(record)
    written = _written.set(False)
    try:
        yield record
    finally:
        _current.reset(token)
        already = _written.get()  # inside the issuance transaction, which committed
        _written.reset(written)
        if not already:
            _write(record)
        _audited(record, time.perf_counter() - began)


def _audited(record: Attempt, seconds: float) -> None:
    """``request_audited``, once per request: a failing receiver (the metrics) is logged,
    never raised, since the answer is decided and its record written."""
    for receiver, result in signals.request_audited.send_robust(
        sender=Attempt, record=record, seconds=seconds
    ):
        if isinstance(result, Exception):
            logger.error("request_audited receiver %r failed: %r", receiver, result)


def _write(record: Attempt) -> None:
    if not record.decision:
        record.deny(record.error or "server_error", record.reason or "unfinished")
    try:
        idp_settings.AUDIT_WRITER(**record.fields())
    except Exception:
        # The audit sink failing must be loud, but it must not turn a
        # refusal into a 500 or un-send a token that was already issued.
        logger.exception("audit record could not be written (event=%s)", record.event)
        log_fallback(record)


def note_issued(issuance: Issuance) -> None:
    """What the running attempt issued (django-oauth-toolkit's grants; the exchange fills its
    record itself): the token's ``jti``, subject, scope and audiences, never the token."""
    record = _current.get()
    if record is None:
        return
    claims = issuance.claims
    record.jti, record.subject = issuance.jti, str(claims["sub"])
    record.granted_scope, record.granted_audience = str(claims.get("scope", "")), issuance.audience


def log_fallback(record: Attempt) -> None:
    """The record's trace in the fallback log, for when the audit sink is down."""
    fallback_logger.warning(
        json.dumps({name: getattr(record, name) for name in FALLBACK_FIELDS}, sort_keys=True)
    )


def write_refusal(**fields: Any) -> None:
    """Write one denied record outside any running attempt (an endpoint without its own)."""
    error = fields.pop("error", "")
    reason = fields.pop("reason", "")
    record = Attempt(**fields)
    record.deny(error, reason)
    _write(record)


def _transactional(model: Any) -> bool:
    """Whether the audit sink writes in the same transaction as rows of ``model``: the
    default sink, with ``AuditEvent`` routed to the same database."""
    return bool(
        idp_settings.AUDIT_WRITER is write_event
        and router.db_for_write(AuditEvent) == router.db_for_write(model)
    )


def write_issued(record: Attempt, model: Any) -> None:
    """Write ``record`` as granted, now, inside the issuing transaction of rows of
    ``model``, if the sink shares that transaction (otherwise it is written after it,
    by the outermost :func:`attempt`).

    Called for token exchanges once the token's lineage is stored, and for the
    client-credentials grant once its token is (the validator's ``_save_bearer_token``).
    A sink that raises makes the request fail (:class:`AuditWriteFailed`): the transaction rolls back,
    and the caller must call :func:`discard_issued_write`.
    """
    if not _transactional(model):
        return
    record.grant()
    try:
        idp_settings.AUDIT_WRITER(**record.fields())
    except Exception as exc:
        logger.exception(
            "audit record could not be written; the exchange is refused (event=%s)", record.event
        )
        raise AuditWriteFailed(record.event) from exc
    _written.set(True)


def discard_issued_write(record: Attempt) -> None:
    """Issuance raised. If its transaction rolled back, the audit row went with it, and
    the outermost ``attempt()`` writes the record again, with the refusal. (It may also
    have raised after committing, from an ``on_commit`` hook: then the row stands.)"""
    if not _written.get():
        return
    if not record.jti:
        # An opaque token's record names no token to look for: taken as rolled back (the
        # refusal is written beside it in the rare case that the commit itself failed late).
        _written.set(False)
        return
    stored = AuditEvent.objects.using(router.db_for_write(AuditEvent))
    try:
        committed = stored.filter(jti=record.jti, decision=AuditEvent.GRANTED).exists()
    except DatabaseError:
        committed = False  # the database is gone: write the refusal again (or its fallback line)
    if not committed:
        _written.set(False)


def write_event(**fields: Any) -> None:
    """The default audit sink: one ``AuditEvent`` row (append-only: inserted, never saved)."""
    sql.insert(AuditEvent, fields, using=router.db_for_write(AuditEvent))


EXPORT_FIELDS = (
    "id",
    "created",
    "event",
    "decision",
    "reason",
    "error",
    "grant_type",
    "client_id",
    "user_id",
    "subject",
    "chain",
    "requested_audience",
    "requested_scope",
    "granted_audience",
    "granted_scope",
    "jti",
    "parent_jti",
    "client_ip",
    "jkt",
    "approved_by",
)


def export_events(
    stream: Any,
    *,
    since: Any = None,
    until: Any = None,
    decision: str | None = None,
    event: str | None = None,
    client_id: str | None = None,
    user_id: str | None = None,
    subject: str | None = None,
    batch_size: int = 1000,
) -> int:
    """Write matching audit events to ``stream`` as JSON lines, oldest first.

    Pages by primary key (events are append-only, so the key follows time), so
    memory stays flat however large the table is. Returns the number written.
    """
    events = AuditEvent.objects.order_by("pk")
    if since is not None:
        events = events.filter(created__gte=since)
    if until is not None:
        events = events.filter(created__lt=until)
    for name, value in (
        ("decision", decision),
        ("event", event),
        ("client_id", client_id),
        ("user_id", user_id),
        ("subject", subject),
    ):
        if value:
            events = events.filter(**{name: value})
    written = 0
    last_pk = 0
    while True:
        rows = list(events.filter(pk__gt=last_pk).values(*EXPORT_FIELDS)[:batch_size])
        if not rows:
            return written
        for row in rows:
            row["created"] = row["created"].astimezone(UTC).isoformat().replace("+00:00", "Z")
            stream.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
        written += len(rows)
        last_pk = rows[-1]["id"]
