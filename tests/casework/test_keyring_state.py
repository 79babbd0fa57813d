"""Keys that cannot hurt the data: the database knows its keyring, processes follow the
key file while running, and nothing is ever wrapped under a KEK that is not active."""

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.utils import timezone

from casework import audit, vault
from casework.models import AccessEvent, DataKey
from casework.vault import registry
from tests.vaulttest.models import Person

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
QUIET = {"stdout": open(os.devnull, "w")}


@pytest.fixture
def keyfile(tmp_path, settings, monkeypatch):
    """The keyring in a key file this test can change, and the database's keyring."""
    path = tmp_path / "keyring.json"
    vault.write_keyring(vault.Keyring.generate(), path)
    monkeypatch.delenv("PASSAGE_KEYRING_JSON")
    settings.PASSAGE_KEYRING = str(path)
    vault.reset_keyring()
    vault.keyring()
    yield path
    vault.reset_keyring()


def successor(ring):
    """The ring `keyring add` makes: a new active KEK before the others."""
    return vault.Keyring(
        keks={vault.new_kek_id(): secrets.token_bytes(32), **ring.keks},
        index_key=ring.index_key,
        audit_key=ring.audit_key,
    )


def person(name="Mina"):
    return Person.objects.create(name=name, story="s")


def fresh(p):
    return Person.objects.select_related("data_key").get(pk=p.pk)


# --- A running process follows the key file ---------------------------------------------------
def test_a_key_file_changed_by_another_process_is_used_at_the_next_call(keyfile):
    before = person("Before")
    old = vault.keyring()
    new = successor(old)
    registry.kek_introduce(new)  # what `keyring add` records before writing the file
    vault.write_keyring(new, keyfile, replace=True)  # as another process writes it
    assert vault.keyring().active_kek_id == new.active_kek_id  # no restart, no reset
    after = person("After")
    assert after.data_key.kek_id == new.active_kek_id
    assert fresh(before).name == "Before" and fresh(after).name == "After"


def test_a_key_file_swapped_for_a_wrong_keyring_is_refused_for_every_write(keyfile):
    person()
    events = AccessEvent.objects.count()
    good = keyfile.read_text()
    vault.write_keyring(vault.Keyring.generate(), keyfile, replace=True)
    with pytest.raises(vault.KeyringMismatch, match="audit key"):
        person("Under a stranger's key")
    with pytest.raises(vault.KeyringMismatch, match="does not match this database"):
        audit.record(None, "auth.login_failed")  # a login event: never MACed with it
    assert AccessEvent.objects.count() == events
    assert Person.objects.count() == 1
    keyfile.unlink()
    keyfile.write_text(good)  # the right file back: writes go on, without a restart
    person("Back")
    audit.record(None, "auth.login_failed")
    assert audit.verify() == (events + 1, None)


def test_a_vanished_key_file_is_refused_not_replaced_by_the_ring_in_memory(keyfile):
    person()
    keyfile.unlink()
    with pytest.raises(vault.KeyringError, match="cannot be read"):
        person("No keys")


# --- The database's record of its keyring -----------------------------------------------------------
def test_the_database_records_check_values_of_its_keyring_never_the_keys(keyfile):
    ring = vault.keyring()
    st = registry.state()
    assert st.active_kek_id == ring.active_kek_id
    assert set(st.keks) == set(ring.keks)
    stored = json.dumps([st.keks, st.index_check, st.audit_check])
    for key in [*ring.keks.values(), ring.index_key, ring.audit_key]:
        assert vault._b64(key) not in stored and key.hex() not in stored


def test_a_database_without_a_record_takes_only_a_keyring_that_opens_its_data(keyfile):
    p = person()
    audit.record(None, "auth.login_failed")
    ring = vault.keyring()
    registry.KeyringState.objects.all().delete()
    stranger = vault.Keyring.generate()
    with pytest.raises(vault.KeyringMismatch, match="lacks"):
        registry.verify(stranger)
    same_ids = vault.Keyring(
        keks={k: secrets.token_bytes(32) for k in ring.keks},
        index_key=ring.index_key,
        audit_key=ring.audit_key,
    )
    with pytest.raises(vault.KeyringMismatch, match="does not open"):
        registry.verify(same_ids)
    wrong_audit = vault.Keyring(
        keks=ring.keks, index_key=ring.index_key, audit_key=secrets.token_bytes(32)
    )
    with pytest.raises(vault.KeyringMismatch, match="access event"):
        registry.verify(wrong_audit)
    assert registry.state() is None
    registry.verify(ring)  # the right one is recorded
    assert registry.state().active_kek_id == ring.active_kek_id
    assert fresh(p).name == "Mina"


