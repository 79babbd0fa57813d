"""Encrypted model fields, and the queryset that keeps queries away from ciphertext."""

import datetime
import json

from django import forms
from django.core.exceptions import FieldError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .records import decrypt, encrypt, field_aad, owner_data_key


class EncryptedFieldError(FieldError):
    """A query tried to compare, order or bulk-update an encrypted field."""


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
