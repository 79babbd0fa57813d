"""The access log as a transparency log: sequence, Merkle tree, checkpoints (issue 14; reserved so its parts migrate in one order)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casework", "0015_keyring_state")]

    operations = []
