"""Indexes for the case list, board and searches (issue 14; reserved so its parts migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casework", "0016_transparency_log")]

    operations = []
