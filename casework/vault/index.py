"""Search: normalisation, blind indexes, and VaultModel, which keeps them up to date."""

import hashlib
import hmac
import math
import re
import unicodedata
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.db import models, transaction

from .fields import VaultManager, _refers_to_encrypted
from .keys import keyring
from .records import _shredded, owner_data_key

# --- Normalisation and blind indexes ------------------------------------------------------
# Persian and Arabic-Indic digits as ASCII: for names here, and for references typed
# with them (casework/search.py).
ASCII_DIGITS = str.maketrans(
    {
        **{chr(0x06F0 + i): str(i) for i in range(10)},  # Persian digits
        **{chr(0x0660 + i): str(i) for i in range(10)},  # Arabic-Indic digits
    }
)
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
        **ASCII_DIGITS,
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
    from ..models import BlindIndexEntry

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


def candidate_ids(
    index: BlindIndex,
    term: str,
    *,
    min_tokens: int | None = None,
    limit: int | None = None,
    among=None,
) -> set:
    """Row ids the index offers for `term`.

    1. Without `min_tokens`: rows holding the whole value, or every token of it.
    2. With `min_tokens` (k): rows holding the whole value, or at least k of its distinct
       tokens together. A term of fewer than k tokens offers nothing, not even by its
       whole value: with k = 2, a given name alone ("Maryam") is no name to look up.
    3. `among` (a queryset of row ids) keeps only those rows, in the database; `limit`
       bounds the rows offered each way, those sharing the most tokens first.

    Two queries, both answered from the (index, kind, value) index. Tokens are counted
    per row in the database (GROUP BY row, HAVING enough tokens), so a common first name
    costs no transfer of its rows, and a term of many tokens costs no more queries than
    a term of two (no lookup per pair of tokens).
    """
    from django.db.models import Count

    from ..models import BlindIndexEntry

    key = index.key()
    whole = index.whole(term)
    parts = set(index.parts(term))
    if not whole or (min_tokens is not None and len(parts) < min_tokens):
        return set()
    entries = BlindIndexEntry.objects.filter(index=index.name)
    if among is not None:
        entries = entries.filter(row_id__in=among)
    wholes = entries.filter(kind="w", value=index.hash(whole, "w", key)).order_by("row_id")
    ids = set(wholes.values_list("row_id", flat=True)[:limit])
    hashes = {index.hash(t, "t", key) for t in parts}
    need = len(hashes) if min_tokens is None else min_tokens
    if hashes and len(hashes) >= need:
        rows = (
            entries.filter(kind="t", value__in=sorted(hashes))
            .values("row_id")
            .annotate(shared=Count("value", distinct=True))
            .filter(shared__gte=need)
            .order_by("-shared", "row_id")
        )
        ids.update(row["row_id"] for row in rows[:limit])
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


# --- The base of models with encrypted fields ---------------------------------------------
class VaultModel(models.Model):
    """Abstract base for models with encrypted fields: UUID key made in Python (the
    associated data needs it before the INSERT), the safe manager, index upkeep."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    objects = VaultManager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        adding = self._state.adding
        # The row and its indexes together: a transaction of their own, or the caller's
        # (joined, with no savepoint: a failure here fails the caller's work too, which
        # no caller goes on from).
        with transaction.atomic(savepoint=False):
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
