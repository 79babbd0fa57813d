"""Health: can this process serve, and is the work behind it being done?

    database  SELECT 1 (on PostgreSQL under a statement timeout)
    keyring   this process's keyring is the database's (vault/registry.py)
    cache     a write and a read back
    broker    a connection and, on Redis, a PING (not checked when tasks run eagerly)
    worker    the heartbeat a worker writes every minute is recent (HEARTBEAT_MAX_AGE)

Every check has a time bound, so /healthz answers within about TIMEOUT seconds even
when a dependency hangs (a Redis or a broker that accepts the connection and never
answers):

1. The cache, broker and worker checks run in one background thread each (a check
   that hangs there hangs alone), and are waited for until TIMEOUT after the start.
   A check still hung from an earlier call is not started again: it fails at once, so
   a dead dependency never piles up threads.
2. The database and keyring checks run in the request's thread, whose database
   connection they need, under a statement timeout on PostgreSQL.
3. Network clients get socket timeouts of TIMEOUT as well, so a hung thread ends.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import caches
from django.db import connection, connections, transaction
from django.utils import timezone

TIMEOUT = 1.0  # seconds for each check
# Beat sends the heartbeat every 60 s; two missed ticks and some queueing is the limit.
HEARTBEAT_MAX_AGE = timedelta(seconds=150)
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)

_threads: dict[str, ThreadPoolExecutor] = {}
_pending: dict = {}


def check_all(timeout: float = TIMEOUT) -> dict[str, bool]:
    """Each check's name and whether it passed, in about `timeout` seconds at most."""
    started = time.monotonic()
    cache = caches["default"]  # this thread's cache object (the handler is per thread)
    background = {"cache": lambda: _cache(cache)}
    results = {}
    if _tasks_go_to_a_broker():
        background["broker"] = _broker
        if _cache_is_shared():
            background["worker"] = lambda: _heartbeat(cache)
    futures = {name: _start(name, func) for name, func in background.items()}
    results["database"] = _database()
    results["keyring"] = results["database"] and _keyring()
    if _tasks_go_to_a_broker() and not _cache_is_shared():
        # Development (`make run`): a per-process cache cannot show the worker's
        # heartbeat, but the worker reports itself in the database.
        results["worker"] = results["database"] and _worker_reported()
    for name, future in futures.items():
        try:
            results[name] = bool(
                future.result(timeout=max(0.0, started + timeout - time.monotonic()))
            )
        except Exception:  # timed out, or the check raised
            results[name] = False
    return results


def _start(name, func):
    previous = _pending.get(name)
    if previous is not None and not previous.done():
        return previous  # still hung from an earlier call: it fails again, at once
    pool = _threads.setdefault(name, ThreadPoolExecutor(1, thread_name_prefix=f"health-{name}"))
    _pending[name] = future = pool.submit(_closing(func))
    return future


def _closing(func):
    def run():
        try:
            return func()
        finally:
            connections.close_all()  # this thread's connections only

    return run


def _tasks_go_to_a_broker() -> bool:
    return bool(settings.CELERY_BROKER_URL) and not settings.CELERY_TASK_ALWAYS_EAGER


def _cache_is_shared() -> bool:
    return settings.CACHES["default"]["BACKEND"] not in PROCESS_LOCAL_CACHES


# --- The checks -----------------------------------------------------------------------------------
def _database() -> bool:
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute(f"SET LOCAL statement_timeout = {int(TIMEOUT * 1000)}")
                cursor.execute("SELECT 1")
                return cursor.fetchone()[0] == 1
    except Exception:
        return False


def _keyring() -> bool:
    """This process's ring is the database's (read afresh: another host may have added
    a KEK since this process last looked)."""
    from casework import vault
    from casework.vault import registry

    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {int(TIMEOUT * 1000)}")
            registry.verify(vault.keyring())
        return True
    except Exception:
        return False


def _cache(cache) -> bool:
    cache.set("passage:healthz", "1", 10)
    return cache.get("passage:healthz") == "1"


def _broker() -> bool:
    from celery import current_app as app  # the project's app (config wires it)
    from kombu import Connection

    options = {
        **(app.conf.broker_transport_options or {}),
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
    }
    with Connection(
        app.conf.broker_url, connect_timeout=TIMEOUT, transport_options=options
    ) as conn:
        conn.ensure_connection(max_retries=0, timeout=TIMEOUT)
        client = getattr(conn.default_channel, "client", None)
        if hasattr(client, "ping"):  # Redis: a connection alone proves no answer
            client.ping()
    return True


def _heartbeat(cache) -> bool:
    from casework.tasks import HEARTBEAT_KEY

    beat = cache.get(HEARTBEAT_KEY)
    if not beat:
        return False
    return timezone.now() - datetime.fromisoformat(beat) <= HEARTBEAT_MAX_AGE


def _worker_reported() -> bool:
    from casework.vault import registry

    try:
        return registry.live_processes().filter(role="worker", problem="").exists()
    except Exception:
        return False
