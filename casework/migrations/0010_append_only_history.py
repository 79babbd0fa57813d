"""Notes, stage history and task history are append-only at the database."""

from django.db import migrations

TABLES = [("casework_note", "id"), ("casework_stagechange", "id"), ("casework_taskevent", "id")]


def install(apps, schema_editor):
    from casework import audit

    for table, pk in TABLES:
        audit.install_triggers(schema_editor, table, pk)


def remove(apps, schema_editor):
    from casework import audit

    for table, _pk in TABLES:
        audit.drop_triggers(schema_editor.connection, table)


class Migration(migrations.Migration):
    dependencies = [("casework", "0009_team_family_triage")]

    operations = [migrations.RunPython(install, remove)]
