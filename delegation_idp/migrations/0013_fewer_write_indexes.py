"""Fewer indexes written on every token request: the audit event and decision (a few values
each) and the lineage status-list key (led by the unique status entry index)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("delegation_idp", "0012_approval_requests"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="decision",
            field=models.CharField(max_length=16),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="event",
            field=models.CharField(max_length=32),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="status_list",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="delegation_idp.statuslist",
            ),
        ),
    ]
