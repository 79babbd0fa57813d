from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("families", "0003_append_only")]

    operations = []
