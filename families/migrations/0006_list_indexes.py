"""Indexes for triage and matching (issue 14; reserved so its parts migrate in one order).

Triage pages by key, oldest first (created_at, reference), over open requests only: a
partial index holds just those, so closed requests piling up cost the list nothing.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("families", "0005_state_locks")]

    operations = [
        migrations.AddIndex(
            model_name="familyrequest",
            index=models.Index(
                condition=models.Q(("stage__in", ["new", "triage"])),
                fields=["created_at", "reference"],
                name="family_triage_order",
            ),
        ),
    ]
