"""Versions for the contact edit form (issue 13; casework/versions.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("contacts", "0003_append_only")]

    operations = [
        migrations.AddField(
            model_name="contact",
            name="version",
            field=models.PositiveIntegerField(default=1, editable=False),
        ),
    ]
