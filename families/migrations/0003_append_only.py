"""Disclosures, once decided, only move forward: triggers refuse anything else."""

from django.db import migrations


def install(apps, schema_editor):
    from casework import audit

    audit.install_triggers(schema_editor, "families_disclosure", "id")


def remove(apps, schema_editor):
    from casework import audit

    audit.drop_triggers(schema_editor.connection, "families_disclosure")


class Migration(migrations.Migration):
    dependencies = [("families", "0002_family_notice")]

    operations = [migrations.RunPython(install, remove)]
