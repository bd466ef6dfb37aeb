"""Signal handlers that keep lineage in step with the rest of the site.

* django-oauth-toolkit deletes an ``AccessToken`` (RFC 7009 revocation, admin,
  ``AccessToken.revoke()``): the token's whole subtree is revoked.
* A party is disabled or deleted: every live token naming it is revoked.
* A user is deactivated or deleted: all of their tokens are revoked.
* Tokens were revoked (``token_revoked``): their ``jti`` go to the Redis revocation set.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver
from oauth2_provider.models import get_access_token_model

from . import lineage, revocation, signals
from .models import Party

signals.token_revoked.connect(revocation.on_token_revoked, dispatch_uid="delegation_idp_publish_revocations")


@receiver(post_delete, sender=get_access_token_model(), dispatch_uid="delegation_idp_access_token_deleted")
def access_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    lineage.revoke_access_token_row(instance.pk, reason="revoked")


@receiver(pre_save, sender=Party, dispatch_uid="delegation_idp_party_pre_save")
def party_pre_save(sender: Any, instance: Party, **kwargs: Any) -> None:
    if instance.pk is None:
        instance._was_enabled = None  # type: ignore[attr-defined]
        return
    previous = Party.objects.filter(pk=instance.pk).values_list("enabled", "uri").first()
    instance._was_enabled = previous  # type: ignore[attr-defined]


@receiver(post_save, sender=Party, dispatch_uid="delegation_idp_party_post_save")
def party_post_save(sender: Any, instance: Party, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_was_enabled", None)
    if previous is None:
        return
    was_enabled, old_uri = previous
    if was_enabled and not instance.enabled:
        lineage.revoke_for_party(old_uri, reason="party_disabled")


@receiver(pre_delete, sender=Party, dispatch_uid="delegation_idp_party_deleted")
def party_deleted(sender: Any, instance: Party, **kwargs: Any) -> None:
    lineage.revoke_for_party(instance.uri, reason="party_deleted")


User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="delegation_idp_user_pre_save")
def user_pre_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    was_active = User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    instance._delegation_was_active = was_active


@receiver(post_save, sender=User, dispatch_uid="delegation_idp_user_post_save")
def user_post_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if getattr(instance, "_delegation_was_active", False) and not instance.is_active:
        lineage.revoke_for_user(instance.pk, reason="user_deactivated")


@receiver(pre_delete, sender=User, dispatch_uid="delegation_idp_user_deleted")
def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    lineage.revoke_for_user(instance.pk, reason="user_deleted")
