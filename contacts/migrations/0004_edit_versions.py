"""Versions for the contact edit form (issue 13; reserved so the three parts of that work migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("contacts", "0003_append_only")]

    operations = []
