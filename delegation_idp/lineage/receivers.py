"""The signal handlers that keep lineage in step with the rest of the site, connected in
one place (:func:`connect`, called from the app's ``ready()``).

* django-oauth-toolkit deletes an ``AccessToken`` (RFC 7009 revocation, admin,
  ``AccessToken.revoke()``): the token's whole subtree is revoked.
* An application is deleted: every live token issued to it is revoked (exchanged tokens
  have no ``AccessToken`` row that would go with it).
* A party is disabled or deleted: every live token naming it is revoked.
* A user is deactivated or deleted: all of their tokens are revoked.
* A signing key is revoked (``signing_key_revoked``): every live token it signed is revoked.
* Tokens were revoked (``token_revoked``): their ``jti`` go to the Redis revocation set.
  (The status lists holding them are queued for signing by
  :func:`delegation_idp.provider.status_lists.connect`.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp import signals
from delegation_idp.lineage import publication, revocation
from delegation_idp.models import Party, SigningKey


def access_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    revocation.revoke_access_token_row(instance.pk, reason="revoked")


def party_pre_save(sender: Any, instance: Party, **kwargs: Any) -> None:
    if instance.pk is None:
        instance._was_enabled = None  # type: ignore[attr-defined]
        return
    previous = Party.objects.filter(pk=instance.pk).values_list("enabled", "uri").first()
    instance._was_enabled = previous  # type: ignore[attr-defined]


def party_post_save(sender: Any, instance: Party, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_was_enabled", None)
    if previous is None:
        return
    was_enabled, old_uri = previous
    if was_enabled and not instance.enabled:
        revocation.revoke_for_party(old_uri, reason="party_disabled")


def party_deleted(sender: Any, instance: Party, **kwargs: Any) -> None:
    revocation.revoke_for_party(instance.uri, reason="party_deleted")


def user_pre_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    was_active = sender.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    instance._delegation_was_active = was_active


def user_post_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if getattr(instance, "_delegation_was_active", False) and not instance.is_active:
        revocation.revoke_for_user(instance.pk, reason="user_deactivated")


def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    revocation.revoke_for_user(instance.pk, reason="user_deleted")


def application_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    revocation.revoke_for_client(instance.client_id, reason="client_deleted")


def signing_key_revoked(sender: Any, kid: str, now: datetime, **kwargs: Any) -> int:
    return revocation.revoke_signed_by(kid, reason="key_revoked", now=now)


def connect() -> None:
    """Connect every receiver (idempotent: each has a ``dispatch_uid``)."""
    User = get_user_model()
    uid = "delegation_idp_"
    post_delete.connect(
        access_token_deleted, sender=get_access_token_model(), dispatch_uid=uid + "at_deleted"
    )
    pre_delete.connect(application_deleted, sender=get_application_model(), dispatch_uid=uid + "app_deleted")
    pre_save.connect(party_pre_save, sender=Party, dispatch_uid=uid + "party_pre_save")
    post_save.connect(party_post_save, sender=Party, dispatch_uid=uid + "party_post_save")
    pre_delete.connect(party_deleted, sender=Party, dispatch_uid=uid + "party_deleted")
    pre_save.connect(user_pre_save, sender=User, dispatch_uid=uid + "user_pre_save")
    post_save.connect(user_post_save, sender=User, dispatch_uid=uid + "user_post_save")
    pre_delete.connect(user_deleted, sender=User, dispatch_uid=uid + "user_deleted")
    signals.signing_key_revoked.connect(
        signing_key_revoked, sender=SigningKey, dispatch_uid=uid + "key_revoked"
    )
    signals.token_revoked.connect(publication.on_token_revoked, dispatch_uid=uid + "publish_revocations")
