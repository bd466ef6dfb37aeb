from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The existing site's own app: its user model and its OAuth client model."""

    name = "tests_existing_site.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
