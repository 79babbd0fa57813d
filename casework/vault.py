"""The vault: envelope encryption of personal data, blind indexes, rotation, shredding.

1. Keys. Key-encryption keys (KEKs) live in the keyring, outside the database. Every
   owner of personal data (a case, a family request) has its own random 256-bit data
   key (DEK), stored in a `DataKey` row wrapped by a KEK with AES-GCM.
2. Fields. An encrypted field stores version byte + nonce + AES-256-GCM ciphertext
   under the owner's DEK. The associated data binds table, field and the row's UUID,
   so a ciphertext copied to another row or field fails. Any failure raises
   `DecryptionError`; nothing returns ciphertext or a blank instead.
3. Search. Blind indexes: HMAC-SHA256 of a normalised value under a per-index key
   (HKDF from the index root key), truncated to a planned number of bits, in an
   indexed column. A search filters on the index, then decrypts and confirms.
4. Rotation re-wraps DEKs under the active KEK; data is never re-encrypted.
5. Shredding destroys the wrapped DEK: the record can no longer be read with any key.

The keyring lives outside the database (a file named by PASSAGE_KEYRING, mode 0600,
or the same JSON in the PASSAGE_KEYRING_JSON environment variable):

    {"version": 1,
     "keks": [{"id": "...", "key": "<base64, 32 bytes>"}, ...],   # first is active
     "index_key": "<base64, 32 bytes>",   # root of the blind-index keys
     "audit_key": "<base64, 32 bytes>"}   # HMAC chain of the access log
"""

import base64
import datetime
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django import forms
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import models, transaction
from django.utils.translation import gettext_lazy as _

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"


class KeyringError(ImproperlyConfigured):
    """The keyring is missing, unreadable, or lacks a key that is needed."""


class DecryptionError(Exception):
    """A value could not be decrypted. Never answered with ciphertext or a blank."""


class Shredded(DecryptionError):
    """The owner's data key was destroyed: the record is gone for good."""


class EncryptedFieldError(FieldError):
    """A query tried to compare, order or bulk-update an encrypted field."""


