from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("families", "0002_family_notice")]

    operations = []
