"""Putting work on the queue: after commit, bounded in time, never at the cost of the request.

1. `enqueue(task, *ids)` sends once the current transaction commits: a rolled-back
   transaction sends nothing, and a worker never looks for an uncommitted row.
2. The send happens on a background thread of this process, and the request waits for it
   at most PASSAGE_ENQUEUE_WAIT_SECONDS. A healthy broker answers within a millisecond;
   a broker that is down or silent (TCP accepted, nothing answered) costs the thread one
   try and one retry, each bounded by PASSAGE_BROKER_TIMEOUT, and the request nothing.
3. After a failed send, this process leaves that broker alone for
   PASSAGE_REDIS_PAUSE_SECONDS, so an outage costs no request a timeout. The work itself
   is saved (a request's row, an outbox row) and the sweeper enqueues again whatever has
   not run; every task is idempotent, so a second enqueue does no harm.
4. With tasks running eagerly (tests, or no broker configured) the task runs in line.

`send()` publishes at once and reports success; the sweepers and `rotate_keys
--background` use it (from a worker or a command, where a bounded wait is fine).

Periodic jobs: `exclusive(name)` lets one run of a job work while a concurrent run (a
second beat, a sweeper's re-send) returns at once; `OneBeatScheduler` lets only one beat
publish while the others stand by.
"""

import atexit
import fcntl
import hashlib
import logging
import os
import queue
import threading
import time
from contextlib import contextmanager

from celery.beat import PersistentScheduler
from django.db import transaction

logger = logging.getLogger("passage.background")


def enqueue(task, *args: str) -> None:
    """Send `task(*args)` once the current transaction commits (args: ids and codes)."""
    transaction.on_commit(lambda: _after_commit_safely(task, args))


def _after_commit_safely(task, args) -> None:
    # The data is committed: nothing about the send may now fail the request. (A task
    # that runs eagerly raises as before: tests and development want to see it.)
    if task.app.conf.task_always_eager:
        send(task, *args)
        return
    try:
        _after_commit(task, args)
    except Exception as exc:
        logger.warning("enqueue failed for %s (%s)", task.name, type(exc).__name__)


def send(task, *args: str, countdown: float | None = None) -> bool:
    """Publish now; False (logged with the task name and error class only) if the broker
    failed. Bounded: one try and one retry, each within PASSAGE_BROKER_TIMEOUT."""
    from django.conf import settings

    try:
        task.apply_async(
            args=args,
            countdown=countdown,
            retry=True,
            retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY,
        )
    except Exception as exc:  # the broker is down or silent: the sweeper will catch up
        logger.warning(
            "enqueue failed for %s (%s); the sweeper will retry", task.name, type(exc).__name__
        )
        return False
    return True


# --- After commit: on a thread, waited for briefly -------------------------------------------
_paused: dict[str, float] = {}  # broker URL -> time.monotonic() until which it is left alone
_publisher_lock = threading.Lock()
_publisher = None


def _after_commit(task, args) -> None:
    from django.conf import settings

    if _broker_paused(task):
        logger.warning(
            "enqueue skipped for %s (broker paused); the sweeper will send it", task.name
        )
        return
    done = _the_publisher().submit(task, args)
    if done is not None:
        done.wait(settings.PASSAGE_ENQUEUE_WAIT_SECONDS)


def _broker_paused(task) -> bool:
    return time.monotonic() < _paused.get(str(task.app.conf.broker_url), 0.0)


def _publish(task, args) -> None:
    from django.conf import settings

    if _broker_paused(task):  # it failed while this one waited in the queue
        logger.warning(
            "enqueue skipped for %s (broker paused); the sweeper will send it", task.name
        )
        return
    if not send(task, *args):
        _paused[str(task.app.conf.broker_url)] = (
            time.monotonic() + settings.PASSAGE_REDIS_PAUSE_SECONDS
        )


class _Publisher:
    """One daemon thread per process that publishes what requests hand it, in order."""

    QUEUE_SIZE = 1000

    def __init__(self):
        self.pid = os.getpid()
        self.queue: queue.Queue = queue.Queue(maxsize=self.QUEUE_SIZE)
        self.thread = threading.Thread(target=self._run, name="passage-enqueue", daemon=True)
        self.thread.start()

    def submit(self, task, args) -> threading.Event | None:
        done = threading.Event()
        try:
            self.queue.put_nowait((task, args, done))
        except queue.Full:  # the broker has been slow for a while: let the sweeper do it
            logger.warning(
                "enqueue skipped for %s (queue full); the sweeper will send it", task.name
            )
            return None
        return done

    def _run(self) -> None:
        while True:
            task, args, done = self.queue.get()
            try:
                _publish(task, args)
            except Exception as exc:  # never let the thread die
                logger.warning("enqueue failed for %s (%s)", task.name, type(exc).__name__)
            finally:
                done.set()
                self.queue.task_done()

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)


