"""Sensible checklists per aim; coordinators edit them in Passage."""

from django.db import migrations

URGENT, HIGH, NORMAL, LOW = 0, 1, 2, 3

TEMPLATES = {
    ("Arrival and refuge", "refuge"): [
        ("Agree a safety plan with the person", URGENT, 1),
        ("Arrange safe transport", HIGH, 3),
        ("Find emergency accommodation", URGENT, 2),
        ("Book legal advice on asylum or residence", HIGH, 7),
        ("Replace lost or withheld identity documents", NORMAL, 21),
    ],
    ("Resettlement checklist", "resettlement"): [
        ("Residence-permit appointment", HIGH, 7),
        ("Housing", HIGH, 14),
        ("Bank account", NORMAL, 14),
        ("Doctor registration", NORMAL, 21),
        ("Counselling intake", HIGH, 7),
        ("Language course", NORMAL, 30),
    ],
    ("Family contact request", "reunification"): [
        ("Ask the person about the family request", HIGH, 7),
        ("Record their answer in the consent ledger", HIGH, 7),
        ("Prepare mediated contact if agreed", NORMAL, 14),
    ],
    ("Counselling and support", "support"): [
        ("Counselling intake", HIGH, 7),
        ("Introduce a mentor from the community", NORMAL, 14),
        ("Check-in call", NORMAL, 30),
    ],
    ("Case administration", "administration"): [
        ("File signed consent forms", NORMAL, 7),
        ("Review risk level", NORMAL, 30),
    ],
}


def seed(apps, schema_editor):
    Template = apps.get_model("casework", "TaskTemplate")
    Item = apps.get_model("casework", "TaskTemplateItem")
    for (name, aim), items in TEMPLATES.items():
        template, created = Template.objects.get_or_create(name=name, defaults={"aim": aim})
        if created:
            for position, (title, priority, days) in enumerate(items):
                Item.objects.create(template=template, title=title, priority=priority,
                                    due_in_days=days, position=position)


class Migration(migrations.Migration):
    dependencies = [("casework", "0006_task_queues")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
