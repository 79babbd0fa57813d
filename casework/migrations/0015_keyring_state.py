"""The keyring fingerprint and the keyring each process holds (issue 13; reserved so the three parts of that work migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casework", "0014_outbox")]

    operations = []
