from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("contacts", "0002_consent_ledger")]

    operations = []
