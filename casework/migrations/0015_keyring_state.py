"""The keyring fingerprint and the keyring each process holds (issue 13; reserved so the three parts of that work migrate in one order).

1. KeyringState: the database's record of its keyring (check values, never keys).
2. ProcessKeyring: each running process's report of the ring it holds.
3. A trigger on casework_datakey refusing a data key under any KEK but the active one.
4. The keyring this migration runs with is recorded, once it has proven itself against
   the data already here (a data key under each KEK in use unwraps; the newest access
   event verifies). Without a keyring nothing is recorded: the first process that has
   one records it. A keyring that does not fit the data stops `migrate`, and nothing
   is changed.
"""

import django.utils.timezone
from django.db import migrations, models

from casework import vault


def _run(schema_editor, statements):
    # Without parameters: the PostgreSQL function's RAISE uses "%" placeholders of its own.
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install_trigger(apps, schema_editor):
    from casework.vault import registry

    _run(schema_editor, registry.trigger_sql(schema_editor.connection.vendor))


def drop_trigger(apps, schema_editor):
    from casework.vault import registry

    _run(schema_editor, registry.drop_trigger_sql(schema_editor.connection.vendor))


def record_keyring(apps, schema_editor):
    from casework.vault import keys, registry

    try:
        ring = keys.load_keyring()
    except vault.KeyringError:
        return  # recorded later, by the first process that has a keyring
    state_model = apps.get_model("casework", "KeyringState")
    registry.prove(
        ring,
        data_key_model=apps.get_model("casework", "DataKey"),
        event_model=apps.get_model("casework", "AccessEvent"),
    )
    registry.record(ring, model=state_model)
    keys.trusted(ring)


class Migration(migrations.Migration):
    dependencies = [("casework", "0014_outbox")]

    operations = [
        migrations.CreateModel(
            name="KeyringState",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("generation", models.PositiveBigIntegerField(default=1)),
                ("active_kek_id", models.CharField(max_length=64)),
                ("next_kek_id", models.CharField(blank=True, default="", max_length=64)),
                ("keks", models.JSONField(default=dict)),
                ("retired", models.JSONField(default=dict)),
                ("index_check", models.CharField(max_length=32)),
                ("audit_check", models.CharField(max_length=32)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"default_permissions": ()},
        ),
        migrations.CreateModel(
            name="ProcessKeyring",
            fields=[
                (
                    "process",
                    models.CharField(max_length=120, primary_key=True, serialize=False),
                ),
                ("role", models.CharField(max_length=20)),
                ("host", models.CharField(max_length=100)),
                ("pid", models.PositiveIntegerField()),
                ("generation", models.PositiveBigIntegerField(default=0)),
                ("active_kek_id", models.CharField(blank=True, max_length=64)),
                ("kek_ids", models.JSONField(default=list)),
                ("problem", models.CharField(blank=True, max_length=500)),
                ("started_at", models.DateTimeField()),
                ("seen_at", models.DateTimeField(db_index=True)),
            ],
            options={"default_permissions": (), "ordering": ["role", "host", "pid"]},
        ),
        migrations.RunPython(install_trigger, drop_trigger),
        migrations.RunPython(record_keyring, migrations.RunPython.noop),
    ]
