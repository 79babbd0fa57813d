"""Indexes for contacts and screening (issue 14; reserved so its parts migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("contacts", "0004_edit_versions")]

    operations = []
