"""Health that tells the truth, in bounded time: /healthz says "fail" (503) with the
worker dead, with a keyring that is not the database's, and with a broker or cache that
hangs, and it answers within seconds whatever hangs behind it."""

import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from casework import vault
from casework.tasks import HEARTBEAT_KEY
from casework.vault import registry

pytestmark = pytest.mark.django_db
BOUND = 3.0  # seconds /healthz may take, whatever hangs


@contextmanager
def at_most(seconds):
    """Interrupt a call that hangs (the code before this work hung for good)."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def healthz(client):
    with at_most(20):
        started = time.monotonic()
        response = client.get(reverse("healthz"))
        elapsed = time.monotonic() - started
    return response.status_code, response.content, elapsed


@pytest.fixture
def silent_port():
    """A TCP listener that accepts connections and never answers (a hung Redis)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def broker(settings, monkeypatch):
    """Tasks go to a broker (and no longer run eagerly); returns a function to point it."""
    from config.celery import app

    def point(url):
        settings.CELERY_TASK_ALWAYS_EAGER = False
        settings.CELERY_BROKER_URL = url
        # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        monkeypatch.setattr(app.conf, "broker_url", url)

    point("memory://")
    return point


@pytest.fixture
def shared_cache(settings, tmp_path):
    """A cache every process shares (a file cache here; Redis in production)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    return caches["default"]


def beat(cache, age=timedelta(0)):
    cache.set(HEARTBEAT_KEY, (timezone.now() - age).isoformat(), timeout=3600)


# --- The worker --------------------------------------------------------------------------------
def test_healthz_fails_while_no_worker_has_sent_a_heartbeat(client, broker, shared_cache):
    assert healthz(client)[:2] == (503, b"fail")
    beat(shared_cache)
    assert healthz(client)[:2] == (200, b"ok")


def test_healthz_fails_when_the_worker_s_last_heartbeat_is_old(client, broker, shared_cache):
    beat(shared_cache, age=timedelta(minutes=10))  # the worker died ten minutes ago
    assert healthz(client)[:2] == (503, b"fail")


def test_healthz_sees_the_worker_through_its_report_where_the_cache_is_per_process(
    client, broker, settings
):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert healthz(client)[:2] == (503, b"fail")
    registry.report("worker")
    assert healthz(client)[:2] == (200, b"ok")
    registry.ProcessKeyring.objects.update(
        seen_at=timezone.now() - timedelta(seconds=registry.LIVE_SECONDS + 1)
    )
    assert healthz(client)[:2] == (503, b"fail")


def test_healthz_needs_no_worker_when_tasks_run_in_the_process(client):
    assert healthz(client)[:2] == (200, b"ok")  # no broker: tasks run eagerly


# --- Hung dependencies -------------------------------------------------------------------------
def test_healthz_answers_fail_in_bounded_time_when_the_broker_never_answers(
    client, broker, shared_cache, silent_port
):
    beat(shared_cache)
    broker(f"redis://127.0.0.1:{silent_port}/0")
    status, body, elapsed = healthz(client)
    assert (status, body) == (503, b"fail")
    assert elapsed < BOUND
    # Asked again while that check still hangs: no second thread, the same answer.
    status, body, elapsed = healthz(client)
    assert (status, body) == (503, b"fail") and elapsed < BOUND
    hung = [t for t in threading.enumerate() if t.name.startswith("health-broker")]
    assert len(hung) <= 1


def test_healthz_answers_fail_in_bounded_time_when_the_cache_never_answers(
    client, settings, silent_port
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{silent_port}/0",
        }
    }
    status, body, elapsed = healthz(client)
    assert (status, body) == (503, b"fail")
    assert elapsed < BOUND


def test_healthz_fails_when_the_cache_refuses(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    status, body, elapsed = healthz(client)
    assert (status, body) == (503, b"fail") and elapsed < BOUND


# --- The keyring --------------------------------------------------------------------------------
@pytest.fixture
def keyfile(tmp_path, settings, monkeypatch):
    path = tmp_path / "keyring.json"
    vault.write_keyring(vault.Keyring.generate(), path)
    monkeypatch.delenv("PASSAGE_KEYRING_JSON")
    settings.PASSAGE_KEYRING = str(path)
    vault.reset_keyring()
    vault.keyring()
    yield path
    vault.reset_keyring()


def test_healthz_fails_with_a_keyring_that_is_not_the_database_s(client, keyfile):
    assert healthz(client)[:2] == (200, b"ok")
    good = keyfile.read_text()
    vault.write_keyring(vault.Keyring.generate(), keyfile, replace=True)
    assert healthz(client)[:2] == (503, b"fail")
    keyfile.unlink()
    keyfile.write_text(good)
    assert healthz(client)[:2] == (200, b"ok")


def test_healthz_fails_once_the_database_moved_to_a_newer_kek_than_this_process_holds(
    client, keyfile
):
    """Another host ran `keyring add`: the database's active KEK is one this process's
    key file does not hold yet."""
    ring = vault.keyring()
    newer = vault.Keyring(
        keks={"kek-elsewhere": os.urandom(32), **ring.keks},
        index_key=ring.index_key,
        audit_key=ring.audit_key,
    )
    registry.kek_introduce(newer)
    registry.kek_activate("kek-elsewhere")
    assert healthz(client)[:2] == (503, b"fail")


def test_the_health_command_names_the_failing_check(keyfile, capsys):
    call_command("health")
    assert "keyring   ok" in capsys.readouterr().out
    vault.write_keyring(vault.Keyring.generate(), keyfile, replace=True)
    with pytest.raises(CommandError, match="unhealthy: keyring"):
        call_command("health")
