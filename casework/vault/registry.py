"""The keyring the database belongs to, and the keyring each process holds.

1. `KeyringState` (one row) is the database's record of its keyring: check values
   (keys.check_value, never a key) of every KEK in service and of those retired, which
   KEK is active (and which one `keyring add` is introducing), and check values of the
   index and audit keys. `generation` counts its changes.
2. Every process checks the ring it reads against it (keys.keyring() calls verify()):
   the first process on a database without a record proves its ring against the data
   (it unwraps a data key under each KEK in use and verifies the newest access event)
   and records it; from then on a ring must match, or the process refuses to start and
   to write. `migrate` records it too (migration 0015).
3. A trigger on casework_datakey refuses a data key wrapped under any KEK but the active
   one (or the one being introduced): a process holding an old keyring cannot write
   under it, on any host, whatever it believes.
4. `ProcessKeyring` rows are the running processes' reports. Each web and worker
   process looks at its key file every few seconds from a background thread, and says
   which ring it holds at once when that changes and at least once a minute, so the
   `keyring add` command can wait for them and `retire_key` can refuse while a live
   process may still wrap under the KEK it retires.
"""

import atexit
import logging
import os
import secrets
import socket
import threading
import time
from datetime import timedelta

from django.db import IntegrityError, connections, models, transaction
from django.utils import timezone

from . import keys
from .keys import DecryptionError, Keyring, KeyringError, KeyringMismatch

__all__ = ["KeyringState", "ProcessKeyring"]

logger = logging.getLogger("passage.keyring")

LIVE_SECONDS = 75  # a process that has not reported for this long is taken for dead
REPORT_SECONDS = 30  # a process reports at least this often...
CHECK_SECONDS = 2  # ...looks at its key file this often (and reports a change at once)...
RECHECK_SECONDS = 15  # ...and asks the database whether its ring still matches this often
PRUNE_AFTER = timedelta(days=1)  # reports of processes gone this long are deleted

TRIGGER_MESSAGE = (
    "passage: a data key wrapped under a KEK that is not the active one was refused; "
    "this process holds an outdated or wrong keyring"
)


class KeyringState(models.Model):
    """The keyring this database belongs to (one row): check values, never keys."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    generation = models.PositiveBigIntegerField(default=1)
    active_kek_id = models.CharField(max_length=64)
    # A KEK `keyring add` is introducing: data keys may already be wrapped under it
    # while the processes move to the new key file, before it becomes the active one.
    next_kek_id = models.CharField(max_length=64, blank=True, default="")
    keks = models.JSONField(default=dict)  # {KEK id: check value}, every KEK in service
    retired = models.JSONField(default=dict)  # {KEK id: check value}, retired KEKs
    index_check = models.CharField(max_length=32)
    audit_check = models.CharField(max_length=32)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"keyring generation {self.generation} (active {self.active_kek_id})"


class ProcessKeyring(models.Model):
    """A running web or worker process and the keyring it holds (its last report)."""

    process = models.CharField(max_length=120, primary_key=True)  # host:pid:random
    role = models.CharField(max_length=20)
    host = models.CharField(max_length=100)
    pid = models.PositiveIntegerField()
    generation = models.PositiveBigIntegerField(default=0)
    active_kek_id = models.CharField(max_length=64, blank=True)
    kek_ids = models.JSONField(default=list)
    # The KeyringError it has instead of a usable keyring, if any (names keys, no data).
    problem = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        default_permissions = ()
        ordering = ["role", "host", "pid"]

    def __str__(self):
        return f"{self.role} {self.host}:{self.pid}"


# --- The database's keyring ------------------------------------------------------------------
def state() -> KeyringState | None:
    return KeyringState.objects.filter(pk=1).first()


_generation = 0  # the generation of the record this process's ring last matched


def mismatch(ring: Keyring, st: KeyringState) -> str | None:
    """Why `ring` does not belong to the database `st` describes (None: it does)."""
    checks = ring.checks
    if checks["audit"] != st.audit_check:
        return "its audit key is not the one this database's access log is chained with"
    if checks["index"] != st.index_check:
        return "its index key is not the one this database's search indexes were made with"
    for kek_id, value in checks["keks"].items():
        known = st.keks.get(kek_id) or st.retired.get(kek_id)
        if known is None:
            return f"its KEK {kek_id} is unknown to this database"
        if known != value:
            return f"its KEK {kek_id} is not the key this database knows by that id"
    active = ring.active_kek_id
    if active not in (st.active_kek_id, st.next_kek_id):
        if active in st.keks or active in st.retired:
            return (
                f"its active KEK is {active}, but the database's is {st.active_kek_id}: "
                "the key file is older than the database (a newer one was added)"
            )
        return f"its active KEK {active} is not this database's ({st.active_kek_id})"
    return None


def mismatch_message(problem: str) -> str:
    return (
        f"The keyring does not match this database: {problem}. Nothing is encrypted or "
        "logged with it. Start with the keyring this database uses (the current key file, "
        "or the one in its backup); `manage.py keyring status` shows what it expects."
    )


def verify(ring: Keyring, *, adopt: bool = False) -> None:
    """Raise KeyringMismatch unless `ring` is this database's keyring.

    With no record yet, the ring is proven against the data and recorded. `adopt`
    makes the ring the database's whatever it was (tests and tools, keys.use_keyring).
    """
    global _generation
    try:
        with transaction.atomic():  # a savepoint: a failure here spoils no caller's transaction
            st = state()
            if adopt:
                st = _adopt(ring, st)
            elif st is None:
                prove(ring)
                st = record(ring)
    except IntegrityError:  # another process recorded it at the same moment
        st = state()
    problem = mismatch(ring, st)
    if problem:
        raise KeyringMismatch(mismatch_message(problem))
    _generation = st.generation


def record(ring: Keyring, model=None) -> KeyringState:
    """Record `ring` as the database's keyring (there is no record yet)."""
    model = model or KeyringState
    checks = ring.checks
    return model.objects.create(
        pk=1,
        generation=1,
        active_kek_id=ring.active_kek_id,
        keks=checks["keks"],
        index_check=checks["index"],
        audit_check=checks["audit"],
        changed_at=timezone.now(),
    )