def _the_publisher() -> _Publisher:
    """This process's publisher (a forked child, e.g. a pool process, makes its own)."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():
            _publisher = _Publisher()
        return _publisher


@atexit.register
def _drain_at_exit() -> None:
    # A process that ends cleanly gives its last sends a moment; the sweeper covers the rest.
    if _publisher is not None and _publisher.pid == os.getpid():
        _publisher.drain(2.0)


# --- The sweeper: work whose background step has not run in time -----------------------------
SWEEPERS = []


def sweeper(func):
    """Register a function that re-enqueues overdue work of one kind (apps register
    theirs in their tasks module, which the worker imports)."""
    SWEEPERS.append(func)
    return func


def overdue_since():
    import datetime

    from django.conf import settings
    from django.utils import timezone

    return timezone.now() - datetime.timedelta(minutes=settings.PASSAGE_SWEEP_MINUTES)


def daily_done(name: str) -> None:
    """A daily job marks its run for today (the sweeper runs it if the mark is missing)."""
    from django.utils import timezone

    from .models import DailyRun

    DailyRun.objects.get_or_create(name=name, day=timezone.localdate())


def daily_due(name: str, hour: int, minute: int) -> bool:
    """Has today's run of a daily job been missed (its time plus the grace has passed)?"""
    import datetime

    from django.conf import settings
    from django.utils import timezone

    from .models import DailyRun

    now = timezone.localtime()
    due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if now < due + datetime.timedelta(minutes=settings.PASSAGE_SWEEP_MINUTES):
        return False
    return not DailyRun.objects.filter(name=name, day=now.date()).exists()


# --- One run at a time, one beat at a time ------------------------------------------------------
LOCK_CLASS = 0x5041_5342  # "PASB": the first half of every advisory lock key taken here


def _lock_id(name: str) -> int:
    """The second half: a signed 32-bit number from the name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def _lock_path(name: str):
    from django.conf import settings

    folder = settings.VAR_DIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.lock"


_held_here = threading.local()  # names this thread holds (a session lock would let it in again)


@contextmanager
def exclusive(name: str):
    """Yield True if this run now holds the lock `name`, False if another run holds it.

    PostgreSQL: a session advisory lock on this process's connection, so every machine
    sharing the database agrees, and a run whose process dies lets go with its connection.
    SQLite (one machine): an flock on a file in PASSAGE_VAR_DIR, dropped the same way.
    A periodic job wraps its work in it: a second beat's run, or a sweeper's re-send while
    the job still runs, finds it held and returns at once; runs one after the other are
    safe anyway, as every job is idempotent.
    """
    held_here = _held_here.__dict__.setdefault("names", set())
    if name in held_here:
        yield False
        return
    with _take(name) as held:
        if held:
            held_here.add(name)
        try:
            yield held
        finally:
            held_here.discard(name)


@contextmanager
def _take(name: str):
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, _lock_id(name)])
            held = cursor.fetchone()[0]
        try:
            yield held
        finally:
            if held:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, _lock_id(name)]
                        )
                except Exception as exc:  # the connection broke: the lock went with it
                    logger.warning("lock %s not released (%s)", name, type(exc).__name__)
        return
    with open(_lock_path(name), "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class BeatLock:
    """The lock a beat holds while it leads, for as long as its process lives.

    PostgreSQL: a session advisory lock on a connection of its own (so nothing else in
    the process closes it); if the beat dies, or the database drops the connection, the
    lock goes with it and a standby beat takes it at its next tick. SQLite: an flock.
    `held()` is asked before every publish, and (re)takes the lock when it is free.
    """

    NAME = "beat"

    def __init__(self):
        self._connection = None
        self._file = None

    def held(self) -> bool:
        from django.db import connections

        if connections["default"].vendor != "postgresql":
            return self._held_file()
        try:
            return self._held_advisory()
        except Exception as exc:  # the database is unreachable: lead nothing meanwhile
            logger.warning("beat lock unknown (%s); not publishing", type(exc).__name__)
            self._close_connection()
            return False

    def _held_advisory(self) -> bool:
        from django.db import connections

        if self._connection is None:
            self._connection = connections.create_connection("default")
        with self._connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid = (%s)::int4::oid"
                " AND objid = (%s)::int4::oid"
                " AND objsubid = 2",
                [LOCK_CLASS, _lock_id(self.NAME)],
            )
            if cursor.fetchone():
                return True
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, _lock_id(self.NAME)])
            return bool(cursor.fetchone()[0])

    def _held_file(self) -> bool:
        if self._file is None:
            handle = open(_lock_path(self.NAME), "a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._file = handle
        return True

    def _close_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None

    def release(self) -> None:
        self._close_connection()  # a session advisory lock ends with its session
        if self._file is not None:
            self._file.close()
            self._file = None


class OneBeatScheduler(PersistentScheduler):
    """Celery beat's file-backed scheduler that publishes only while it holds the beat lock.

    Run one beat per installation; a second one (another machine, a restart that
    overlapped) keeps time like the first but publishes nothing while the first holds
    the lock, and takes over at its next tick once the first is gone. Entries advance
    either way, so a standby that takes over sends no burst of "missed" runs.
    """

    def __init__(self, *args, **kwargs):
        self.lock = BeatLock()
        self._leading = None
        super().__init__(*args, **kwargs)
        self._check()

    def _check(self) -> bool:
        leading = self.lock.held()
        if leading != self._leading:
            logger.info("beat %s", "leads: publishing" if leading else "stands by: another leads")
            self._leading = leading
        return leading

    def tick(self, *args, **kwargs):
        self._check()  # so a standby reports taking over when it does, not at its next entry
        return super().tick(*args, **kwargs)

    def apply_entry(self, entry, producer=None):
        if self._check():
            super().apply_entry(entry, producer=producer)

    def close(self):
        try:
            super().close()
        finally:
            self.lock.release()
