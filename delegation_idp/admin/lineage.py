"""Django admin for token lineage and the audit trail (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ..models import AuditEvent, TokenLineage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TokenLineage)
class TokenLineageAdmin(ReadOnlyAdmin):
    list_display = ("jti", "subject", "client_id", "depth", "issued_at", "expires_at", "revoked_at")
    list_filter = ("grant_type", "depth", "revocation_reason")
    search_fields = ("jti", "root_jti", "subject", "client_id")
    date_hierarchy = "issued_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created", "event", "decision", "reason", "error", "client_id", "subject", "jti")
    list_filter = ("decision", "event", "reason")
    search_fields = ("client_id", "subject", "jti", "parent_jti", "user_id")
    date_hierarchy = "created"
