from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casework", "0009_team_family_triage")]

    operations = []
