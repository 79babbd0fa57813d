"""A restore drill, run as an operator runs it (manage.py in fresh processes): make
cases with encrypted fields, attachments and a family request, rotate the KEK and
shred a case, back up, lose the database, the files and the key file, restore, and
find every record, every attachment and the access log intact. On PostgreSQL (the
production database) and on SQLite (`make run`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from pyrage import x25519

ROOT = Path(__file__).resolve().parents[2]
CANARY = "Restorable Quillfeather"

# Runs in `manage.py shell`: what an office has after a while, and a record of it.
SEED = f"""
import hashlib, json
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from casework import services
from casework.models import Role
from families import services as family_services
from tests.base import make_case, make_team, make_user
boss = make_user("drill-coordinator", Role.COORDINATOR)
team = make_team("Drill team", coordinators=[boss])
for i in range(3):
    case = make_case(team, actor=boss, name="{CANARY} " + str(i), other_names=["کوثر " + str(i)])
    services.whereabouts_save(actor=boss, case=case, data={{"city": "Tromsø " + str(i),
        "address": "Street " + str(i), "country": "", "phone": "", "email": "",
        "safe_contact": "", "code_word": ""}})
    services.note_add(actor=boss, case=case, body="note " + str(i), restricted=False,
        upload=SimpleUploadedFile("scan.pdf", b"%PDF-1.4 scan " + bytes([i]) * 2000, "application/pdf"))
family_services.request_submit(data={{"requester_name": "Drill Parent", "sought_names": ["{CANARY}"],
    "message": "come home"}}, language="en", notice_sha256="n")
call_command("keyring", "add", "--wait", "0")
call_command("rotate_keys")
services.case_shred(case=case, actor=boss, reason="drill")
"""

READ = """
import hashlib, json
from casework import vault
from casework.models import Attachment, Case
from families.models import FamilyRequest
out = {"cases": {}, "requests": []}
for case in Case.objects.order_by("reference"):
    if case.is_shredded:
        out["cases"][str(case.pk)] = "shredded"
        continue
    files = [hashlib.sha256(vault.open_file(case.data_key, a.blob_name)).hexdigest()
             for a in Attachment.objects.filter(case=case)]
    where = case.whereabouts
    out["cases"][str(case.pk)] = [case.legal_name, case.other_names, where.city, where.address, files]
for fr in FamilyRequest.objects.all():
    out["requests"].append([fr.requester_name, fr.sought_names, fr.message])
print("READ" + json.dumps(out, sort_keys=True))
"""


def environment(tmp_path, database_url, recipient):
    drop = ("PASSAGE_KEYRING_JSON", "CELERY_BROKER_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DEBUG="1",
        DATABASE_URL=database_url,
        PASSAGE_VAR_DIR=str(tmp_path / "var"),
        PASSAGE_KEYRING=str(tmp_path / "keys" / "keyring.json"),
        PASSAGE_BACKUP_RECIPIENTS=recipient,
        PASSAGE_BACKUP_DIR=str(tmp_path / "backups"),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def manage(env, *args, ok=True):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def read(env) -> dict:
    out = manage(env, "shell", "-c", READ).stdout
    return json.loads(out.split("READ", 1)[1])


def drill(tmp_path, database_url, lose_database):
    identity = x25519.Identity.generate()
    (tmp_path / "identity.txt").write_text(f"{identity}\n")
    (tmp_path / "wrong.txt").write_text(f"{x25519.Identity.generate()}\n")
    env = environment(tmp_path, database_url, str(identity.to_public()))
    manage(env, "keyring", "generate")
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", SEED)
    before = read(env)
    assert len(before["cases"]) == 3 and list(before["cases"].values()).count("shredded") == 1
    assert all(len(v[4]) == 1 for v in before["cases"].values() if v != "shredded")

    out = manage(env, "backup").stdout
    archive = Path(out.split("Wrote ", 1)[1].split(" (", 1)[0])
    blob = archive.read_bytes()
    assert blob.startswith(b"age-encryption.org/v1")  # opens with `age -d` alone
    assert CANARY.encode() not in blob and b"index_key" not in blob
    assert oct(archive.stat().st_mode & 0o777) == "0o600"

    # The disaster: the database, the attachment files and the key file are gone.
    lose_database()
    for folder in (tmp_path / "var" / "media", tmp_path / "keys"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)

    refused = manage(
        env, "restore", str(archive), "--identity", str(tmp_path / "wrong.txt"), ok=False
    )
    assert refused.returncode == 1 and "could not be decrypted" in refused.stderr
    assert not (tmp_path / "keys" / "keyring.json").exists()  # nothing left half-done

    restored = manage(env, "restore", str(archive), "--identity", str(tmp_path / "identity.txt"))
    assert "OK: everything the vault holds opens" in restored.stdout
    assert "chain intact" in restored.stdout
    assert read(env) == before
    assert manage(env, "check").returncode == 0  # the restored keyring is the database's
    assert "chain intact" in manage(env, "verify_audit").stdout
    again = manage(
        env, "restore", str(archive), "--identity", str(tmp_path / "identity.txt"), ok=False
    )
    assert again.returncode == 1 and "never overwrites" in again.stderr


def test_restore_drill_on_postgresql(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL drill runs in the PostgreSQL pass")
    s = connection.settings_dict
    name = f"{s['NAME']}_drill"
    psql = ["psql", "-h", s["HOST"] or "127.0.0.1", "-p", str(s["PORT"] or 5432),
            "-U", s["USER"] or "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]  # fmt: skip
    pg_env = {**os.environ, "PGPASSWORD": s["PASSWORD"] or ""}

    def sql(statement):
        subprocess.run([*psql, statement], env=pg_env, check=True, capture_output=True)

    def lose_database():
        sql(f'DROP DATABASE "{name}"')
        sql(f'CREATE DATABASE "{name}"')  # empty, as a new server's would be

    sql(f'DROP DATABASE IF EXISTS "{name}"')
    sql(f'CREATE DATABASE "{name}"')
    url = (
        f"postgres://{s['USER'] or 'postgres'}:{s['PASSWORD'] or ''}@{s['HOST'] or '127.0.0.1'}"
        f":{s['PORT'] or 5432}/{name}"
    )
    try:
        drill(tmp_path, url, lose_database)
    finally:
        sql(f'DROP DATABASE IF EXISTS "{name}"')


def test_restore_drill_on_sqlite(tmp_path):
    database = tmp_path / "var" / "drill.sqlite3"

    def lose_database():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)

    drill(tmp_path, f"sqlite:///{database}", lose_database)
