"""Django admin for the registration rules: what clients that register themselves (client ID
metadata documents, RFC 7591) may reach (:mod:`delegation_idp.provider.self_registered`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.rules import validate_scope
from delegation_idp.models import RegistrationRule


def validate_hosts(value: str) -> None:
    """One host pattern a line, in ALLOWED_HOSTS syntax: a host name, ``.domain`` or ``*``."""
    for line in value.splitlines():
        host = line.strip().lower()
        if not host:
            continue
        name = host[1:] if host.startswith(".") else host
        if host != "*" and (not name or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-." for c in name)):
            raise ValidationError(_("%(host)s is not a host name, .domain or *.") % {"host": line.strip()})


class RegistrationRuleForm(forms.ModelForm):
    class Meta:
        model = RegistrationRule
        fields = ("via", "hosts", "audiences", "max_scope", "enabled", "description")

    def clean_hosts(self) -> str:
        hosts = str(self.cleaned_data["hosts"])
        validate_hosts(hosts)
        if not any(line.strip() for line in hosts.splitlines()):
            raise ValidationError(_("Name at least one host."))
        return hosts

    def clean_max_scope(self) -> str:
        scope = " ".join(str(self.cleaned_data["max_scope"]).split())
        validate_scope(scope)
        return scope


@admin.register(RegistrationRule)
class RegistrationRuleAdmin(admin.ModelAdmin):
    form = RegistrationRuleForm
    list_display = ("id", "via", "host_patterns", "max_scope", "enabled", "description")
    list_filter = ("via", "enabled")
    search_fields = ("hosts", "description", "audiences__uri")
    filter_horizontal = ("audiences",)

    @admin.display(description=_("hosts"))
    def host_patterns(self, rule: RegistrationRule) -> str:
        return " ".join(rule.host_list())

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).prefetch_related("audiences")
