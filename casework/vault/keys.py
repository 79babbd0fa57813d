"""Keys: the keyring (KEKs, index and audit keys) and the wrapping of data keys.

The keyring in use follows its source while the process runs:

1. Every call of keyring() compares the source with the one the ring was read from:
   the key file's stat() (device, inode, modification time, size), or the value of
   PASSAGE_KEYRING_JSON. That costs about a microsecond, so a changed key file is
   picked up by the next request or task, without a restart.
2. A ring read anew is checked against the fingerprint the database keeps
   (registry.py: which KEKs it knows and which is active, check values of the index and
   audit keys). A ring that does not match is refused: keyring() raises
   KeyringMismatch naming what differs, and the process neither wraps a data key nor
   chains an access event until its source holds a matching ring. Nothing ever falls
   back to the ring it held before, and a vanished key file is refused too.
3. A database that cannot be asked yet (before `migrate`, or while it is down) leaves
   the ring unverified; the check runs again on the next call.
4. Tests and tools that switch keyrings on purpose (assigning `vault._keyring_cache`,
   or reset_keyring() after pointing PASSAGE_KEYRING elsewhere) make the ring they
   switch to the database's keyring (registry.adopt).
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyringError(ImproperlyConfigured):
    """The keyring is missing, unreadable, or lacks a key that is needed."""


class KeyringMismatch(KeyringError):
    """The keyring is not the one the database belongs to (or no longer is)."""


class DecryptionError(Exception):
    """A value could not be decrypted. Never answered with ciphertext or a blank."""


def check_value(key: bytes, label: str) -> str:
    """A keyed check value that names a key without revealing it: HMAC-SHA256 of a
    constant under the key, 128 bits. The database keeps these, never the keys."""
    return hmac.new(key, f"passage:keyring-check|{label}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Keyring:
    keks: dict[str, bytes]  # in order; the first is active
    index_key: bytes
    audit_key: bytes

    @property
    def active_kek_id(self) -> str:
        return next(iter(self.keks))

    @cached_property
    def checks(self) -> dict:
        """What the database records of this ring: check values, never the keys."""
        return {
            "keks": {kid: check_value(key, f"kek|{kid}") for kid, key in self.keks.items()},
            "index": check_value(self.index_key, "index"),
            "audit": check_value(self.audit_key, "audit"),
        }

    @cached_property
    def digest(self) -> str:
        """One value for the whole ring (its order, so its active KEK, included)."""
        text = json.dumps([list(self.checks["keks"].items()), self.checks["index"],
                           self.checks["audit"]])  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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


def _source() -> tuple:
    """Where the keyring comes from, and a signature that changes when it changes."""
    inline = os.environ.get("PASSAGE_KEYRING_JSON")
    if inline:
        return ("PASSAGE_KEYRING_JSON", inline)
    path = settings.PASSAGE_KEYRING
    if not path:
        raise KeyringError(
            "No keyring configured: set PASSAGE_KEYRING to the key file "
            "(create one with `python manage.py keyring generate`)."
        )
    try:
        st = os.stat(path)
    except OSError as exc:
        raise KeyringError(
            f"The keyring file {path} cannot be read ({exc.strerror}). "
            "Create one with `python manage.py keyring generate`."
        ) from None
    return (str(path), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def load_keyring() -> Keyring:
    """Read the keyring from PASSAGE_KEYRING_JSON or the file at PASSAGE_KEYRING."""
    source = _source()
    if source[0] == "PASSAGE_KEYRING_JSON":
        return Keyring.from_json(source[1], "PASSAGE_KEYRING_JSON")
    path = source[0]
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise KeyringError(
            f"The keyring file {path} cannot be read ({exc.strerror}). "
            "Create one with `python manage.py keyring generate`."
        ) from None
    return Keyring.from_json(text, str(path))


def write_keyring(ring: Keyring, path: Path, *, replace: bool = False) -> None:
    """Write the key file with mode 0600 from the start (never world-readable, not even briefly).

    A replacement is written beside the file and renamed over it: a process reading the
    key file sees the old ring or the new one, never half of either.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(ring.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: never overwrite keys by accident
    finally:
        tmp.unlink(missing_ok=True)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- The keyring in use -----------------------------------------------------------------
_keyring_cache: Keyring | None = None  # the ring in use
_keyring_source: tuple | None = None  # the source signature it was read at; None: set by code
_trusted: str | None = None  # digest of the ring last found to match the database
_adopt = False  # the next ring read becomes the database's (reset_keyring)
_refused: str | None = None  # the database moved on from this ring (found by the reporter)


def keyring() -> Keyring:
    """The keyring in use: re-read when its source changed, and refused (KeyringMismatch)
    when it does not match the database. See the module's docstring."""
    global _keyring_cache, _keyring_source
    ring = _keyring_cache
    if ring is None or _keyring_source is not None:
        source = _source()
        if ring is None or source != _keyring_source:
            ring = load_keyring()
            _keyring_cache, _keyring_source = ring, source
    if ring.digest != _trusted or _refused is not None:
        _verify(ring)
    return ring


def _verify(ring: Keyring) -> None:
    """Check `ring` against the database (once per ring); raise KeyringMismatch if it
    does not match. A database that cannot answer yet leaves it unverified."""
    global _trusted, _adopt, _refused
    from django.core.exceptions import AppRegistryNotReady
    from django.db import DatabaseError

    try:
        from . import registry  # the models: imported late, they need the app registry

        registry.verify(ring, adopt=_adopt)
    except (DatabaseError, AppRegistryNotReady, RuntimeError):
        # No database yet (before migrate), down, or not allowed (a test without one).
        return
    _trusted, _adopt, _refused = ring.digest, False, None


def trusted(ring: Keyring) -> None:
    """`ring` is the database's keyring: the caller has just recorded it there."""
    global _trusted, _refused
    _trusted, _refused = ring.digest, None


def refuse(message: str | None) -> None:
    """The database no longer accepts the ring in use (or, with None, accepts it again).
    Set by the process reporter when the database moved on (registry.py)."""
    global _refused
    _refused = message


def use_keyring(ring: Keyring | None) -> None:
    """Put `ring` in use as set by code (tests, the benchmark), not read from a source.
    It becomes the database's keyring at once if the database is reachable, else on the
    next use. None goes back to reading the source."""
    global _keyring_cache, _keyring_source, _adopt
    _keyring_cache, _keyring_source = ring, None
    if ring is None:
        _adopt = True
        return
    if ring.digest != _trusted:
        _adopt = True
        _verify(ring)


def reset_keyring() -> None:
    """Forget the ring in use; the next one read from the source becomes the database's
    keyring. For tests and tools that point PASSAGE_KEYRING elsewhere on purpose."""
    use_keyring(None)


def save_keyring(ring: Keyring) -> Path:
    """Replace the keyring file (for the `keyring` commands and `retire_key`).

    The caller records the change in the database first (registry.py); this process
    then uses the new ring at once, and every other one at its next request or task.
    """
    global _keyring_cache, _keyring_source
    if os.environ.get("PASSAGE_KEYRING_JSON"):
        raise KeyringError(
            "The keyring comes from PASSAGE_KEYRING_JSON; change it in your secret store."
        )
    path = Path(settings.PASSAGE_KEYRING)
    write_keyring(ring, path, replace=True)
    _keyring_cache, _keyring_source = ring, _source()
    trusted(ring)
    return path


# --- Data keys ---------------------------------------------------------------------------
def _dek_aad(purpose: str, owner_id, kek_id: str) -> bytes:
    return f"passage:dek|{purpose}|{owner_id}|{kek_id}".encode()


def wrap_dek(dek: bytes, *, purpose: str, owner_id) -> tuple[str, bytes]:
    """Wrap under the active KEK of a keyring that matches the database (and the
    database refuses, by trigger, a data key under any other KEK: registry.py)."""
    ring = keyring()
    kek_id = ring.active_kek_id
    nonce = secrets.token_bytes(NONCE_BYTES)
    wrapped = nonce + AESGCM(ring.keks[kek_id]).encrypt(
        nonce, dek, _dek_aad(purpose, owner_id, kek_id)
    )
    return kek_id, wrapped


def unwrap_dek(wrapped: bytes, *, purpose: str, owner_id, kek_id: str, ring=None) -> bytes:
    kek = (ring or keyring()).keks.get(kek_id)
    if kek is None:
        raise KeyringError(
            f"The key-encryption key {kek_id!r} is not in the keyring: add it back from a "
            "backup of the keyring with `manage.py keyring restore-kek`."
        )
    wrapped = bytes(wrapped)
    try:
        return AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _dek_aad(purpose, owner_id, kek_id)
        )
    except (InvalidTag, ValueError):
        raise DecryptionError("A data key failed its integrity check.") from None


def fingerprint(key: bytes) -> str:
    """A short, safe-to-show identifier of a key (SHA-256 prefix)."""
    return hashlib.sha256(key).hexdigest()[:12]