def _adopt(ring: Keyring, st: KeyringState | None) -> KeyringState:
    if st is None:
        return record(ring)
    if mismatch(ring, st) is None and st.keks == ring.checks["keks"] and not st.next_kek_id:
        return st
    checks = ring.checks
    st.keks = checks["keks"]
    st.retired = {k: v for k, v in st.retired.items() if k not in st.keks}
    st.active_kek_id, st.next_kek_id = ring.active_kek_id, ""
    st.index_check, st.audit_check = checks["index"], checks["audit"]
    _bump(st)
    return st


def prove(ring: Keyring, *, data_key_model=None, event_model=None) -> None:
    """Raise KeyringMismatch unless `ring` opens this database's data: one data key
    under each KEK in use unwraps, and the newest access event's MAC verifies."""
    from django.apps import apps

    from casework import audit

    DataKey = data_key_model or apps.get_model("casework", "DataKey")
    AccessEvent = event_model or apps.get_model("casework", "AccessEvent")
    live = DataKey.objects.filter(shredded_at__isnull=True).exclude(kek_id="")
    for kek_id in sorted(set(live.values_list("kek_id", flat=True))):
        if kek_id not in ring.keks:
            raise KeyringMismatch(
                mismatch_message(f"data keys here are wrapped under KEK {kek_id}, which it lacks")
            )
        sample = live.filter(kek_id=kek_id).first()
        try:
            keys.unwrap_dek(
                sample.wrapped,
                purpose=sample.purpose,
                owner_id=sample.owner_id,
                kek_id=kek_id,
                ring=ring,
            )
        except DecryptionError:
            raise KeyringMismatch(
                mismatch_message(f"its KEK {kek_id} does not open the data keys wrapped under it")
            ) from None
    # An event of the old chain or of the transparency log (issue 14): audit knows both.
    if not audit.key_verifies_newest(ring.audit_key, event_model=AccessEvent):
        raise KeyringMismatch(
            mismatch_message("its audit key does not verify the newest access event")
        )


def _bump(st: KeyringState) -> None:
    st.generation += 1
    st.changed_at = timezone.now()
    st.save()


def _locked() -> KeyringState:
    st = KeyringState.objects.select_for_update().filter(pk=1).first()
    if st is None:
        raise KeyringError("This database has no keyring recorded yet: run `manage.py migrate`.")
    return st


# --- Changes, each recorded in the database before the key file is written --------------------
@transaction.atomic
def kek_introduce(ring: Keyring) -> KeyringState:
    """`keyring add`, step 1: the new ring's active KEK may wrap data keys from now on."""
    st = _locked()
    new_id = ring.active_kek_id
    st.keks[new_id] = ring.checks["keks"][new_id]
    st.next_kek_id = new_id
    _bump(st)
    return st


