from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casework", "0010_append_only_history")]

    operations = []
