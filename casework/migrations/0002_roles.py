"""The four staff roles as groups, and what administrators may do in the admin."""

from django.db import migrations

ROLES = ["caseworker", "coordinator", "auditor", "administrator"]

# (app_label, model, actions): staff accounts, teams, second-factor resets, lockouts.
ADMINISTRATOR_PERMISSIONS = [
    ("casework", "user", ["add", "change", "view"]),
    ("casework", "team", ["add", "change", "delete", "view"]),
    ("casework", "backupcodedevice", ["change", "delete", "view"]),
    ("otp_totp", "totpdevice", ["change", "delete", "view"]),
    ("axes", "accessattempt", ["delete", "view"]),
    ("axes", "accessfailurelog", ["view"]),
    ("axes", "accesslog", ["view"]),
]


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after migrate; make them now so we can assign them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    assign_roles(apps)


def assign_roles(apps):
    """The groups and the administrators' permissions (get-or-create: safe to repeat)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    administrator = Group.objects.get(name="administrator")
    for app_label, model, actions in ADMINISTRATOR_PERMISSIONS:
        for action in actions:
            perm = Permission.objects.get(
                content_type__app_label=app_label, codename=f"{action}_{model}"
            )
            administrator.permissions.add(perm)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("casework", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("axes", "__latest__"),
        ("otp_totp", "__latest__"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
