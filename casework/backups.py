"""Backups that restore: the database, the attachment files and the keyring, together,
in one archive encrypted to age recipients (`manage.py backup` / `manage.py restore`).

Why one archive, encrypted: a restore needs all three at once (a dump without the
KEKs that wrap its data keys is noise; attachments without their rows' keys too), and
the three together reveal everything. So the archive is a tar stream encrypted with
age (X25519) as it is written, to public keys whose private keys are kept offline: this
server can make backups but cannot read them, and a thief of the backup store learns
nothing. Operators can open an archive with the `age` tool alone (`age -d -i KEY`),
without Passage.

Layout of the tar (in this order, so a restore can read it as a stream):

    passage-backup/keyring.json       the keyring: every KEK still wrapping a data key
    passage-backup/media/<name>       the encrypted attachment files, as stored
    passage-backup/database.pgdump    pg_dump -Fc (PostgreSQL), or
    passage-backup/database.sqlite3   SQLite's online backup (a consistent copy)
    passage-backup/media/<name>       files written while the database was dumped
    passage-backup/manifest.json      what is in it, and the SHA-256 of each member

Consistency: files are written before the row that names them and deleted only after
the shredding of their case has committed. The files are copied before the database
is dumped, and the files that appeared meanwhile after it, so every file a live row of
the dump names is in the archive. The keyring must not change during the backup (it
is compared before and after).
"""

import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection

from . import vault

PREFIX = "passage-backup/"
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why (no personal data)."""


# --- Where the pieces live ------------------------------------------------------------------
def attachment_storage():
    """The storage of the encrypted files (casework/vault/files.py), or, where that module
    has none, the folder it writes to."""
    from django.core.files.storage import FileSystemStorage

    from .vault import files

    if hasattr(files, "storage"):
        return files.storage()
    return FileSystemStorage(
        location=Path(settings.MEDIA_ROOT) / "vault",
        file_permissions_mode=0o600,
        directory_permissions_mode=0o700,
    )


def stored_files(storage) -> list[str]:
    """Every file name in the storage (temporary files, named with a dot, left out)."""
    names, folders = [], [""]
    while folders:
        folder = folders.pop()
        try:
            subfolders, files = storage.listdir(folder)
        except FileNotFoundError:
            continue
        prefix = f"{folder}/" if folder else ""
        folders += [prefix + d for d in subfolders if not d.startswith(".")]
        names += [prefix + f for f in files if not f.startswith(".")]
    return sorted(names)


def _staging() -> Path:
    """A private folder beside the database's own data for a dump in transit."""
    root = Path(settings.VAR_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".backup-", dir=root))  # mode 0700


def _pg_args(settings_dict) -> tuple[list[str], dict]:
    args = ["-h", settings_dict["HOST"] or "127.0.0.1", "-p", str(settings_dict["PORT"] or 5432)]
    args += ["-U", settings_dict["USER"] or "postgres"]
    env = {**os.environ, "PGPASSWORD": settings_dict["PASSWORD"] or ""}
    return args, env


