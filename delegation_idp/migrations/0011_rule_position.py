"""An explicit precedence for delegation rules (``DelegationRule.position``, lowest first).

Until now an actor's rules were tried in the order of their ids: each actor's existing rules
are numbered 1, 2, ... in that order, so every decision stays the same.
Adding a column remakes a table on SQLite, dropping its triggers: the policy version
triggers are installed again (delegation_idp.provider.policy_triggers)."""

from django.db import migrations, models

from delegation_idp.provider import policy_triggers as triggers


def number_by_id(apps, schema_editor):
    DelegationRule = apps.get_model("delegation_idp", "DelegationRule")
    alias = schema_editor.connection.alias
    rows = DelegationRule.objects.using(alias).order_by("actor_id", "id").values_list("pk", "actor_id")
    positions: dict = {}
    changed = []
    for pk, actor_id in rows:
        positions[actor_id] = positions.get(actor_id, 0) + 1
        changed.append(DelegationRule(pk=pk, position=positions[actor_id]))
    DelegationRule.objects.using(alias).bulk_update(changed, ["position"], batch_size=500)


def reinstall_triggers(apps, schema_editor):
    triggers.install(schema_editor, apps)  # idempotent


class Migration(migrations.Migration):
    dependencies = [
        ("delegation_idp", "0010_trusted_issuer_services"),
    ]

    operations = [
        migrations.AddField(
            model_name="delegationrule",
            name="position",
            field=models.PositiveIntegerField(
                blank=True,
                default=0,
                help_text="Among the actor's rules, the lowest number is tried first and the first that allows decides. Empty: after the actor's other rules.",
                verbose_name="precedence",
            ),
            preserve_default=False,
        ),
        migrations.AlterModelOptions(
            name="delegationrule",
            options={"ordering": ["actor__uri", "position", "id"], "verbose_name": "delegation rule"},
        ),
        migrations.RunPython(number_by_id, migrations.RunPython.noop),
        migrations.RunPython(reinstall_triggers, migrations.RunPython.noop),
    ]
