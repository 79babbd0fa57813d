"""Keys: the keyring (KEKs, index and audit keys) and the wrapping of data keys."""

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyringError(ImproperlyConfigured):
    """The keyring is missing, unreadable, or lacks a key that is needed."""


class DecryptionError(Exception):
    """A value could not be decrypted. Never answered with ciphertext or a blank."""


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


def fingerprint(key: bytes) -> str:
    """A short, safe-to-show identifier of a key (SHA-256 prefix)."""
    return hashlib.sha256(key).hexdigest()[:12]
