"""Indexes for triage and matching (issue 14; reserved so its parts migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("families", "0005_state_locks")]

    operations = []
