"""UPDATE and DELETE on the access log fail at the database."""

from django.db import migrations


def install(apps, schema_editor):
    from casework import audit

    audit.install_triggers(schema_editor)


def remove(apps, schema_editor):
    from casework import audit

    audit.drop_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("casework", "0004_cases")]

    operations = [migrations.RunPython(install, remove)]