# --- Rotation ---------------------------------------------------------------------------------
def test_keyring_add_makes_the_new_kek_the_only_one_data_keys_may_be_wrapped_under(keyfile):
    person()
    old = vault.keyring().active_kek_id
    call_command("keyring", "add", "--wait", "0", **QUIET)
    new = vault.keyring().active_kek_id
    st = registry.state()
    assert (st.active_kek_id, st.next_kek_id) == (new, "")
    # A process still holding the old key file would wrap under the old KEK: the
    # database refuses the row, whatever that process believes.
    with pytest.raises(DatabaseError, match="not the active one"), transaction.atomic():
        DataKey.objects.create(
            purpose="vaulttest", owner_id=uuid.uuid4(), kek_id=old, wrapped=b"x" * 60
        )
    fresh_key = person("New").data_key
    assert fresh_key.kek_id == new
    with pytest.raises(DatabaseError, match="not the active one"), transaction.atomic():
        DataKey.objects.filter(pk=fresh_key.pk).update(kek_id=old)  # nor a rotation back


def test_keyring_add_waits_for_running_processes_and_names_those_behind(keyfile, capsys):
    old = vault.keyring().active_kek_id
    registry.ProcessKeyring.objects.create(
        process="web-host:41:aa",
        role="web",
        host="web-host",
        pid=41,
        active_kek_id=old,
        kek_ids=[old],
        started_at=timezone.now(),
        seen_at=timezone.now(),
    )
    started = time.monotonic()
    call_command("keyring", "add", "--wait", "1")
    assert 1 <= time.monotonic() - started < 10
    out = capsys.readouterr().out
    assert "web web-host:41" in out and "refuse to write" in out
    assert registry.state().active_kek_id == vault.keyring().active_kek_id != old


def test_a_rotation_is_refused_by_a_process_holding_the_old_ring(keyfile):
    person()
    old_ring = vault.keyring()
    call_command("keyring", "add", "--wait", "0", **QUIET)
    with pytest.raises(vault.KeyringMismatch, match="older than the database"):
        registry.verify(old_ring)


def test_retire_key_refuses_while_a_live_process_still_holds_the_old_kek(keyfile):
    p = person()
    old = vault.keyring().active_kek_id
    call_command("keyring", "add", "--wait", "0", **QUIET)
    call_command("rotate_keys", **QUIET)
    row = registry.ProcessKeyring.objects.create(
        process="worker-host:7:bb",
        role="worker",
        host="worker-host",
        pid=7,
        active_kek_id=old,
        kek_ids=[old],
        started_at=timezone.now(),
        seen_at=timezone.now(),
    )
    with pytest.raises(CommandError, match="worker worker-host:7"):
        call_command("retire_key", old, "--wait", "0")
    assert old in vault.keyring().keks and old not in registry.state().retired
    # It is gone (not seen for longer than a live process reports): retiring is safe.
    row.seen_at = timezone.now() - timedelta(seconds=registry.LIVE_SECONDS + 1)
    row.save()
    call_command("retire_key", old, "--wait", "0", **QUIET)
    assert old not in vault.keyring().keks and old in registry.state().retired
    assert fresh(p).name == "Mina"


def test_retire_key_refuses_the_database_s_active_kek(keyfile):
    old = vault.keyring().active_kek_id
    with pytest.raises(CommandError, match="active"):
        call_command("retire_key", old, "--wait", "0")


def test_rotate_keys_finishes_an_interrupted_keyring_add(keyfile):
    p = person()
    new = successor(vault.keyring())
    registry.kek_introduce(new)
    vault.save_keyring(new)  # `keyring add` stopped here, before making it active
    call_command("rotate_keys", **QUIET)
    assert registry.state().active_kek_id == new.active_kek_id
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {new.active_kek_id}
    assert fresh(p).name == "Mina"


