"""Django admin for the signing key set: read-only keys, rotation, emergency revocation.

* The list shows each key's state as a badge (word, symbol and colour), its age and what
  happens to it next, and when: the schedule :func:`delegation_idp.provider.rotation.schedule`
  reads by the rule :func:`~delegation_idp.provider.rotation.rotate_keys` applies.
* "Rotate keys now" is a button of the list page (object tools): a confirmation page whose
  POST (with CSRF, and the change permission) publishes a new ``next`` key; a GET never
  rotates.
* The emergency revocation of selected keys is an action with its own confirmation page.
* Keys are made by rotation only; the private key is never shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from delegation_idp.admin.display import MEDIA
from delegation_idp.conf import idp_settings
from delegation_idp.models import SigningKey
from delegation_idp.provider import rotation

#: word and symbol of each key state (colours in admin.css, "keys and dry run")
KEY_STATES: dict[str, tuple[Any, str]] = {
    SigningKey.CURRENT: (_("current"), "●"),
    SigningKey.NEXT: (_("next"), "◔"),
    SigningKey.RETIRED: (_("retired"), "○"),
    SigningKey.REVOKED: (_("revoked"), "✕"),
}

#: how much of a kid the list shows (the whole one is its title)
KID_SHOWN = 16


def key_state(state: str) -> SafeString:
    """A key's state as a badge: symbol, word, colour (the colour never alone)."""
    word, symbol = KEY_STATES.get(state, (state, "?"))
    return format_html('<span class="idp-status idp-key-{}">{} {}</span>', state, symbol, word)


def short_kid(kid: str) -> SafeString:
    """The kid in monospace, shortened, the whole value in its title."""
    shown = kid if len(kid) <= KID_SHOWN else f"{kid[:KID_SHOWN]}…"
    return format_html('<code class="idp-kid" title="{}">{}</code>', kid, shown)


def when(moment: datetime | None, now: datetime) -> SafeString:
    """``moment`` as "in 3 days" or "2 hours ago", the date below it."""
    if moment is None:
        return format_html("-")
    relative = (
        _("in %(time)s") % {"time": timeuntil(moment, now)}
        if moment > now
        else _("%(time)s ago") % {"time": timesince(moment, now)}
    )
    return format_html(
        '<span class="idp-when">{}</span><br><span class="idp-uri">{}</span>',
        relative,
        date_format(timezone.localtime(moment), "DATETIME_FORMAT"),
    )


def next_step(key: SigningKey) -> tuple[Any, datetime | None]:
    """What happens to ``key`` next, and when (by the rule rotation applies)."""
    if key.state == SigningKey.NEXT:
        return _("starts signing"), key.activates_at
    if key.state == SigningKey.CURRENT:
        plan = rotation.schedule()  # the one current key: one look-up per page
        if plan.upcoming is not None:
            return _("replaced by the waiting next key"), plan.switch_at
        return _("next rotation: a new next key is published"), plan.publish_at
    if key.state == SigningKey.RETIRED:
        return _("unpublished and deleted once its last token has expired"), key.remove_after
    return _("revoked: unpublished, its tokens revoked"), key.revoked_at


