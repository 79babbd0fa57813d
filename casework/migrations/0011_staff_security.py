"""One-time enrolment links, and the lockout records cleared of typed usernames.

Lockout records made before usernames were stored as keyed hashes hold what people
typed in the username box, which is sometimes a password: they are deleted (this lifts
any lockout in force, which a cool-off of minutes would have done anyway).
"""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

HASHED = r"^[0-9a-f]{64}$"


def forget_typed_usernames(apps, schema_editor):
    for name in ("AccessAttempt", "AccessFailureLog"):
        model = apps.get_model("axes", name)
        model.objects.exclude(username__regex=HASHED).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("casework", "0010_append_only_history"),
        ("axes", "__latest__"),
    ]

    operations = [
        migrations.CreateModel(
            name="EnrolmentLink",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("issued_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("expires_at", models.DateTimeField()),
                ("used_at", models.DateTimeField(blank=True, null=True)),
                (
                    "issued_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-issued_at"], "default_permissions": ()},
        ),
        migrations.RunPython(forget_typed_usernames, migrations.RunPython.noop),
    ]
