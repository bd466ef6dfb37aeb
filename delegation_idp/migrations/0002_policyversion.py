"""The policy version row and the triggers that change it (see delegation_idp.provider.policy_triggers)."""

import secrets

from django.db import migrations, models

from delegation_idp.provider import policy_triggers as triggers


def forwards(apps, schema_editor):
    PolicyVersion = apps.get_model("delegation_idp", "PolicyVersion")
    PolicyVersion.objects.using(schema_editor.connection.alias).get_or_create(
        pk=1, defaults={"version": secrets.token_hex(16)}
    )
    triggers.install(schema_editor, apps)


def backwards(apps, schema_editor):
    triggers.uninstall(schema_editor, apps)


class Migration(migrations.Migration):

    dependencies = [
        ("delegation_idp", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="PolicyVersion",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("version", models.CharField(max_length=64)),
            ],
            options={
                "verbose_name": "policy version",
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
