"""The party page's form and what it shows: the client JWK set field, checked as client
authentication reads it, and its readable display; the client id, read-only.

* an empty JWK set is an empty box, never ``null``; what is typed is parsed strictly (no
  duplicate members, no NaN) by the JOSE layer, and refused unless every key could
  authenticate the client (:func:`delegation_idp.provider.client_auth.validate_client_jwks`:
  a ``{"keys": [...]}`` set of public signing keys, no private or symmetric key, one key per
  ``kid``);
* :func:`jwks_summary` shows one line per key: kid, type and curve (or RSA size), alg, use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.models import Party
from delegation_idp.provider.client_auth import rsa_bits, validate_client_jwks

__all__ = ["JWKSetField", "PartyChangeForm", "client_summary", "jwks_summary"]


class JWKSetField(forms.JSONField):
    """A JWK set as indented JSON text; empty means none."""

    widget = forms.Textarea(
        attrs={"rows": 6, "class": "vLargeTextField idp-jwks-input", "spellcheck": "false"}
    )

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            return value
        try:
            return jose.strict_json_loads(value, max_depth=idp_settings.MAX_JSON_DEPTH)
        except jose.JoseError as exc:
            raise ValidationError(
                _('Not JSON that a JWK set can be (%(why)s): paste the set as JSON, {"keys": [...]}.'),
                code="invalid",
                params={"why": {"too_deep": _("nested too deeply")}.get(exc.reason, _("malformed JSON"))},
            ) from exc

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value is None or value == "":
            return ""  # never "null"
        return json.dumps(value, indent=2, ensure_ascii=False)


class PartyChangeForm(forms.ModelForm):
    """The change form: a client JWK set is checked as it is saved."""

    jwks = JWKSetField(
        label=_("Client JWK set"),
        required=False,
        help_text=_(
            "Public keys for private_key_jwt client authentication (RFC 7523), as a JWK set: "
            '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "...", "x": "...", "y": "..."}]}. '
            "Empty: the client authenticates with its secret only."
        ),
    )

    class Meta:
        model = Party
        fields = ("jwks",)  # the admin's fieldsets choose the form's fields

    def clean_jwks(self) -> Any:
        jwks = self.cleaned_data.get("jwks")
        if jwks is None:
            return None
        problems = validate_client_jwks(jwks)
        if not problems and not jwks["keys"]:
            problems = [str(_("The set has no keys: leave the field empty for none."))]
        if problems:
            raise ValidationError(problems, code="invalid")
        return jwks


def _key_line(key: Mapping[str, Any]) -> tuple[Any, ...]:
    kid = key.get("kid")
    if isinstance(kid, str) and kid:
        name = kid
    else:
        try:
            name = str(_("no kid; thumbprint %(t)s") % {"t": jose.thumbprint(key)})
        except jose.JoseError:
            name = str(_("no kid"))
    kty = str(key.get("kty", "?"))
    if kty == "RSA":
        kind = f"RSA {rsa_bits(key)} bits"
    else:
        kind = f"{kty} {key.get('crv', '')}".strip()
    alg = key.get("alg") or _("any allowed for its type")
    use = key.get("use") or _("sig (not stated)")
    return (name, kind, alg, use)


def jwks_summary(jwks: Any) -> SafeString:
    """One line per key of a stored JWK set: kid, type, alg, use."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        return format_html(
            '<span class="idp-quiet">{}</span>', _("No keys: the client authenticates with its secret.")
        )
    lines = [_key_line(key) for key in keys if isinstance(key, Mapping)]
    return format_html(
        '<ul class="idp-jwks">{}</ul>',
        format_html_join(
            "",
            '<li><span class="idp-mono idp-kid">{}</span> · {} · <span class="idp-mono">{}</span> · {}</li>',
            lines,
        ),
    )


def client_summary(party: Party) -> SafeString:
    """The party's OAuth client: its id (read-only), its type, a link to its own admin page."""
    application = party.application
    if application is None:
        return format_html('<span class="idp-quiet">{}</span>', _("No OAuth client."))
    kind = application.get_client_type_display()
    grant = application.get_authorization_grant_type_display()
    try:
        url = reverse("admin:oauth2_provider_application_change", args=[application.pk])
    except NoReverseMatch:
        url = ""
    link = format_html(' · <a href="{}">{}</a>', url, _("its OAuth application")) if url else ""
    return format_html(
        '<code class="idp-mono" id="party-client-id">{}</code><br><span class="idp-quiet">{}, {}</span>{}',
        application.client_id,
        kind,
        grant,
        link,
    )
