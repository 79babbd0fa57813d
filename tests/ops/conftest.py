"""A real Celery worker on Redis, sharing the test's PostgreSQL database."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("PASSAGE_TEST_REDIS", "redis://127.0.0.1:6379")
BROKER, CACHE = f"{REDIS}/11", f"{REDIS}/10"
DEAD_BROKER = "redis://127.0.0.1:6399/0"


def redis_up() -> bool:
    try:
        return redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


def need_real_services():
    if connection.vendor != "postgresql" or not redis_up():
        if os.environ.get("CI") and connection.vendor == "postgresql":
            pytest.fail("Redis must be up for the failure tests (.ci/run starts it)")
        pytest.skip("needs PostgreSQL and Redis (the second pass of .ci/run)")


def database_url() -> str:
    s = connection.settings_dict
    return (
        f"postgres://{s['USER'] or 'postgres'}:{s['PASSWORD'] or ''}@{s['HOST'] or '127.0.0.1'}"
        f":{s['PORT'] or 5432}/{s['NAME']}"
    )


def use_broker(url):
    """Point this process's Celery app at a broker (and stop running tasks eagerly)."""
    from config.celery import app

    os.environ["CELERY_BROKER_URL"] = url
    app.conf.broker_url = url
    app.conf.task_always_eager = False
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_timeout = 1
    app._pool = None
    if "amqp" in app.__dict__:
        app.__dict__["amqp"]._producer_pool = None


class Worker:
    def __init__(self, tmp_path, **env):
        self.tmp_path = tmp_path
        self.log_path = tmp_path / f"worker-{time.time_ns()}.log"
        self.env = {
            **os.environ,
            "DEBUG": "1",
            "CELERY_BROKER_URL": BROKER,
            "REDIS_URL": CACHE,
            "DATABASE_URL": database_url(),
            "PASSAGE_VAR_DIR": str(tmp_path),
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(tmp_path / "mail"),
            "CELERY_VISIBILITY_TIMEOUT": "4",
            "CELERY_RESTORE_INTERVAL": "1",
            "CELERY_RESTORE_THROTTLE": "1",
            **env,
        }
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.proc = None

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for("ready", 60)
        return self

    def wait_for(self, text, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.log():
                return
            assert self.proc.poll() is None, self.log()
            time.sleep(0.2)
        raise AssertionError(f"worker never logged {text!r}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def real(django_db_serialized_rollback, transactional_db, tmp_path, monkeypatch):
    """PostgreSQL + Redis + workers this test starts; the app sends to the real broker."""
    need_real_services()
    from config.celery import app

    for url in (BROKER, CACHE):
        redis.Redis.from_url(url).flushdb()
    saved = (app.conf.broker_url, app.conf.task_always_eager, os.environ.get("CELERY_BROKER_URL"))
    workers = []

    def worker(**env):
        w = Worker(tmp_path, **env)
        workers.append(w)
        return w.start()

    use_broker(BROKER)
    yield worker
    for w in workers:
        w.stop()
    app.conf.broker_url, app.conf.task_always_eager = saved[0], saved[1]
    if saved[2] is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = saved[2]
    app._pool = None


def wait_until(check, seconds=60, what="condition", worker=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{worker.log() if worker else ''}")
