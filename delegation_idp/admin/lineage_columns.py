"""The columns, filters and search of the lineage and audit lists (``delegation_idp.admin.lineage``).

Every list row names its agent without a query of its own: :func:`with_party` annotates the
queryset with the party's name, URI and primary key, found by the row's ``client_id`` in a
subquery, and :func:`party_cell` renders them as :func:`~delegation_idp.admin.display.party_link`
does. A lineage row's status (active, expired, revoked) is computed in SQL (:func:`lineage_status`),
so it is both a column and a filter. Nothing here keeps state on a ModelAdmin (shared across
threads): what a row needs travels on the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Case, CharField, Model, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.display import MEDIA, PartyNames, party_link
from delegation_idp.core.reasons import Reason
from delegation_idp.models import AuditEvent, Party

__all__ = [
    "AgentFilter",
    "DecisionFilter",
    "LineageStatusFilter",
    "PartySearch",
    "ReadOnlyAdmin",
    "ReasonFilter",
    "RevocationReasonFilter",
    "UserFilter",
    "code",
    "compact_time",
    "decision_status",
    "lineage_status",
    "page_names",
    "party_cell",
    "short_jti",
    "strings",
    "subject_cell",
    "with_party",
]

#: the badge (:func:`~delegation_idp.admin.display.status`) of each audit decision
DECISION_STATUS = {AuditEvent.GRANTED: "allowed", AuditEvent.DENIED: "refused", AuditEvent.REVOKED: "revoked"}


def decision_status(decision: str) -> str:
    return DECISION_STATUS.get(decision, decision)


class ReadOnlyAdmin(admin.ModelAdmin):
    @property
    def media(self) -> Any:
        return super().media + MEDIA

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def page_names(obj: Any, uris: list[Any]) -> PartyNames:
    """The parties of a row's client and these URIs, looked up once and kept on the row (the
    request's own object), never on the ModelAdmin; a list sets one for its whole page."""
    names = getattr(obj, "_idp_names", None)
    if names is None:
        names = PartyNames(client_ids=[obj.client_id], uris=[u for u in uris if isinstance(u, str)])
        obj._idp_names = names
    return names


def strings(values: Any) -> list[str]:
    """The strings of a JSON list (audiences, chains), nothing else."""
    return [v for v in values or () if isinstance(v, str)]


# -- the agent of a row, by client id ------------------------------------------------------------