@transaction.atomic
def kek_withdraw(kek_id: str) -> None:
    """`keyring add` could not write the key file: forget the KEK it introduced."""
    st = _locked()
    if st.next_kek_id == kek_id:
        st.keks.pop(kek_id, None)
        st.next_kek_id = ""
        _bump(st)


@transaction.atomic
def kek_activate(kek_id: str) -> KeyringState:
    """`keyring add`, step 2: the introduced KEK is the only one data keys may be
    wrapped under; a process still holding the old ring can no longer write."""
    st = _locked()
    if kek_id not in st.keks:
        raise KeyringError(f"{kek_id} is not a KEK this database knows.")
    if st.active_kek_id != kek_id or st.next_kek_id:
        st.active_kek_id, st.next_kek_id = kek_id, ""
        _bump(st)
    return st


@transaction.atomic
def kek_retire(kek_id: str) -> KeyringState:
    st = _locked()
    if kek_id in (st.active_kek_id, st.next_kek_id):
        raise KeyringError(f"{kek_id} is the database's active KEK; add a new one first.")
    if kek_id in st.keks:
        st.retired[kek_id] = st.keks.pop(kek_id)
        _bump(st)
    return st


@transaction.atomic
def kek_restore(kek_id: str, check: str) -> KeyringState:
    st = _locked()
    st.retired.pop(kek_id, None)
    st.keks[kek_id] = check
    _bump(st)
    return st


@transaction.atomic
def index_key_replace(ring: Keyring) -> KeyringState:
    st = _locked()
    st.index_check = ring.checks["index"]
    _bump(st)
    return st


# --- Processes and the rings they hold ---------------------------------------------------------
_me = {"pid": None, "id": "", "role": "", "started": None}


def _process() -> dict:
    if _me["pid"] != os.getpid():  # a forked child is a process of its own
        _me.update(
            pid=os.getpid(),
            id=f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}",
            started=timezone.now(),
        )
    return _me


def report(role: str | None = None) -> ProcessKeyring:
    """Upsert this process's report: the ring it holds, or why it has none."""
    me = _process()
    me["role"] = role or me["role"] or "process"
    ring, problem = None, ""
    try:
        ring = keys.keyring()
    except KeyringError as exc:
        problem = str(exc)[:500]
    row, _ = ProcessKeyring.objects.update_or_create(
        process=me["id"],
        defaults={
            "role": me["role"],
            "host": socket.gethostname()[:100],
            "pid": me["pid"],
            "generation": _generation if ring else 0,
            "active_kek_id": ring.active_kek_id if ring else "",
            "kek_ids": list(ring.keks) if ring else [],
            "problem": problem,
            "started_at": me["started"],
            "seen_at": timezone.now(),
        },
    )
    return row


def live_processes():
    return ProcessKeyring.objects.filter(
        seen_at__gte=timezone.now() - timedelta(seconds=LIVE_SECONDS)
    )


