from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("casework", "0008_daily_runs")]

    operations = [
        migrations.AddField(
            model_name="team",
            name="family_triage",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Its coordinators read and triage family requests that matched no case "
                    "(requests that matched a case go to that case's team)."
                ),
                verbose_name="triages family requests",
            ),
        ),
    ]