def test_restore_kek_adds_an_old_kek_back_from_a_backup_of_the_keyring(keyfile, tmp_path):
    p = person()
    backup = tmp_path / "keyring-backup.json"
    backup.write_text(keyfile.read_text())
    old = vault.keyring().active_kek_id
    call_command("keyring", "add", "--wait", "0", **QUIET)
    ring = vault.keyring()
    # The old KEK went missing from the key file while data keys still need it.
    vault.save_keyring(
        vault.Keyring(
            keks={ring.active_kek_id: ring.keks[ring.active_kek_id]},
            index_key=ring.index_key,
            audit_key=ring.audit_key,
        )
    )
    with pytest.raises(vault.KeyringError, match="restore-kek"):
        fresh(p).name
    forged = tmp_path / "forged.json"
    forged.write_text(
        vault.Keyring(
            keks={old: secrets.token_bytes(32)}, index_key=ring.index_key, audit_key=ring.audit_key
        ).to_json()
    )
    with pytest.raises(CommandError, match="not the key this database knows"):
        call_command("keyring", "restore-kek", "--from", str(forged), **QUIET)
    call_command("keyring", "restore-kek", "--from", str(backup), **QUIET)
    assert list(vault.keyring().keks) == [ring.active_kek_id, old]  # back, not active
    assert fresh(p).name == "Mina"
    call_command("rotate_keys", **QUIET)
    call_command("retire_key", old, "--wait", "0", **QUIET)
    assert fresh(p).name == "Mina"


def test_each_process_reports_the_ring_it_holds(keyfile):
    row = registry.report("web")
    ring = vault.keyring()
    assert (row.role, row.active_kek_id, row.kek_ids) == (
        "web",
        ring.active_kek_id,
        list(ring.keks),
    )
    assert row.generation == registry.state().generation and row.problem == ""
    assert list(registry.live_processes()) == [row]


def test_keyring_status_shows_the_database_and_the_processes(keyfile, capsys):
    registry.report("worker")
    call_command("keyring", "status")
    out = capsys.readouterr().out
    active = vault.keyring().active_kek_id
    assert f"database: generation {registry.state().generation}, active {active}" in out
    assert "worker" in out and f"active {active}" in out


# --- Processes started with a keyring that is not the database's --------------------------------
def project_env(tmp_path, **extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PASSAGE_KEYRING_JSON", "CELERY_BROKER_URL", "REDIS_URL", "DATABASE_URL")
    }
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PASSAGE_VAR_DIR=str(tmp_path / "var"),
        PASSAGE_KEYRING=str(tmp_path / "keyring.json"),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A SQLite database file migrated with its own key file (by manage.py, as in life)."""
    folder = tmp_path_factory.mktemp("migrated")
    env = project_env(folder)
    assert run(env, "manage.py", "keyring", "generate").returncode == 0
    result = run(env, "manage.py", "migrate", "--noinput")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def site(migrated, tmp_path):
    for name in ("db.sqlite3", "keyring.json"):
        (tmp_path / name).write_bytes((migrated / name).read_bytes())
    (tmp_path / "wrong.json").write_text(vault.Keyring.generate().to_json())
    return tmp_path


def test_a_wrong_keyring_stops_manage_py_and_the_web_process_with_a_clear_message(site):
    env = project_env(site, PASSAGE_KEYRING=str(site / "wrong.json"))
    result = run(env, "manage.py", "check", "--deploy")
    assert result.returncode == 1
    assert "(passage.E003) The keyring does not match this database" in result.stderr
    assert "audit key" in result.stderr
    web = run(env, "-c", "import config.wsgi")  # what gunicorn imports
    assert web.returncode == 1 and "does not match this database" in web.stderr
    assert run(project_env(site), "manage.py", "check").returncode == 0  # the right one


def test_a_process_holding_an_old_keyring_refuses_to_write_after_keyring_add(site):
    env = project_env(site)
    old = (site / "keyring.json").read_text()
    result = run(env, "manage.py", "keyring", "add", "--wait", "0")
    assert result.returncode == 0, result.stderr
    stale = project_env(site, PASSAGE_KEYRING_JSON=old)
    script = (
        "from casework.models import DataKey\n"
        "DataKey.objects.create_for('vaulttest', __import__('uuid').uuid4())\n"
    )
    result = run(stale, "manage.py", "shell", "-c", script)
    assert result.returncode == 1
    assert "older than the database" in result.stderr
    assert run(env, "manage.py", "shell", "-c", script).returncode == 0


WORKER = ["-m", "celery", "-A", "config", "worker", "--pool=solo", "--without-gossip",
          "--without-mingle", "--loglevel=INFO"]  # fmt: skip


@pytest.mark.parametrize("keyring", ["absent.json", "wrong.json"])
def test_the_worker_exits_without_the_database_s_keyring(site, keyring):
    """Kombu's filesystem broker: a real worker with no server to start."""
    env = project_env(site, PASSAGE_KEYRING=str(site / keyring), CELERY_BROKER_URL="filesystem://")
    result = run(env, *WORKER, timeout=90)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert ("cannot be read" if keyring == "absent.json" else "does not match") in output
    assert "ready" not in output
