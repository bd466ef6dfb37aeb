"""Fewer index pages written on every issuance (issue 15): each lineage and audit index is
declared for the look-ups it serves. No LIKE-only twin beside an exact-match index on
PostgreSQL (``jti`` becomes a unique constraint; ``path`` keeps only its pattern-ops index,
which also serves equality); no index on ``parent_jti``, which nothing searches; partial
indexes on the columns that are NULL on nearly every row (``revoked_at``, ``code_hash``,
``approval``)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):
    dependencies = [
        ("delegation_idp", "0013_fewer_write_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(oauth2_settings.ACCESS_TOKEN_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="client_id",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="jti",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="subject",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="user_id",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="approval",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="delegation_idp.approvalrequest",
            ),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="client_id",
            field=models.CharField(max_length=255),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="code_hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="jti",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="kid",
            field=models.CharField(max_length=128),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="parent_jti",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="path",
            field=models.CharField(max_length=1100),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="revoked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="tokenlineage",
            name="root_jti",
            field=models.CharField(max_length=64),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["client_id"], name="delegation_idp_audit_client"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["user_id"], name="delegation_idp_audit_user"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["subject"], name="delegation_idp_audit_subject"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["jti"], name="delegation_idp_audit_jti"),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(fields=["root_jti"], name="delegation_idp_lineage_root"),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(
                fields=["path"], name="delegation_idp_lineage_path", opclasses=["varchar_pattern_ops"]
            ),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(fields=["client_id"], name="delegation_idp_lineage_client"),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(fields=["kid"], name="delegation_idp_lineage_kid"),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(
                condition=models.Q(("revoked_at__isnull", False)),
                fields=["revoked_at"],
                name="delegation_idp_lineage_revk",
            ),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(
                condition=models.Q(("code_hash__isnull", False)),
                fields=["code_hash"],
                name="delegation_idp_lineage_code",
            ),
        ),
        migrations.AddIndex(
            model_name="tokenlineage",
            index=models.Index(
                condition=models.Q(("approval__isnull", False)),
                fields=["approval"],
                name="delegation_idp_lineage_appr",
            ),
        ),
        migrations.AddConstraint(
            model_name="tokenlineage",
            constraint=models.UniqueConstraint(fields=("jti",), name="delegation_idp_lineage_jti"),
        ),
    ]
