"""The hash of the authorization code each token was issued for (replay detection,
RFC 6749 section 10.5)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("delegation_idp", "0002_policyversion"),
    ]

    operations = [
        migrations.AddField(
            model_name="tokenlineage",
            name="code_hash",
            field=models.CharField(blank=True, db_index=True, editable=False, max_length=64, null=True),
        ),
    ]
