"""The notification outbox (issue 13; reserved so the three parts of that work migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casework", "0013_edit_versions")]

    operations = []