@dataclass(frozen=True)
class Keyring:
    keks: dict[str, bytes]  # in order; the first is active
    index_key: bytes
    audit_key: bytes

    @property
    def active_kek_id(self) -> str:
        return next(iter(self.keks))

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "keks": [{"id": kid, "key": _b64(key)} for kid, key in self.keks.items()],
                "index_key": _b64(self.index_key),
                "audit_key": _b64(self.audit_key),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> "Keyring":
        try:
            data = json.loads(text)
            keks = {item["id"]: _unb64(item["key"]) for item in data["keks"]}
            ring = cls(
                keks=keks, index_key=_unb64(data["index_key"]), audit_key=_unb64(data["audit_key"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(
                f"The keyring in {source} is not valid ({type(exc).__name__})."
            ) from None
        if not ring.keks:
            raise KeyringError(f"The keyring in {source} holds no key-encryption key.")
        for key in [*ring.keks.values(), ring.index_key, ring.audit_key]:
            if len(key) != KEY_BYTES:
                raise KeyringError(f"The keyring in {source} has a key that is not 256 bits.")
        return ring

    @classmethod
    def generate(cls) -> "Keyring":
        return cls(
            keks={new_kek_id(): secrets.token_bytes(KEY_BYTES)},
            index_key=secrets.token_bytes(KEY_BYTES),
            audit_key=secrets.token_bytes(KEY_BYTES),
        )


def new_kek_id() -> str:
    return f"kek-{date.today():%Y%m%d}-{secrets.token_hex(3)}"


def load_keyring() -> Keyring:
    """Read the keyring from PASSAGE_KEYRING_JSON or the file at PASSAGE_KEYRING."""
    inline = os.environ.get("PASSAGE_KEYRING_JSON")
    if inline:
        return Keyring.from_json(inline, "PASSAGE_KEYRING_JSON")
    path = settings.PASSAGE_KEYRING
    if not path:
        raise KeyringError(
            "No keyring configured: set PASSAGE_KEYRING to the key file "
            "(create one with `python manage.py keyring generate`)."
        )
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise KeyringError(
            f"The keyring file {path} cannot be read ({exc.strerror}). "
            "Create one with `python manage.py keyring generate`."
        ) from None
    return Keyring.from_json(text, str(path))


def write_keyring(ring: Keyring, path: Path, *, replace: bool = False) -> None:
    """Write the key file with mode 0600 from the start (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(ring.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if the file exists: never overwrite keys by accident
        finally:
            os.unlink(tmp)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- The keyring in use -----------------------------------------------------------------
_keyring_cache: Keyring | None = None


def keyring() -> Keyring:
    """The keyring, read once per process (reset_keyring() after changing it)."""
    global _keyring_cache
    if _keyring_cache is None:
        _keyring_cache = load_keyring()
    return _keyring_cache


def reset_keyring() -> None:
    global _keyring_cache
    _keyring_cache = None


def save_keyring(ring: Keyring) -> Path:
    """Replace the keyring file (for `keyring add` and `retire_key`)."""
    if os.environ.get("PASSAGE_KEYRING_JSON"):
        raise KeyringError(
            "The keyring comes from PASSAGE_KEYRING_JSON; change it in your secret store."
        )
    path = Path(settings.PASSAGE_KEYRING)
    write_keyring(ring, path, replace=True)
    reset_keyring()
    return path


# --- Data keys ---------------------------------------------------------------------------
def _dek_aad(purpose: str, owner_id, kek_id: str) -> bytes:
    return f"passage:dek|{purpose}|{owner_id}|{kek_id}".encode()


def wrap_dek(dek: bytes, *, purpose: str, owner_id, kek_id: str | None = None) -> tuple[str, bytes]:
    ring = keyring()
    kek_id = kek_id or ring.active_kek_id
    nonce = secrets.token_bytes(NONCE_BYTES)
    wrapped = nonce + AESGCM(ring.keks[kek_id]).encrypt(
        nonce, dek, _dek_aad(purpose, owner_id, kek_id)
    )
    return kek_id, wrapped


def unwrap_dek(wrapped: bytes, *, purpose: str, owner_id, kek_id: str) -> bytes:
    kek = keyring().keks.get(kek_id)
    if kek is None:
        raise KeyringError(
            f"The key-encryption key {kek_id!r} is not in the keyring: add it back, or "
            "restore the keyring file from its backup."
        )
    wrapped = bytes(wrapped)
    try:
        return AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _dek_aad(purpose, owner_id, kek_id)
        )
    except (InvalidTag, ValueError):
        raise DecryptionError("A data key failed its integrity check.") from None


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
            from .models import DataKey

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


# --- Encrypted fields -------------------------------------------------------------------------
class _Plaintext(property):
    """The decrypted value on the model (a property, so Model(field=value) works).

    The ciphertext sits in `<name>_ct`; the plaintext is decrypted on first read and
    kept on the instance; a new value is encrypted when the row is saved.
    """

    def __init__(self, field):
        super().__init__()
        self.field = field
        self.cache = f"_plain_{field.name}"

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if self.cache not in instance.__dict__:
            blob = getattr(instance, self.field.attname)
            value = None if blob is None else self.field.decrypt_for(instance, blob)
            instance.__dict__[self.cache] = value
        return instance.__dict__[self.cache]

    def __set__(self, instance, value):
        instance.__dict__[self.cache] = value
        instance.__dict__.setdefault("_vault_dirty", set()).add(self.field.name)

    def __delete__(self, instance):
        instance.__dict__.pop(self.cache, None)


class EncryptedMixin:
    """Stores bytes; compares, orders and bulk-updates nothing.

    None stays NULL; every other value (``""``, ``0``, ``False``, ``[]``) is encrypted.
    """

    empty_strings_allowed = False

    def __init__(self, *args, **kwargs):
        kwargs["null"] = True
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)
        # dumpdata and other serializers skip these fields: no plaintext leaves that way.
        self.serialize = False

    def get_attname(self):
        return f"{self.name}_ct"

    def get_attname_column(self):
        return self.get_attname(), self.db_column or self.name

    def get_internal_type(self):
        return "BinaryField"

    def contribute_to_class(self, cls, name, *args, **kwargs):
        super().contribute_to_class(cls, name, *args, **kwargs)
        setattr(cls, name, _Plaintext(self))

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("null", None)
        return name, path, args, kwargs

    # Reading and writing
    def aad(self, instance) -> bytes:
        return field_aad(self.model._meta.db_table, self.column, instance.pk)

    def decrypt_for(self, instance, blob) -> object:
        key = owner_data_key(instance)
        return self.decode(decrypt(key.dek(), blob, self.aad(instance)))

    def pre_save(self, instance, add):
        # A known plaintext is encrypted afresh (new nonce) on every write.
        cache = f"_plain_{self.name}"
        if cache in instance.__dict__:
            value = instance.__dict__[cache]
            blob = None
            if value is not None:
                dek = owner_data_key(instance).dek()
                blob = encrypt(dek, self.encode(value), self.aad(instance))
            setattr(instance, self.attname, blob)
        return getattr(instance, self.attname)

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        return connection.Database.Binary(bytes(value))

    def from_db_value(self, value, expression, connection):
        return None if value is None else bytes(value)

    def to_python(self, value):
        return value

    def value_from_object(self, obj):
        return getattr(obj, self.name)

    def value_to_string(self, obj):
        raise EncryptedFieldError("Encrypted fields are not serialised; use an export view.")

    # Queries: only isnull.
    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise EncryptedFieldError(
            f"{self.model.__name__}.{self.name} is encrypted: it cannot be compared with "
            f"'{lookup_name}'. Search through its blind index instead."
        )

    def get_transform(self, lookup_name):
        raise EncryptedFieldError(f"{self.model.__name__}.{self.name} is encrypted.")

    # Codec, per type
    def encode(self, value) -> bytes:
        raise NotImplementedError

    def decode(self, raw: bytes):
        raise NotImplementedError


class EncryptedTextField(EncryptedMixin, models.Field):
    description = _("Encrypted text")

    # surrogatepass: any Python string round-trips, even a lone surrogate.
    def encode(self, value) -> bytes:
        return str(value).encode("utf-8", "surrogatepass")

    def decode(self, raw: bytes):
        return raw.decode("utf-8", "surrogatepass")

    def formfield(self, **kwargs):
        kwargs.setdefault("widget", forms.Textarea)
        return forms.CharField(
            required=not self.blank,
            label=self.verbose_name,
            help_text=self.help_text,
            max_length=self.max_length,
            **kwargs,
        )


class EncryptedCharField(EncryptedTextField):
    description = _("Encrypted short text")

    def __init__(self, *args, max_length=200, **kwargs):
        super().__init__(*args, max_length=max_length, **kwargs)

    def formfield(self, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)
        return super().formfield(**kwargs)


class EncryptedDateField(EncryptedMixin, models.Field):
    description = _("Encrypted date")

    def encode(self, value) -> bytes:
        if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
            raise TypeError("EncryptedDateField takes a datetime.date.")
        return value.isoformat().encode()

    def decode(self, raw: bytes):
        return datetime.date.fromisoformat(raw.decode())

    def formfield(self, **kwargs):
        return forms.DateField(
            required=not self.blank, label=self.verbose_name, help_text=self.help_text, **kwargs
        )


class EncryptedJSONField(EncryptedMixin, models.Field):
    description = _("Encrypted JSON")

    def encode(self, value) -> bytes:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "surrogatepass")

    def decode(self, raw: bytes):
        return json.loads(raw.decode("utf-8", "surrogatepass"))

    def formfield(self, **kwargs):
        return forms.JSONField(required=not self.blank, label=self.verbose_name, **kwargs)


class EncryptedBinaryField(EncryptedMixin, models.Field):
    description = _("Encrypted bytes")

    def encode(self, value) -> bytes:
        return bytes(value)

    def decode(self, raw: bytes):
        return raw

    def formfield(self, **kwargs):
        return None


def encrypted_field_names(model) -> set[str]:
    return {f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)}


def _refers_to_encrypted(model, path: str) -> bool:
    """Does a lookup path like "case__legal_name" end on an encrypted field?"""
    opts = model._meta
    for part in path.lstrip("-+").split("__"):
        try:
            field = opts.get_field(part)
        except Exception:
            return False
        if isinstance(field, EncryptedMixin):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        opts = field.related_model._meta
    return False


class VaultQuerySet(models.QuerySet):
    """Refuses ordering and bulk updates on encrypted fields (they would order or
    overwrite ciphertext, silently)."""

    def _names_in(self, args):
        for arg in args:
            if isinstance(arg, str):
                yield arg
            else:
                for ref in getattr(arg, "flatten", lambda: [])():
                    if isinstance(ref, models.F):
                        yield ref.name

    def order_by(self, *field_names):
        for name in self._names_in(field_names):
            if _refers_to_encrypted(self.model, name):
                raise EncryptedFieldError(f"Cannot order by encrypted field {name!r}.")
        return super().order_by(*field_names)

    def update(self, **kwargs):
        bad = encrypted_field_names(self.model) & set(kwargs)
        if bad:
            raise EncryptedFieldError(
                f"QuerySet.update() cannot write encrypted fields {sorted(bad)}: "
                "load the rows and save() them."
            )
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        bad = encrypted_field_names(self.model) & set(fields)
        if bad:
            raise EncryptedFieldError(f"bulk_update() cannot write encrypted fields {sorted(bad)}.")
        return super().bulk_update(objs, fields, batch_size=batch_size)


VaultManager = models.Manager.from_queryset(VaultQuerySet)


# --- Normalisation and blind indexes ------------------------------------------------------
_CHAR_MAP = str.maketrans(
    {
        "\u064a": "\u06cc",  # ي Arabic yeh -> ی Persian yeh
        "\u0649": "\u06cc",  # ى alef maksura -> ی
        "\u0643": "\u06a9",  # ك Arabic kaf -> ک Persian keheh
        "\u0623": "\u0627",  # أ -> ا
        "\u0625": "\u0627",  # إ -> ا
        "\u0622": "\u0627",  # آ -> ا
        "\u0671": "\u0627",  # ٱ -> ا
        "\u0629": "\u0647",  # ة -> ه
        "\u0624": "\u0648",  # ؤ -> و
        "\u0626": "\u06cc",  # ئ -> ی
        "\u0640": None,  # tatweel
        **{chr(0x06F0 + i): str(i) for i in range(10)},  # Persian digits
        **{chr(0x0660 + i): str(i) for i in range(10)},  # Arabic-Indic digits
    }
)
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212_.,;:/\u060c\u061b]+")
_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc\u02bb`\u00b4]")


def normalise(text: str) -> str:
    """The comparable form of a name, for blind indexes and confirmation.

    1. NFKC (folds Arabic presentation forms and full-width letters), case folding.
    2. ZWNJ becomes a space; other format and control characters (ZWJ, LRM/RLM, bidi
       overrides and isolates, BOM, NUL) are dropped.
    3. Decompose and drop combining marks (harakat, Latin accents), then unify
       Persian/Arabic letters and digits.
    4. Apostrophes vanish; spaces, hyphens and punctuation collapse to one space.
    """
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = text.replace("\u200c", " ")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(
        ch if not unicodedata.category(ch).startswith("C") else (" " if ch.isspace() else "")
        for ch in text
        if not unicodedata.combining(ch) and unicodedata.category(ch) not in ("Mn", "Me")
    )
    text = text.translate(_CHAR_MAP)
    text = _APOSTROPHES.sub("", text)
    text = _SEPARATORS.sub(" ", text).strip()
    return unicodedata.normalize("NFC", text)


def tokens(text: str) -> list[str]:
    return [t for t in normalise(text).split(" ") if t]


def normalise_phone(text: str) -> str:
    """The last nine digits (Persian and Arabic digits count), or "" if fewer than six."""
    digits = re.sub(r"\D", "", normalise(text))
    return digits[-9:] if len(digits) >= 6 else ""


def normalise_email(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("C")).strip()


def plan_bits(rows: int) -> int:
    """Bits to keep of each index hash, by CipherSweet's rule.

    With R rows and b bits, a lookup expects R / 2^b false matches. We keep that
    between 2 and sqrt(R) (so the index alone never pins a row down, yet a lookup
    stays cheap) and take the largest such b: b = floor(log2 R) - 1.
    """
    rows = max(int(rows), 16)
    return max(1, math.floor(math.log2(rows)) - 1)


@dataclass(frozen=True)
class BlindIndex:
    """A declared index over one or more encrypted fields of a model.

    name: global scope of the index (e.g. "case.names"); its key is derived from it.
    fields: encrypted fields feeding it; a JSON field contributes each list item.
    rows: how many values the index is planned for (sets the bits, see plan_bits).
    kind: "name" (whole value and each token), "phone" (the last nine digits, so
      +98 912 345 6789 and 0912-345-6789 meet) or "email" (the whole address).
    """

    name: str
    fields: tuple[str, ...]
    rows: int = 1_000_000
    kind: str = "name"

    def whole(self, value: str) -> str:
        if self.kind == "phone":
            return normalise_phone(value)
        if self.kind == "email":
            return normalise_email(value)
        return normalise(value)

    def parts(self, value: str) -> list[str]:
        return tokens(value) if self.kind == "name" else []

    @property
    def bits(self) -> int:
        return plan_bits(self.rows)

    def key(self) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=f"passage:bidx|{self.name}".encode(),
        ).derive(keyring().index_key)

    def hash(self, value: str, kind: str, key: bytes | None = None) -> int:
        digest = hmac.new(key or self.key(), f"{kind}|{value}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") >> (64 - self.bits)

    def values(self, instance) -> list[str]:
        out = []
        for name in self.fields:
            value = getattr(instance, name)
            items = value if isinstance(value, list) else [value]
            out.extend(str(v) for v in items if v not in (None, ""))
        return out

    def entries(self, instance, key=None) -> set[tuple[str, int]]:
        key = key or self.key()
        out = set()
        for value in self.values(instance):
            whole = self.whole(value)
            if whole:
                out.add(("w", self.hash(whole, "w", key)))
            out.update(("t", self.hash(t, "t", key)) for t in self.parts(value))
        return out

    def matches(self, instance, term: str) -> bool:
        """Confirmation on decrypted values: whole value, or every token of the term."""
        wanted, wanted_tokens = self.whole(term), set(self.parts(term))
        if not wanted:
            return False
        for value in self.values(instance):
            if self.whole(value) == wanted:
                return True
        have = {t for value in self.values(instance) for t in self.parts(value)}
        return bool(wanted_tokens) and wanted_tokens <= have


def blind_indexes(model) -> list[BlindIndex]:
    return list(getattr(model, "blind_indexes", ()))


def update_blind_indexes(instance, *, only_if_dirty=True, adding=False) -> None:
    """Rewrite the index entries of one row (called by VaultModel.save).

    One DELETE (none for a new row) and one INSERT, however many indexes and tokens:
    the public family form must run the same queries whatever names it is given.
    """
    from .models import BlindIndexEntry

    dirty = instance.__dict__.get("_vault_dirty", set())
    indexes = [
        index
        for index in blind_indexes(type(instance))
        if not only_if_dirty or dirty & set(index.fields)
    ]
    if not indexes:
        return
    key = owner_data_key(instance)
    if not adding:
        BlindIndexEntry.objects.filter(
            index__in=[i.name for i in indexes], row_id=instance.pk
        ).delete()
    BlindIndexEntry.objects.bulk_create(
        [
            BlindIndexEntry(
                index=index.name, kind=kind, value=value, row_id=instance.pk, data_key=key
            )
            for index in indexes
            for kind, value in sorted(index.entries(instance))
        ]
    )


def candidate_ids(index: BlindIndex, term: str) -> set:
    """Row ids the index offers for `term`: the whole value, or all of its tokens.

    Two queries, both answered from the (index, kind, value) index; the tokens are
    intersected in the database, so a common first name costs no transfer of its rows.
    """
    from .models import BlindIndexEntry

    key = index.key()
    whole = index.whole(term)
    if not whole:
        return set()
    entries = BlindIndexEntry.objects.filter(index=index.name)
    ids = set(
        entries.filter(kind="w", value=index.hash(whole, "w", key)).values_list("row_id", flat=True)
    )
    hashes = {index.hash(t, "t", key) for t in index.parts(term)}
    wanted = [entries.filter(kind="t", value=h) for h in hashes]
    if wanted:
        first, *rest = (q.values_list("row_id", flat=True) for q in wanted)
        ids.update(first.intersection(*rest) if rest else first)
    return ids


def search(queryset, index_name: str, term: str) -> list:
    """Rows of `queryset` whose indexed names match `term`, confirmed by decryption."""
    index = next(i for i in blind_indexes(queryset.model) if i.name == index_name)
    ids = candidate_ids(index, term)
    if not ids:
        return []
    return [
        row
        for row in queryset.filter(pk__in=ids)
        if not _shredded(row) and index.matches(row, term)
    ]


def _shredded(instance) -> bool:
    try:
        return owner_data_key(instance).shredded_at is not None
    except ImproperlyConfigured:
        return False


class VaultModel(models.Model):
    """Abstract base for models with encrypted fields: UUID key made in Python (the
    associated data needs it before the INSERT), the safe manager, index upkeep."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    objects = VaultManager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        adding = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if blind_indexes(type(self)):
                update_blind_indexes(self, adding=adding)
        self.__dict__.pop("_vault_dirty", None)

    @classmethod
    def check(cls, **kwargs):
        from django.core import checks

        errors = super().check(**kwargs)
        for name in cls._meta.ordering or ():
            if isinstance(name, str) and _refers_to_encrypted(cls, name):
                errors.append(
                    checks.Error(
                        f"Meta.ordering uses encrypted field {name!r}.", obj=cls, id="passage.E002"
                    )
                )
        return errors


# --- Shredding ---------------------------------------------------------------------------------
def shred(owner: DataKeyOwner, *, keep_index: bool = False) -> None:
    """Destroy the owner's data key; its records can never be decrypted again.

    Blind-index entries go too unless `keep_index` (family requests keep them as
    tombstones for screening).
    """
    from .models import BlindIndexEntry, DataKey

    with transaction.atomic():
        DataKey.objects.filter(pk=owner.data_key_id).update(
            wrapped=b"", kek_id="", shredded_at=datetime.datetime.now(datetime.UTC)
        )
        if not keep_index:
            BlindIndexEntry.objects.filter(data_key_id=owner.data_key_id).delete()
    owner.data_key.refresh_from_db()


# --- Encrypted files -----------------------------------------------------------------------------
def _file_path(name: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}", name or ""):
        raise DecryptionError("Not a vault file name.")
    return Path(settings.MEDIA_ROOT) / "vault" / name[:2] / name


def _file_aad(name: str, data_key) -> bytes:
    return f"passage:file|{name}|{data_key.pk}".encode()


def save_file(data_key, data: bytes) -> str:
    """Encrypt `data` under the owner's key into MEDIA_ROOT/vault/ with a random name.

    The name says nothing about the content; the file is never served as a static
    file, only by a view that checks permission and calls open_file().
    """
    name = secrets.token_hex(16)
    path = _file_path(name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    blob = encrypt(data_key.dek(), bytes(data), _file_aad(name, data_key))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
    return name


def open_file(data_key, name: str) -> bytes:
    try:
        blob = _file_path(name).read_bytes()
    except FileNotFoundError:
        raise DecryptionError("The encrypted file is missing.") from None
    return decrypt(data_key.dek(), blob, _file_aad(name, data_key))


def delete_file(name: str) -> None:
    _file_path(name).unlink(missing_ok=True)


# --- Rotation and re-indexing ----------------------------------------------------------------------
def rotate(*, batch_size: int = 500, progress=None) -> int:
    """Re-wrap every live DEK that is not under the active KEK.

    1. Take a batch of such keys (on PostgreSQL locked with SKIP LOCKED, so two
       rotations can run side by side without waiting on each other).
    2. Unwrap each with its KEK, wrap it with the active one, save the batch.
    3. Commit, report progress, repeat until none is left.
    Each batch commits on its own: an interrupted run resumes where it stopped, and a
    run with nothing to do changes nothing.
    """
    from django.db import connection
    from django.utils import timezone

    from .models import DataKey

    active = keyring().active_kek_id
    pending = DataKey.objects.filter(shredded_at__isnull=True).exclude(kek_id=active)
    total, done = pending.count(), 0
    if progress:
        progress(done, total)
    while True:
        with transaction.atomic():
            batch = pending.order_by("pk")
            if connection.features.has_select_for_update_skip_locked:
                batch = batch.select_for_update(skip_locked=True)
            batch = list(batch[:batch_size])
            if not batch:
                break
            now = timezone.now()
            for key in batch:
                dek = unwrap_dek(
                    key.wrapped, purpose=key.purpose, owner_id=key.owner_id, kek_id=key.kek_id
                )
                key.kek_id, key.wrapped = wrap_dek(dek, purpose=key.purpose, owner_id=key.owner_id)
                key.rotated_at = now
            DataKey.objects.bulk_update(batch, ["kek_id", "wrapped", "rotated_at"])
        done += len(batch)
        if progress:
            progress(done, total)
    return done


def indexed_models() -> list:
    from django.apps import apps

    return [m for m in apps.get_models() if blind_indexes(m)]


def reindex(*, batch_size: int = 500, progress=None) -> int:
    """Recompute every blind index (after the index key changed). Shredded rows are skipped."""
    from .models import BlindIndexEntry

    models_ = indexed_models()
    total = sum(m.objects.count() for m in models_)
    done = 0
    for model in models_:
        names = [i.name for i in blind_indexes(model)]
        pks = list(model.objects.values_list("pk", flat=True).order_by("pk"))
        for start in range(0, len(pks), batch_size):
            with transaction.atomic():
                rows = model.objects.filter(pk__in=pks[start : start + batch_size])
                BlindIndexEntry.objects.filter(
                    index__in=names, row_id__in=pks[start : start + batch_size]
                ).delete()
                for row in rows:
                    if not _shredded(row):
                        update_blind_indexes(row, only_if_dirty=False)
            done += len(pks[start : start + batch_size])
            if progress:
                progress(done, total)
    return done


def key_usage() -> dict[str, int]:
    """Live data keys per KEK id (for `keyring status` and `retire_key`)."""
    from django.db.models import Count

    from .models import DataKey

    rows = DataKey.objects.filter(shredded_at__isnull=True).values("kek_id").annotate(n=Count("id"))
    return {row["kek_id"]: row["n"] for row in rows}


def fingerprint(key: bytes) -> str:
    """A short, safe-to-show identifier of a key (SHA-256 prefix)."""
    return hashlib.sha256(key).hexdigest()[:12]