def wait_for_processes(lagging, *, timeout: float, poll: float = 0.5) -> list:
    """Wait until no live process is `lagging(report)`; return those that still are
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [p for p in live_processes() if lagging(p)]
        if not behind or time.monotonic() >= deadline:
            return behind
        time.sleep(poll)


class _Reporter(threading.Thread):
    """The background thread of a web or worker process: it looks at the key file
    (so even an idle process moves to a new one), asks the database whether its ring
    still matches, and reports. A failure is logged by its type and tried again."""

    def __init__(self):
        super().__init__(name="passage-keyring", daemon=True)

    def run(self):
        last, reported, rechecked, pruned = None, 0.0, 0.0, 0.0
        while True:
            now = time.monotonic()
            try:
                ring, problem = None, ""
                try:
                    ring = keys.keyring()  # a changed key file is read and verified here
                except KeyringError as exc:
                    problem = str(exc)
                if ring is not None and now - rechecked >= RECHECK_SECONDS:
                    rechecked = now
                    self.recheck(ring)
                current = (ring.digest if ring else None, problem, _generation)
                if _me.get("gone") == os.getpid():
                    return
                if current != last or now - reported >= REPORT_SECONDS:
                    if problem and current != last:
                        logger.error("keyring: %s", problem)  # names keys, never data
                    report()
                    last, reported = current, now
                if now - pruned >= 3600:
                    pruned = now
                    ProcessKeyring.objects.filter(seen_at__lt=timezone.now() - PRUNE_AFTER).delete()
            except Exception as exc:  # the database is down, say: try again later
                logger.warning("keyring reporter: %s", type(exc).__name__)
            finally:
                connections.close_all()  # this thread's connections only
            time.sleep(CHECK_SECONDS)

    @staticmethod
    def recheck(ring: Keyring) -> None:
        """The database may have moved on (a KEK added on another host): refuse a ring
        it no longer accepts until the key file here catches up."""
        global _generation
        st = state()
        if st is None:
            return
        problem = mismatch(ring, st)
        keys.refuse(mismatch_message(problem) if problem else None)
        if problem is None:
            _generation = st.generation


_reporter = {"pid": None, "atexit": False}


def start_reporter(role: str) -> None:
    """Report this process from a background thread (once per process). Celery's pool
    processes call it themselves (worker_process_init, config/celery.py); other forked
    children (the embedded beat of `make run`) do not report: they hold no keyring work,
    and a SQLite database must not be shared across a fork."""
    me = _process()
    me["role"] = role
    if _reporter["pid"] == os.getpid():
        return
    _reporter["pid"] = os.getpid()
    _Reporter().start()
    if not _reporter["atexit"]:
        _reporter["atexit"] = True
        atexit.register(forget)


def forget() -> None:
    """A process that exits in order stops counting as live at once."""
    _me["gone"] = os.getpid()  # and its reporter thread does not bring it back
    try:
        ProcessKeyring.objects.filter(process=_process()["id"]).delete()
        connections.close_all()
    except Exception:  # exiting anyway: a dead row ages out after LIVE_SECONDS
        pass


# --- The trigger that refuses data keys under any KEK but the active one --------------------
def trigger_sql(vendor: str) -> list[str]:
    table, state_table = "casework_datakey", "casework_keyringstate"
    if vendor == "sqlite":
        allowed = (
            f"NEW.kek_id = '' OR NOT EXISTS (SELECT 1 FROM {state_table}) OR EXISTS (SELECT 1 "
            f"FROM {state_table} s WHERE NEW.kek_id = s.active_kek_id "
            "OR (s.next_kek_id <> '' AND NEW.kek_id = s.next_kek_id))"
        )
        raise_ = f"BEGIN SELECT RAISE(ABORT, '{TRIGGER_MESSAGE}'); END"
        return [
            f"DROP TRIGGER IF EXISTS {table}_active_kek_insert",
            f"DROP TRIGGER IF EXISTS {table}_active_kek_update",
            f"CREATE TRIGGER {table}_active_kek_insert BEFORE INSERT ON {table} "
            f"WHEN NOT ({allowed}) {raise_}",
            f"CREATE TRIGGER {table}_active_kek_update BEFORE UPDATE OF kek_id ON {table} "
            f"WHEN NEW.kek_id IS NOT OLD.kek_id AND NOT ({allowed}) {raise_}",
        ]
    if vendor == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION passage_datakey_active_kek() RETURNS trigger AS $$ "
            "DECLARE active text; upcoming text; BEGIN "
            "IF NEW.kek_id = '' OR (TG_OP = 'UPDATE' AND NEW.kek_id = OLD.kek_id) THEN "
            "RETURN NEW; END IF; "
            f"SELECT active_kek_id, next_kek_id INTO active, upcoming FROM {state_table} "
            "WHERE id = 1; "
            "IF NOT FOUND OR NEW.kek_id = active OR (upcoming <> '' AND NEW.kek_id = upcoming) "
            "THEN RETURN NEW; END IF; "
            f"RAISE EXCEPTION '{TRIGGER_MESSAGE} (KEK %, active %)', NEW.kek_id, active "
            "USING ERRCODE = 'integrity_constraint_violation'; "
            "END; $$ LANGUAGE plpgsql",
            f"DROP TRIGGER IF EXISTS {table}_active_kek ON {table}",
            f"CREATE TRIGGER {table}_active_kek BEFORE INSERT OR UPDATE OF kek_id ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION passage_datakey_active_kek()",
        ]
    raise NotImplementedError(f"No keyring trigger for {vendor}")


def drop_trigger_sql(vendor: str) -> list[str]:
    table = "casework_datakey"
    if vendor == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {table}_active_kek_insert",
            f"DROP TRIGGER IF EXISTS {table}_active_kek_update",
        ]
    return [
        f"DROP TRIGGER IF EXISTS {table}_active_kek ON {table}",
        "DROP FUNCTION IF EXISTS passage_datakey_active_kek()",
    ]
