"""One effect per family-request transition (issue 13; reserved so the three parts of that work migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("families", "0004_status_schedule")]

    operations = []
