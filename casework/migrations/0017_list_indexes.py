"""Indexes for the case list, board and searches (issue 14; reserved so its parts migrate in one order).

- The case list pages by key in the order (opened_on DESC, reference DESC): one index for
  that order and one per filter (stage, risk, team) followed by it. The single-column
  indexes on stage and risk become their prefixes and go. The caseworker filter is a
  join from guardian's (user, permission, object) index.
- The blind index's lookup index gains the row id, so a name search reads only the
  index; the old lookup index was its prefix and goes.
- A search by reference compares the exact stored value on the reference's unique
  index: references are stored upper-case (they are made that way; any older row is
  brought into line here), so no case-insensitive scan is needed.
"""

from django.db import migrations, models
from django.db.models.functions import Upper


def references_upper_case(apps, schema_editor):
    Case = apps.get_model("casework", "Case")
    Case.objects.exclude(reference=Upper("reference")).update(reference=Upper("reference"))


class Migration(migrations.Migration):
    dependencies = [("casework", "0016_transparency_log")]

    operations = [
        migrations.RunPython(references_upper_case, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="case",
            name="risk",
            field=models.CharField(
                choices=[
                    ("low", "Low"),
                    ("medium", "Medium"),
                    ("high", "High"),
                    ("critical", "Critical"),
                ],
                default="medium",
                max_length=10,
                verbose_name="risk level",
            ),
        ),
        migrations.AlterField(
            model_name="case",
            name="stage",
            field=models.CharField(
                choices=[
                    ("intake", "Intake"),
                    ("refuge", "Refuge"),
                    ("resettlement", "Resettlement"),
                    ("reunification", "Reunification"),
                    ("closed", "Closed"),
                ],
                default="intake",
                max_length=20,
                verbose_name="stage",
            ),
        ),
        # The blind index's lookup holds the row too: a name search or a match reads
        # the index only (no table access per entry), however common the name.
        migrations.AddIndex(
            model_name="blindindexentry",
            index=models.Index(
                fields=["index", "kind", "value", "row_id"], name="blind_index_offer"
            ),
        ),
        migrations.RemoveIndex(model_name="blindindexentry", name="blind_index_lookup"),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["-opened_on", "-reference"], name="case_list_order"),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["stage", "-opened_on", "-reference"], name="case_list_stage"),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["risk", "-opened_on", "-reference"], name="case_list_risk"),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["team", "-opened_on", "-reference"], name="case_list_team"),
        ),
    ]
