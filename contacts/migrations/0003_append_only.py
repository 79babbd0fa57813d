"""Relayed messages, once reviewed, only move forward: triggers refuse anything else."""

from django.db import migrations


def install(apps, schema_editor):
    from casework import audit

    audit.install_triggers(schema_editor, "contacts_message", "id")


def remove(apps, schema_editor):
    from casework import audit

    audit.drop_triggers(schema_editor.connection, "contacts_message")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0002_consent_ledger")]

    operations = [migrations.RunPython(install, remove)]