def dump_database(target: Path) -> str:
    """A consistent copy of the database into `target`; returns the member name."""
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        args, env = _pg_args(s)
        result = subprocess.run(
            [
                "pg_dump",
                "-Fc",
                "--no-owner",
                "--no-privileges",
                *args,
                "-f",
                str(target),
                s["NAME"],
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise BackupError(f"pg_dump failed: {result.stderr.strip()[-300:]}")
        return "database.pgdump"
    if connection.vendor == "sqlite":
        import sqlite3

        source = sqlite3.connect(s["NAME"])
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)  # the online backup API: consistent while others write
        finally:
            copy.close()
            source.close()
        return "database.sqlite3"
    raise BackupError(f"No backup for a {connection.vendor} database.")


# --- Writing an archive -----------------------------------------------------------------------
def recipients_from(texts):
    from pyrage import x25519

    if not texts:
        raise BackupError(
            "No backup recipient: set PASSAGE_BACKUP_RECIPIENTS to the age public key(s) "
            "(age1...) the archive is for, or pass --recipient. The archive holds the "
            "keyring, so it is never written unencrypted."
        )
    try:
        return [x25519.Recipient.from_str(t.strip()) for t in texts]
    except Exception:
        raise BackupError("A backup recipient is not an age public key (age1...).") from None


def backup(*, to: Path, recipients: list[str], log=lambda text: None) -> Path:
    """Write one encrypted archive into the folder `to`; return its path.

    1. The keyring must be the database's and hold every KEK still wrapping a data key.
    2. A tar stream is produced in a thread and encrypted (age) as it is written, to a
       temporary name (mode 0600) renamed into place only when complete.
    3. The keyring is compared again at the end: a change meanwhile fails the backup.
    """
    import pyrage

    from .vault import registry

    age_recipients = recipients_from(recipients)
    ring = vault.keyring()
    usage = vault.key_usage()
    missing = sorted(set(usage) - set(ring.keks))
    if missing:
        raise BackupError(
            f"The keyring lacks {', '.join(missing)}, which still wrap data keys: a backup "
            "could not be restored. Add them back (`keyring restore-kek`) first."
        )
    st = registry.state()
    storage = attachment_storage()
    to.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    final = to / f"passage-{stamp}.tar.age"
    partial = to / f".{final.name}.{secrets.token_hex(4)}.partial"
    staging = _staging()
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": connection.vendor,
        "keyring": {
            "active": ring.active_kek_id,
            "keks": list(ring.keks),
            "generation": st.generation if st else None,
        },
        "data_keys": usage,
        "migrations": _migrations(),
        "sha256": {},
    }
    counts = {"files": 0, "bytes": 0}

    def add(tar, name, data=None, path=None, fileobj=None, size=None):
        info = tarfile.TarInfo(PREFIX + name)
        info.mode, info.mtime = 0o600, int(datetime.now(UTC).timestamp())
        digest = hashlib.sha256()
        if data is not None:
            fileobj, size = io.BytesIO(data), len(data)
        elif path is not None:
            fileobj, size = open(path, "rb"), path.stat().st_size
        info.size = size
        with fileobj:
            tar.addfile(info, _Hashing(fileobj, digest))
        manifest["sha256"][name] = digest.hexdigest()

    def add_files(tar, done: set):
        for name in stored_files(storage):
            if name in done:
                continue
            done.add(name)
            with storage.open(name, "rb") as handle:
                data = handle.read()
            add(tar, "media/" + name, data=data)
            counts["files"] += 1
            counts["bytes"] += len(data)

    def produce(pipe):
        done: set = set()
        with tarfile.open(fileobj=pipe, mode="w|") as tar:
            add(tar, "keyring.json", data=ring.to_json().encode())
            add_files(tar, done)  # 1. the files there before the dump
            target = staging / "database"
            member = dump_database(target)
            log(f"database dumped ({target.stat().st_size} bytes)")
            manifest["database_member"] = member
            add(tar, member, path=target)
            target.unlink()
            add_files(tar, done)  # 2. the files written while it was dumped
            manifest["files"] = counts["files"]
            add(tar, "manifest.json", data=json.dumps(manifest, indent=2).encode())

    try:
        _encrypt_stream(produce, partial, age_recipients, pyrage)
        if vault.keyring().digest != ring.digest:
            raise BackupError("The keyring changed while backing up: run `backup` again.")
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{counts['files']} attachment files ({counts['bytes']} bytes)")
    return final


def _encrypt_stream(produce, out_path: Path, recipients, pyrage) -> None:
    """Run `produce(pipe)` in a thread and encrypt what it writes into `out_path`."""
    read_fd, write_fd = os.pipe()
    failure = []

    def run():
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                produce(pipe)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=run, name="backup-tar", daemon=True)
    thread.start()
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(read_fd, "rb") as reader, os.fdopen(out_fd, "wb") as out:
            pyrage.encrypt_io(reader, out, recipients)
            out.flush()
            os.fsync(out.fileno())
    finally:
        thread.join()
    if failure:
        raise failure[0]


class _Hashing:
    """A file object that hashes what is read through it."""

    def __init__(self, fileobj, digest):
        self.fileobj, self.digest = fileobj, digest

    def read(self, size=-1):
        data = self.fileobj.read(size)
        self.digest.update(data)
        return data


def _migrations() -> dict:
    from django.db.migrations.recorder import MigrationRecorder

    latest = {}
    for app, name in MigrationRecorder.Migration.objects.values_list("app", "name"):
        latest[app] = max(latest.get(app, name), name)
    return latest


