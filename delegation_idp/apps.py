from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DelegationIdpConfig(AppConfig):
    name = "delegation_idp"
    verbose_name = _("Agent delegation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from delegation_idp import checks  # noqa: F401  (registers the system checks)
        from delegation_idp.ciba import receivers as ciba_receivers
        from delegation_idp.lineage import receivers
        from delegation_idp.provider import (
            metrics,
            self_registered,
            signin,  # noqa: F401  (connects the sign-in lockout)
            status_lists,
        )

        receivers.connect()
        self_registered.connect()
        metrics.connect()
        status_lists.connect()
        ciba_receivers.connect()
