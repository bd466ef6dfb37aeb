"""The audience allow-list of applications that are not registered parties (RFC 8707),
and the policy version trigger on its link table (see delegation_idp.provider.policy_triggers)."""

from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings

from delegation_idp.provider import policy_triggers as triggers


def forwards(apps, schema_editor):
    # Idempotent: re-creates the existing triggers and adds the new link table's.
    triggers.install(schema_editor, apps)


def backwards(apps, schema_editor):
    # The link table is dropped by the reverse of AddField, and its triggers with it.
    pass


class Migration(migrations.Migration):

    dependencies = [
        ("delegation_idp", "0003_code_replay"),
        migrations.swappable_dependency(oauth2_settings.APPLICATION_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="party",
            name="clients",
            field=models.ManyToManyField(
                blank=True,
                help_text=(
                    "Applications that are not registered parties and may name this party as the "
                    "RFC 8707 resource of their own tokens. Registered agents never may: they reach "
                    "other parties by token exchange only."
                ),
                related_name="delegation_audiences",
                to=oauth2_settings.APPLICATION_MODEL,
                verbose_name="clients that may address tokens to this party",
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