def schedule_text(plan: rotation.Schedule, now: datetime) -> str:
    """When the next rotation is due, in a sentence for the top of the list."""
    every = timesince(now - timedelta(seconds=idp_settings.KEY_ROTATION_PERIOD), now)
    if plan.upcoming is not None and plan.switch_at is not None:
        return str(
            _("A next key is published and waiting; it starts signing %(when)s. Keys rotate every %(every)s.")
            % {"when": _relative(plan.switch_at, now), "every": every}
        )
    if plan.publish_at is not None:
        return str(
            _(
                "The next rotation is due %(when)s: a new next key is published then, and it starts "
                "signing one JWKS cache lifetime later. Keys rotate every %(every)s."
            )
            % {"when": _relative(plan.publish_at, now), "every": every}
        )
    return str(_("No key yet: the first token signed creates one."))


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Keys are made by rotation only; the private key is never shown."""

    list_display = ("short_kid", "alg", "state_badge", "age", "next_step")
    list_display_links = ("short_kid",)
    list_filter = ("state", "alg")
    search_fields = ("kid",)
    readonly_fields = (
        "kid",
        "alg",
        "state",
        "public_jwk",
        "created",
        "activates_at",
        "retired_at",
        "remove_after",
        "revoked_at",
    )
    exclude = ("private_key",)
    actions = ["revoke"]
    media = MEDIA

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False  # deleting a published key would break its tokens: revoke or let it retire

    # -- the list ------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        plan = rotation.schedule()
        context = {
            "can_rotate": self.has_change_permission(request),
            "rotate_url": reverse(f"{self.admin_site.name}:delegation_idp_signingkey_rotate"),
            "schedule_text": schedule_text(plan, timezone.now()),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description=_("kid"), ordering="kid")
    def short_kid(self, key: SigningKey) -> SafeString:
        return short_kid(key.kid)

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, key: SigningKey) -> SafeString:
        return key_state(key.state)

    @admin.display(description=_("age"), ordering="-created")
    def age(self, key: SigningKey) -> SafeString:
        return format_html(
            '<span class="idp-when">{}</span><br><span class="idp-uri">{}</span>',
            timesince(key.created, timezone.now()),
            _datetime(key.created),
        )

    @admin.display(description=_("next step"))
    def next_step(self, key: SigningKey) -> SafeString:
        what, moment = next_step(key)
        return format_html("{}<br>{}", what, when(moment, timezone.now()))

    # -- rotate now: a button, a confirmation page, a POST --------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("rotate/", wrap(self.rotate_view), name="delegation_idp_signingkey_rotate"),
            *super().get_urls(),
        ]

    def rotate_view(self, request: HttpRequest) -> HttpResponse:
        """GET: what a rotation now would do, and a form; POST: rotate (``force``)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        changelist = reverse(f"{self.admin_site.name}:delegation_idp_signingkey_changelist")
        if request.method == "POST":
            result = rotation.rotate_keys(force=True)
            self._report(request, result)
            return HttpResponseRedirect(changelist)
        plan = rotation.schedule()
        upcoming = SigningKey.objects.filter(kid=plan.upcoming).first() if plan.upcoming else None
        current = SigningKey.objects.filter(kid=plan.current).first() if plan.current else None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Rotate the signing keys now?"),
            "opts": self.opts,
            "media": self.media,
            "current": current,
            "upcoming": upcoming,
            "cache_seconds": idp_settings.JWKS_CACHE_SECONDS,
            "switch_at": timezone.now() + timedelta(seconds=idp_settings.JWKS_CACHE_SECONDS),
            "changelist_url": changelist,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/delegation_idp/signingkey/rotate_confirmation.html", context)

    def _report(self, request: HttpRequest, result: rotation.RotationResult) -> None:
        if result.created:
            key = SigningKey.objects.filter(kid=result.created).first()
            starts = key.activates_at if key is not None else None
            self.message_user(
                request,
                _(
                    "Published a new next key %(kid)s; it starts signing at %(time)s, one JWKS cache "
                    "lifetime later, so every cache has it first."
                )
                % {"kid": result.created, "time": _datetime(starts)},
                messages.SUCCESS,
            )
        else:
            waiting = SigningKey.objects.filter(state=SigningKey.NEXT).order_by("activates_at").first()
            self.message_user(
                request,
                _(
                    "Nothing new was published: a next key %(kid)s is already waiting; it starts "
                    "signing at %(time)s."
                )
                % {
                    "kid": waiting.kid if waiting else "-",
                    "time": _datetime(waiting.activates_at if waiting else None),
                },
                messages.INFO,
            )
        if result.promoted:
            self.message_user(
                request,
                _("Key %(kid)s now signs; %(old)s is retired.")
                % {"kid": result.promoted, "old": result.retired},
                messages.INFO,
            )

    # -- emergency revocation ----------------------------------------------------------

    @admin.action(description=_("Emergency: revoke selected keys as compromised"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> TemplateResponse | None:
        targets = list(queryset.exclude(state=SigningKey.REVOKED).order_by("kid"))
        if not targets:
            self.message_user(request, _("The selected keys are already revoked."), messages.WARNING)
            return None
        if request.POST.get("post") == "yes":
            total = 0
            for key in targets:
                total += rotation.revoke_key(key.kid).tokens_revoked
            self.message_user(
                request,
                ngettext(
                    "Revoked %(count)d key and %(tokens)d tokens.",
                    "Revoked %(count)d keys and %(tokens)d tokens.",
                    len(targets),
                )
                % {"count": len(targets), "tokens": total},
                messages.WARNING,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revoke signing keys?"),
            "opts": self.model._meta,
            "keys": [
                {
                    "key": key,
                    "kid": short_kid(key.kid),
                    "state": key_state(key.state),
                    "live": rotation.live_tokens_signed_by(key.kid),
                }
                for key in targets
            ],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/delegation_idp/signingkey/revoke_confirmation.html", context)


def _relative(moment: datetime, now: datetime) -> str:
    if moment > now:
        return str(_("in %(time)s (%(date)s)") % {"time": timeuntil(moment, now), "date": _datetime(moment)})
    return str(
        _("now (it was due %(time)s ago; the next rotation check does it)") % {"time": timesince(moment, now)}
    )


def _datetime(moment: datetime | None) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment is not None else "-"
