"""Authenticator seeds sealed under the vault (casework/otp.py).

Every plain django-otp TOTPDevice row becomes a VaultTOTPDevice with the same seed,
settings and counters (so no one needs to enrol again, and `last_t` still refuses a
used code); then the plain row is deleted. This needs the keyring.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from casework import otp, vault

KEPT = [
    "name", "confirmed", "throttling_failure_timestamp", "throttling_failure_count",
    "created_at", "last_used_at", "step", "t0", "digits", "tolerance", "drift", "last_t",
]  # fmt: skip


def _require_keyring():
    try:
        vault.keyring()
    except vault.KeyringError as exc:
        raise vault.KeyringError(
            "Migration casework.0012_vault_totp encrypts the existing TOTP seeds and needs "
            f"the keyring: {exc} Set PASSAGE_KEYRING (or PASSAGE_KEYRING_JSON) and run "
            "migrate again; nothing was changed."
        ) from None


def seal_plain_devices(apps, schema_editor):
    """Encrypt every plain TOTPDevice into a VaultTOTPDevice, then delete the plain rows."""
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    VaultTOTPDevice = apps.get_model("casework", "VaultTOTPDevice")
    DataKey = apps.get_model("casework", "DataKey")
    plain = list(TOTPDevice.objects.all())
    if not plain:
        return
    _require_keyring()
    for device in plain:
        vault_id = uuid.uuid4()
        data_key = otp.new_data_key(DataKey, vault_id)
        sealed = VaultTOTPDevice(
            vault_id=vault_id,
            user_id=device.user_id,
            data_key=data_key,
            seed=otp.seal_seed(
                data_key, bytes.fromhex(device.key), vault_id=vault_id, user_id=device.user_id
            ),
            **{field: getattr(device, field) for field in KEPT},
        )
        sealed.save()
        if device.created_at is not None:  # auto_now_add overwrote it on insert
            VaultTOTPDevice.objects.filter(pk=sealed.pk).update(created_at=device.created_at)
    TOTPDevice.objects.filter(pk__in=[device.pk for device in plain]).delete()


def unseal_devices(apps, schema_editor):
    """Back to plain rows (only to undo this migration on purpose)."""
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    VaultTOTPDevice = apps.get_model("casework", "VaultTOTPDevice")
    DataKey = apps.get_model("casework", "DataKey")
    sealed = list(VaultTOTPDevice.objects.select_related("data_key"))
    if not sealed:
        return
    _require_keyring()
    for device in sealed:
        key = device.data_key
        dek = vault.unwrap_dek(key.wrapped, purpose=key.purpose, owner_id=key.owner_id, kek_id=key.kek_id)
        seed = vault.decrypt(dek, device.seed, otp.seed_aad(device.vault_id, device.user_id))
        TOTPDevice.objects.create(
            user_id=device.user_id, key=seed.hex(), **{field: getattr(device, field) for field in KEPT}
        )
    key_ids = [device.data_key_id for device in sealed]
    VaultTOTPDevice.objects.filter(pk__in=[device.pk for device in sealed]).delete()
    DataKey.objects.filter(pk__in=key_ids).delete()


def grant_administrators(apps, schema_editor):
    """Administrators list authenticators (as they did django-otp's); resets go through
    the account page. The plain model's permissions stay until otp_totp is removed."""
    from django.contrib.auth.management import create_permissions

    casework = apps.get_app_config("casework")
    casework.models_module = True
    create_permissions(casework, verbosity=0)
    casework.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    administrator = Group.objects.filter(name="administrator").first()
    if administrator is None:
        return
    for action in ["change", "delete", "view"]:
        administrator.permissions.add(
            Permission.objects.get(
                content_type__app_label="casework", codename=f"{action}_vaulttotpdevice"
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("casework", "0011_staff_security"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [
        migrations.CreateModel(
            name="VaultTOTPDevice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(help_text="The human-readable name of this device.", max_length=64)),
                ("confirmed", models.BooleanField(default=True, help_text="Is this device ready for use?")),
                ("throttling_failure_timestamp", models.DateTimeField(blank=True, default=None, help_text="A timestamp of the last failed verification attempt. Null if last attempt succeeded.", null=True)),
                ("throttling_failure_count", models.PositiveIntegerField(default=0, help_text="Number of successive failed attempts.")),
                ("created_at", models.DateTimeField(auto_now_add=True, help_text="The date and time when this device was initially created in the system.", null=True)),
                ("last_used_at", models.DateTimeField(blank=True, help_text="The most recent date and time this device was used.", null=True)),
                ("vault_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("seed", models.BinaryField()),
                ("step", models.PositiveSmallIntegerField(default=30)),
                ("t0", models.BigIntegerField(default=0)),
                ("digits", models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)),
                ("tolerance", models.PositiveSmallIntegerField(default=1)),
                ("drift", models.SmallIntegerField(default=0)),
                ("last_t", models.BigIntegerField(default=-1)),
                ("data_key", models.OneToOneField(editable=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="casework.datakey")),
                ("user", models.ForeignKey(help_text="The user that this device belongs to.", on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "authenticator", "abstract": False},
        ),
        migrations.RunPython(seal_plain_devices, unseal_devices),
        migrations.RunPython(grant_administrators, migrations.RunPython.noop),
    ]
