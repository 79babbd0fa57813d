"""Encrypted files: attachments and scans under MEDIA_ROOT/vault/, one owner key each."""

import os
import re
import secrets
from pathlib import Path

from django.conf import settings

from .keys import DecryptionError
from .records import decrypt, encrypt


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
