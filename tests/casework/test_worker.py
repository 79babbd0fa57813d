"""A real Celery worker process on Redis runs a task that the app enqueues."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("PASSAGE_TEST_REDIS", "redis://127.0.0.1:6379")
BROKER, CACHE = f"{REDIS}/13", f"{REDIS}/12"


def redis_up() -> bool:
    try:
        return redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.fixture
def worker(tmp_path):
    if not redis_up():
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS}; .ci/run should have started it")
        pytest.skip(f"Redis is not reachable at {REDIS}")
    for url in (BROKER, CACHE):
        redis.Redis.from_url(url).flushdb()
    env = {
        **os.environ,
        "DEBUG": "1",
        "CELERY_BROKER_URL": BROKER,
        "REDIS_URL": CACHE,
        "PASSAGE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",
    }
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen(
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
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_a_real_worker_on_redis_runs_an_enqueued_task(worker, tmp_path, monkeypatch):
    # Celery prefers CELERY_BROKER_URL from the environment over the broker argument.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    producer = Celery(broker=BROKER)
    producer.send_task("casework.tasks.heartbeat")
    cache = redis.Redis.from_url(CACHE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not cache.keys("*worker-heartbeat"):
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        time.sleep(0.25)
    assert cache.keys("*worker-heartbeat"), (tmp_path / "worker.log").read_text()
    log = (tmp_path / "worker.log").read_text()
    assert "casework.tasks.heartbeat" in log and "succeeded" in log
