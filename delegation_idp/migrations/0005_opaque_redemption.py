"""Code redemptions of opaque access tokens, so a replayed authorization code revokes them
too (RFC 6749 section 10.5); JWTs carry the code's hash on their lineage row (0003)."""

import django.db.models.deletion
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):

    dependencies = [
        ("delegation_idp", "0004_client_audiences"),
        migrations.swappable_dependency(oauth2_settings.ACCESS_TOKEN_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="OpaqueRedemption",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("code_hash", models.CharField(db_index=True, editable=False, max_length=64)),
                ("token_family", models.UUIDField(blank=True, editable=False, null=True)),
                ("expires_at", models.DateTimeField(db_index=True)),
                (
                    "access_token",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=oauth2_settings.ACCESS_TOKEN_MODEL,
                    ),
                ),
            ],
            options={"verbose_name": "opaque token's code redemption"},
        ),
    ]
