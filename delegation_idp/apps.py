from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DelegationIdpConfig(AppConfig):
    name = "delegation_idp"
    verbose_name = _("Agent delegation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, receivers, signin  # noqa: F401  (registers checks and signal handlers)
