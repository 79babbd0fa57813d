"""Records: value encryption under a data key, the owners of data keys, shredding."""

import datetime
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

from .keys import NONCE_BYTES, DecryptionError

VERSION = b"\x01"


class Shredded(DecryptionError):
    """The owner's data key was destroyed: the record is gone for good."""


# --- Value encryption ----------------------------------------------------------------------
def field_aad(table: str, field: str, row_id) -> bytes:
    return f"passage:v1|{table}|{field}|{row_id}".encode()


def encrypt(dek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return VERSION + nonce + AESGCM(dek).encrypt(nonce, plaintext, aad)


def decrypt(dek: bytes, blob: bytes, aad: bytes) -> bytes:
    blob = bytes(blob)
    if blob[:1] != VERSION or len(blob) < 1 + NONCE_BYTES + 16:
        raise DecryptionError("Unknown ciphertext format.")
    try:
        return AESGCM(dek).decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionError("A value failed its integrity check.") from None


class DataKeyOwner(models.Model):
    """Abstract base of every model that owns a data key (a case, a family request).

    The key is made with the row; `vault_purpose` names what it protects.
    """

    vault_purpose = "record"

    data_key = models.OneToOneField(
        "casework.DataKey", on_delete=models.PROTECT, editable=False, related_name="+"
    )

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.data_key_id is None:
            from ..models import DataKey

            self.data_key = DataKey.objects.create_for(self.vault_purpose, self.pk)
        super().save(*args, **kwargs)

    @property
    def is_shredded(self) -> bool:
        return self.data_key.shredded_at is not None


def owner_data_key(instance):
    """The DataKey protecting `instance`: its own, or its owner's (`vault_owner`)."""
    path = getattr(type(instance), "vault_owner", None)
    owner = instance
    for part in path.split(".") if path else ():
        owner = getattr(owner, part)
    if not isinstance(owner, DataKeyOwner):
        raise ImproperlyConfigured(f"{type(instance).__name__} has no data key owner.")
    if owner.data_key_id is None:
        raise ImproperlyConfigured("Save the owning record before its encrypted children.")
    return owner.data_key


# --- Shredding ---------------------------------------------------------------------------------
def shred(owner: DataKeyOwner, *, keep_index: bool = False) -> None:
    """Destroy the owner's data key; its records can never be decrypted again.

    Blind-index entries go too unless `keep_index` (family requests keep them as
    tombstones for screening).
    """
    from ..models import BlindIndexEntry, DataKey

    with transaction.atomic():
        DataKey.objects.filter(pk=owner.data_key_id).update(
            wrapped=b"", kek_id="", shredded_at=datetime.datetime.now(datetime.UTC)
        )
        if not keep_index:
            BlindIndexEntry.objects.filter(data_key_id=owner.data_key_id).delete()
    owner.data_key.refresh_from_db()


def _shredded(instance) -> bool:
    try:
        return owner_data_key(instance).shredded_at is not None
    except ImproperlyConfigured:
        return False
