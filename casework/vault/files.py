"""Encrypted files: attachments and scans, one owner key each, through Django's storage API.

Where they live is the "attachments" storage of STORAGES (config/settings.py): a local
folder by default (MEDIA_ROOT/vault/), a shared filesystem or an S3-compatible store
(django-storages) when several web hosts serve Passage. Names are random and say
nothing; files are never served as static files, only by a view that checks permission
and calls open_file().

On a local folder a file is written whole or not at all: into a temporary file beside
it, flushed to disk (fsync), then renamed into place; a failure (a full disk) removes
the temporary file and raises FileNotStored, so no partial or orphan file is left.
"""

import os
import re
import secrets
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy

from .keys import DecryptionError
from .records import decrypt, encrypt


class FileNotStored(Exception):
    """The encrypted file could not be written (full disk, storage down): nothing kept."""


STORAGE_FULL = gettext_lazy(
    "The file could not be stored: the server is out of space or its storage is down. "
    "Everything else you entered is kept below; try again later or without the file, "
    "and tell an administrator."
)


class VaultFileStorage(FileSystemStorage):
    """The default: MEDIA_ROOT/vault/, private (0700 folders, 0600 files), never served
    (no URL). It follows MEDIA_ROOT when that setting changes (as the tests change it)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("base_url", None)
        kwargs.setdefault("file_permissions_mode", 0o600)
        kwargs.setdefault("directory_permissions_mode", 0o700)
        super().__init__(**kwargs)

    @cached_property
    def base_location(self):
        return self._value_or_setting(self._location, str(Path(settings.MEDIA_ROOT) / "vault"))

    def url(self, name):
        raise ValueError("Vault files have no URL: a permission-checked view serves them.")


def storage():
    return storages["attachments"]


def _name(name: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", name or ""):
        raise DecryptionError("Not a vault file name.")
    return f"{name[:2]}/{name}"


def _file_path(name: str) -> Path:
    """Where a file lies on a local attachments storage (tests and backups look)."""
    return Path(storage().path(_name(name)))


def _file_aad(name: str, data_key) -> bytes:
    return f"passage:file|{name}|{data_key.pk}".encode()


def save_file(data_key, data: bytes) -> str:
    """Encrypt `data` under the owner's key into the attachments storage under a random
    name; FileNotStored if it cannot be written (and then nothing is left behind)."""
    name = secrets.token_hex(16)
    blob = encrypt(data_key.dek(), bytes(data), _file_aad(name, data_key))
    target = storage()
    try:
        if isinstance(target, FileSystemStorage):
            _write_whole(Path(target.path(_name(name))), blob)
        else:
            target.save(_name(name), ContentFile(blob))
    except OSError as exc:
        raise FileNotStored(type(exc).__name__) from None
    return name


def _write_whole(path: Path, blob: bytes) -> None:
    """Temporary file, fsync, rename, fsync of the folder: whole or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def open_file(data_key, name: str) -> bytes:
    try:
        with storage().open(_name(name), "rb") as handle:
            blob = handle.read()
    except (FileNotFoundError, OSError):
        raise DecryptionError("The encrypted file is missing.") from None
    return decrypt(data_key.dek(), blob, _file_aad(name, data_key))


def delete_file(name: str) -> None:
    storage().delete(_name(name))