# --- Restoring ----------------------------------------------------------------------------------
def restore(*, archive: Path, identities: list[str], keyring_to: Path | None, log=lambda t: None):
    """Restore an archive into an empty database, an empty attachment storage and a
    keyring path where no file is yet. Nothing existing is ever overwritten.

    1. Refuse unless the database has no tables, the storage no files and the keyring
       path no file.
    2. Decrypt the archive as a stream and read the tar from it member by member: the
       keyring is written (mode 0600), files go into the storage, the dump is loaded
       (pg_restore in one transaction, or the SQLite file put in place).
    3. Check every member against the manifest's SHA-256.
    Returns the manifest.
    """
    import pyrage
    from pyrage import x25519

    try:
        keys = [x25519.Identity.from_str(line.strip()) for line in identities if line.strip()]
    except Exception:
        raise BackupError("The identity is not an age secret key (AGE-SECRET-KEY-...).") from None
    storage = attachment_storage()
    keyring_path = keyring_to or (
        None if os.environ.get("PASSAGE_KEYRING_JSON") else Path(settings.PASSAGE_KEYRING or "")
    )
    if keyring_path is None or not str(keyring_path) or str(keyring_path) == ".":
        raise BackupError("Say where the keyring goes: --keyring-to PATH (or set PASSAGE_KEYRING).")
    if keyring_path.exists():
        raise BackupError(f"{keyring_path} exists; a restore never overwrites keys.")
    if _database_has_tables():
        raise BackupError("The database is not empty; restore into a new, empty database.")
    if stored_files(storage):
        raise BackupError("The attachment storage is not empty; restore into an empty one.")
    staging = _staging()
    digests, manifest, written = {}, None, []
    read_fd, write_fd = os.pipe()
    failure = []

    def decrypt():
        try:
            with open(archive, "rb") as source, os.fdopen(write_fd, "wb") as pipe:
                pyrage.decrypt_io(source, pipe, keys)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=decrypt, name="restore-age", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe, tarfile.open(fileobj=pipe, mode="r|") as tar:
            for info in tar:
                if not info.isfile() or not info.name.startswith(PREFIX):
                    raise BackupError("The archive holds something that is not a Passage backup.")
                name = info.name[len(PREFIX) :]
                data_stream = tar.extractfile(info)
                if name == "manifest.json":
                    manifest = json.loads(data_stream.read())
                elif name == "keyring.json":
                    data = data_stream.read()
                    digests[name] = hashlib.sha256(data).hexdigest()
                    ring = vault.Keyring.from_json(data.decode(), "the archive")
                    vault.write_keyring(ring, keyring_path)
                    written.append(("keyring", keyring_path))
                    log(f"keyring written to {keyring_path}")
                elif name.startswith("media/"):
                    data = data_stream.read()
                    digests[name] = hashlib.sha256(data).hexdigest()
                    _store(storage, name[len("media/") :], data)
                    written.append(("file", name[len("media/") :]))
                elif name in ("database.pgdump", "database.sqlite3"):
                    target = staging / name
                    digest = hashlib.sha256()
                    with open(target, "xb") as out:
                        while chunk := data_stream.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                    digests[name] = digest.hexdigest()
                    _load_database(name, target)
                    written.append(("database", name))
                    target.unlink(missing_ok=True)
                    log("database restored")
                else:
                    raise BackupError(f"Unknown member {name!r} in the archive.")
        thread.join()
        if failure:
            raise BackupError(
                f"The archive could not be decrypted ({type(failure[0]).__name__}): wrong "
                "identity, or a damaged file."
            )
        if manifest is None or manifest.get("format") != FORMAT:
            raise BackupError("The archive has no manifest: it is incomplete.")
        if digests != manifest["sha256"]:
            bad = set(digests.items()) ^ set(manifest["sha256"].items())
            raise BackupError(
                f"{len(bad)} members differ from the manifest: the archive is damaged."
            )
    except BaseException as exc:
        thread.join()
        _undo(written, storage)
        if failure and not isinstance(exc, BackupError):
            raise BackupError(
                f"The archive could not be decrypted ({type(failure[0]).__name__}): wrong "
                "identity, or a damaged file."
            ) from None
        if isinstance(exc, tarfile.TarError):
            raise BackupError(
                "The archive is damaged, or was not made for this identity."
            ) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _forget_processes()
    return manifest


def _undo(written, storage) -> None:
    """A restore that failed takes back what it wrote, so it can simply be run again
    (a PostgreSQL restore is one transaction: it rolled back by itself)."""
    for kind, what in reversed(written):
        if kind == "keyring":
            Path(what).unlink(missing_ok=True)
        elif kind == "file":
            storage.delete(what)
        elif kind == "database" and connection.vendor == "sqlite":
            connection.close()
            Path(connection.settings_dict["NAME"]).unlink(missing_ok=True)


def _store(storage, name: str, data: bytes) -> None:
    from django.core.files.base import ContentFile

    if "/.." in f"/{name}" or name.startswith("/"):
        raise BackupError("A file name in the archive leaves the storage.")
    saved = storage.save(name, ContentFile(data))
    if saved != name:
        raise BackupError(f"{name} could not be restored under its own name.")


def _database_has_tables() -> bool:
    if connection.vendor == "sqlite":
        path = Path(connection.settings_dict["NAME"])
        if not path.exists():
            return False
    with connection.cursor() as cursor:
        return bool(connection.introspection.table_names(cursor))


def _load_database(member: str, dump: Path) -> None:
    s = connection.settings_dict
    if member == "database.pgdump":
        if connection.vendor != "postgresql":
            raise BackupError("This archive holds a PostgreSQL database; DATABASE_URL is not one.")
        connection.close()
        args, env = _pg_args(s)
        result = subprocess.run(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
             "--single-transaction", *args, "-d", s["NAME"], str(dump)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode:
            raise BackupError(f"pg_restore failed: {result.stderr.strip()[-300:]}")
        return
    if connection.vendor != "sqlite":
        raise BackupError("This archive holds a SQLite database; DATABASE_URL is not one.")
    connection.close()
    target = Path(s["NAME"])
    for suffix in ("-wal", "-shm"):  # an empty database's leftovers
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.move(dump, target)
    os.chmod(target, 0o600)


def _forget_processes() -> None:
    """The processes that ran beside the backed-up database are not running here."""
    from .vault.registry import ProcessKeyring

    ProcessKeyring.objects.all().delete()