def with_party(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """``queryset`` with ``party_pk``, ``party_name`` and ``party_uri``: the registered party whose
    DOT application has the row's ``client_id`` (None when there is none)."""
    party = Party.objects.filter(application__client_id=OuterRef("client_id")).order_by("pk")
    return queryset.annotate(
        party_pk=Subquery(party.values("pk")[:1]),
        party_name=Subquery(party.values("name")[:1]),
        party_uri=Subquery(party.values("uri")[:1]),
    )


def party_cell(obj: Model) -> SafeString:
    """The agent of a row annotated by :func:`with_party`: its name, linked, and its URI."""
    pk = getattr(obj, "party_pk", None)
    party = None if pk is None else Party(pk=pk, name=obj.party_name or "", uri=obj.party_uri or "")  # type: ignore[attr-defined]
    return party_link(party, getattr(obj, "client_id", ""))


class PartySearch(admin.ModelAdmin):
    """Search also finds the rows whose ``client_id`` is the application of a party whose name or
    identity URI contains the search term (``agent2``, ``Agent 2``, ``agent2.example.com``)."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return found, duplicates
        clients = (
            Party.objects.filter(Q(name__icontains=term) | Q(uri__icontains=term))
            .exclude(application=None)
            .values("application__client_id")
        )
        return found | queryset.filter(client_id__in=clients), duplicates


# -- compact values ------------------------------------------------------------------------------


def short_jti(jti: str, length: int = 8) -> SafeString:
    """A ``jti`` cut to its first characters, the whole value in its ``title``."""
    if not jti:
        return format_html("{}", "-")
    shown = jti if len(jti) <= length + 1 else f"{jti[:length]}…"
    return format_html('<span class="idp-mono idp-jti" title="{}">{}</span>', jti, shown)


def code(value: str, title: str = "") -> SafeString:
    """A code (``target_unknown``, ``token_exchange``) that may wrap after its underscores only."""
    from django.utils.html import format_html_join

    parts = value.split("_")
    pieces = format_html_join(SafeString("_<wbr>"), "{}", ((p,) for p in parts))
    return format_html('<span class="idp-code" title="{}">{}</span>', title, pieces)


def subject_cell(subject: str) -> SafeString:
    """A user's subject (an e-mail address, say) that may wrap before its ``@``, not inside a word."""
    if not subject:
        return format_html("{}", "-")
    local, at, domain = subject.partition("@")
    if not at:
        return format_html('<span class="idp-subject">{}</span>', subject)
    return format_html('<span class="idp-subject">{}<wbr>@{}</span>', local, domain)


def compact_time(moment: datetime | None, since: datetime | None = None) -> SafeString:
    """A time as ``YYYY-MM-DD HH:MM`` in the current time zone (``HH:MM`` alone when it is the
    day of ``since``), to the second in its ``title``; the date and the time wrap as wholes."""
    if moment is None:
        return format_html("{}", "-")
    local = timezone.localtime(moment)
    same_day = since is not None and timezone.localtime(since).date() == local.date()
    day = "" if same_day else format_html('<span class="idp-nowrap">{}</span> ', local.strftime("%Y-%m-%d"))
    return format_html(
        '<time datetime="{}" title="{}">{}<span class="idp-nowrap">{}</span></time>',
        moment.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        day,
        local.strftime("%H:%M"),
    )


# -- status --------------------------------------------------------------------------------------


def lineage_status(now: datetime) -> Case:
    """A lineage row's status in SQL: ``revoked`` if marked, else ``active`` until it expires."""
    return Case(
        When(revoked_at__isnull=False, then=Value("revoked")),
        When(expires_at__gt=now, then=Value("active")),
        default=Value("expired"),
        output_field=CharField(),
    )


class LineageStatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("active")), ("expired", _("expired")), ("revoked", _("revoked"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


# -- filters ---------------------------------------------------------------------------------------


class AgentFilter(admin.SimpleListFilter):
    """Rows whose client is this registered party (by its application's client id)."""

    title = _("agent")
    parameter_name = "agent"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        parties = (
            Party.objects.exclude(application=None)
            .order_by("name", "uri")
            .values_list("application__client_id", "name", "uri")
        )
        return [(client_id, name or uri) for client_id, name, uri in parties]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(client_id=self.value()) if self.value() else queryset


class RevocationReasonFilter(admin.SimpleListFilter):
    """Why a lineage row was revoked, among the reasons its table holds."""

    title = _("revocation reason")
    parameter_name = "revocation_reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        reasons = (
            model_admin.model.objects.exclude(revocation_reason="")
            .order_by("revocation_reason")
            .values_list("revocation_reason", flat=True)
            .distinct()
        )
        return [(r, r) for r in reasons]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(revocation_reason=self.value()) if self.value() else queryset


class ReasonFilter(admin.SimpleListFilter):
    """An audit event's reason code, a member of the one catalogue (``core.reasons.Reason``); the
    sidebar lists the members the table holds, in catalogue order, and any member can be asked
    for in the address."""

    title = _("reason code")
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        present = set(AuditEvent.objects.order_by().values_list("reason", flat=True).distinct())
        return [(r.value, r.value) for r in Reason if r.value in present]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if value not in {r.value for r in Reason}:
            return queryset.none()
        return queryset.filter(reason=value)


class DecisionFilter(admin.SimpleListFilter):
    """Allowed, refused or revoked (the recorded ``granted``, ``denied``, ``revoked``)."""

    title = _("decision")
    parameter_name = "decision"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            (AuditEvent.GRANTED, _("✓ allowed")),
            (AuditEvent.DENIED, _("✕ refused")),
            (AuditEvent.REVOKED, _("✕ revoked")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(decision=self.value()) if self.value() else queryset


class UserFilter(admin.SimpleListFilter):
    """Events about this user (their id, as recorded)."""

    title = _("user")
    parameter_name = "user"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = list(
            AuditEvent.objects.exclude(user_id="")
            .order_by()
            .values_list("user_id", flat=True)
            .distinct()[:100]
        )
        users = {str(u.pk): u.get_username() for u in get_user_model().objects.filter(pk__in=ids)}
        return [(i, users.get(i, i)) for i in sorted(ids)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(user_id=self.value()) if self.value() else queryset
