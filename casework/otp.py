"""Authenticator (TOTP) devices whose seeds are encrypted under the vault.

django-otp's TOTPDevice keeps the seed as plain hex: a database dump is enough to
compute every staff member's codes. Here the seed is sealed like personal data:

1. Each device owns a `DataKey` (a random 256-bit key wrapped by the keyring's active
   KEK), so KEK rotation re-wraps it and `retire_key` counts it like any other key.
2. The seed is AES-256-GCM under that key. The associated data binds the table, the
   field, the device's UUID and its user: a ciphertext moved to another row, or a row
   moved to another account, fails with `DecryptionError`.
3. Deleting a device deletes its data key too (one query set or one row).
4. Verification is django-otp's TOTPDevice.verify_token, step for step: tolerance,
   drift, and `last_t`, so a code is accepted once (SECURITY.md case 23).
"""

import secrets
import time
import uuid
from base64 import b32encode
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import models, transaction
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, DeviceManager, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from . import vault

SEED_BYTES = 20  # django-otp's default (160 bits, RFC 4226's recommendation)
SEED_PURPOSE = "otp-seed"
SEED_TABLE = "casework_vaulttotpdevice"


def seed_aad(vault_id, user_id) -> bytes:
    return vault.field_aad(SEED_TABLE, "seed", f"{vault_id}|user={user_id}")


def new_data_key(data_key_model, owner_id):
    """A fresh data key row; takes the model class so the migration can pass its own."""
    kek_id, wrapped = vault.wrap_dek(
        secrets.token_bytes(vault.KEY_BYTES), purpose=SEED_PURPOSE, owner_id=owner_id
    )
    return data_key_model.objects.create(
        id=uuid.uuid4(), purpose=SEED_PURPOSE, owner_id=owner_id, kek_id=kek_id, wrapped=wrapped
    )


def seal_seed(data_key, seed: bytes, *, vault_id, user_id) -> bytes:
    dek = vault.unwrap_dek(
        data_key.wrapped, purpose=data_key.purpose, owner_id=data_key.owner_id,
        kek_id=data_key.kek_id,
    )  # fmt: skip
    return vault.encrypt(dek, seed, seed_aad(vault_id, user_id))


class VaultTOTPQuerySet(models.QuerySet):
    def delete(self):
        """Delete the devices and then their data keys (PROTECT keeps that order)."""
        from .models import DataKey

        with transaction.atomic():
            key_ids = list(self.values_list("data_key_id", flat=True))
            result = super().delete()
            DataKey.objects.filter(pk__in=key_ids, purpose=SEED_PURPOSE).delete()
        return result


class VaultTOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """A TOTP authenticator whose seed is sealed under the vault (see the module)."""

    # The primary key stays an integer: django-otp's persistent ids parse it with int().
    vault_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    data_key = models.OneToOneField(
        "casework.DataKey", on_delete=models.PROTECT, editable=False, related_name="+"
    )
    seed = models.BinaryField(editable=False)
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(default=-1)

    objects = DeviceManager.from_queryset(VaultTOTPQuerySet)()

    class Meta(Device.Meta):
        verbose_name = _("authenticator")

    def save(self, *args, **kwargs):
        if self.data_key_id is None:
            with transaction.atomic():
                self.set_seed(secrets.token_bytes(SEED_BYTES))
                return super().save(*args, **kwargs)
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        from .models import DataKey

        with transaction.atomic():
            data_key_id = self.data_key_id
            result = super().delete(*args, **kwargs)
            DataKey.objects.filter(pk=data_key_id, purpose=SEED_PURPOSE).delete()
        return result

    def set_seed(self, seed: bytes) -> None:
        """Seal `seed` under a new data key (an enrolment, or the migration of a plain row)."""
        from .models import DataKey

        self.data_key = new_data_key(DataKey, self.vault_id)
        self.seed = seal_seed(self.data_key, seed, vault_id=self.vault_id, user_id=self.user_id)
        self.__dict__.pop("_bin_key", None)

    @property
    def bin_key(self) -> bytes:
        """The seed, decrypted once per object; DecryptionError if it was tampered with."""
        if "_bin_key" not in self.__dict__:
            self.__dict__["_bin_key"] = vault.decrypt(
                self.data_key.dek(), self.seed, seed_aad(self.vault_id, self.user_id)
            )
        return self.__dict__["_bin_key"]

    def refresh_from_db(self, *args, **kwargs):
        self.__dict__.pop("_bin_key", None)
        super().refresh_from_db(*args, **kwargs)

    def verify_token(self, token) -> bool:
        """django_otp.plugins.otp_totp.models.TOTPDevice.verify_token, on the sealed seed."""
        allowed, _details = self.verify_is_allowed()
        if not allowed:
            return False
        try:
            token = int(token)
        except (TypeError, ValueError):
            verified = False
        else:
            totp = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
            totp.time = time.time()
            verified = totp.verify(token, self.tolerance, self.last_t + 1)
            if verified:
                self.last_t = totp.t()
                if getattr(settings, "OTP_TOTP_SYNC", True):
                    self.drift = totp.drift
                self.throttle_reset(commit=False)
                self.set_last_used_timestamp(commit=False)
                self.save()
        if not verified:
            self.throttle_increment(commit=True)
        return verified

    def get_throttle_factor(self):
        return getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1)

    @property
    def config_url(self) -> str:
        """The otpauth:// URL for the QR code (Key Uri Format, as django-otp builds it)."""
        label = str(self.user.get_username())
        params = urlencode(
            {
                "secret": b32encode(self.bin_key),
                "algorithm": "SHA1",
                "digits": self.digits,
                "period": self.step,
            }
        )
        issuer = getattr(settings, "OTP_TOTP_ISSUER", "")
        if issuer:
            issuer = issuer.replace(":", "")
            label = f"{issuer}:{label}"
            params += f"&issuer={quote(issuer)}"
        return f"otpauth://totp/{quote(label)}?{params}"
