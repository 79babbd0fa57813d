"""The outbox and the beat with real processes (issue 13, items 5 and 9): a Celery worker
on Redis sharing the test's PostgreSQL database, an SMTP server that refuses, a Redis
restarted without persistence, two digest runs at once, two beats."""

import datetime
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import redis
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from casework import queues, services
from casework.models import Notification, Role
from tests.base import Personas, at_once, grant, make_case, make_user
from tests.ops.conftest import ROOT, Worker, use_broker, wait_until
from tests.ops.fakes import FakeSMTP, RedisServer

ADDRESSES = ["cora@example.org", "cleo@example.org"]


@pytest.fixture
def smtp():
    server = FakeSMTP()
    yield server
    server.stop()


def mail_to(smtp) -> dict:
    """A worker that sends through the fake SMTP server and retries after a second."""
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "PASSAGE_OUTBOX_RETRY_SECONDS": "1",
    }


def break_glass_world():
    """A Team A case with two coordinators who have addresses; Team B's coordinator is
    the one who breaks the glass."""
    personas = Personas()
    personas.coordinator.email = ADDRESSES[0]
    personas.coordinator.save()
    personas.team.coordinators.add(make_user("coordinator3", Role.COORDINATOR, email=ADDRESSES[1]))
    case = make_case(personas.team, actor=personas.coordinator, name="Quillon Alertcase")
    return personas, case


def break_glass(personas, case):
    with transaction.atomic():  # committed: the ids go to the broker after it
        services.break_glass(actor=personas.other_coordinator, case=case, justification="risk now")


def test_an_alert_that_hits_smtp_errors_is_retried_until_sent_once(real, smtp):
    smtp.refuse = 2  # the first two connections get "421 try again later"
    personas, case = break_glass_world()
    worker = real(**mail_to(smtp))
    break_glass(personas, case)
    wait_until(lambda: len(smtp.messages) >= 2, what="both alerts", worker=worker)
    time.sleep(2)  # nothing more comes
    assert sorted(smtp.recipients()) == sorted(ADDRESSES) and smtp.refused == 2
    rows = Notification.objects.filter(kind="break_glass")
    assert {r.status for r in rows} == {"sent"} and sum(r.attempts for r in rows) == 4
    assert all("Quillon" not in raw for _to, raw in smtp.messages)
    log = worker.log()
    assert "SMTPConnectError" in log and not any(a in log for a in ADDRESSES)


def test_an_alert_queued_in_redis_lost_by_a_restart_is_sent_by_the_sweeper(real, smtp, tmp_path):
    from casework.background import send
    from casework.tasks import sweep_outbox

    personas, case = break_glass_world()
    store = RedisServer(tmp_path).start()
    try:
        use_broker(store.url(0))
        break_glass(personas, case)
        broker = redis.Redis.from_url(store.url(0))
        assert broker.llen("celery") == 2  # one message per alert, waiting for a worker
        store.restart()  # without persistence: the messages are gone
        assert redis.Redis.from_url(store.url(0)).llen("celery") == 0
        worker = real(CELERY_BROKER_URL=store.url(0), **mail_to(smtp))
        use_broker(store.url(0))
        time.sleep(2)
        assert smtp.messages == []
        assert set(Notification.objects.values_list("status", flat=True)) == {"pending"}
        # The sweeper's minute comes (beat sends it): the rows are overdue by then.
        Notification.objects.update(next_attempt_at=timezone.now() - datetime.timedelta(minutes=2))
        assert send(sweep_outbox)
        wait_until(lambda: len(smtp.messages) >= 2, what="the swept alerts", worker=worker)
        assert send(sweep_outbox)  # a second sweep finds nothing left to send
        time.sleep(2)
        assert sorted(smtp.recipients()) == sorted(ADDRESSES)
    finally:
        store.stop()


def digest_world(n: int = 8) -> list[str]:
    """n caseworkers, each with a task due today."""
    personas = Personas()
    addresses = []
    for i in range(n):
        worker = make_user(f"digest{i}", Role.CASEWORKER, email=f"digest{i}@example.org")
        personas.team.members.add(worker)
        case = make_case(personas.team, actor=personas.coordinator, name=f"Quillon Digest{i}")
        grant(case, worker)
        queues.task_create(
            actor=personas.coordinator,
            case=case,
            title="Call",
            aim="support",
            due_on=timezone.localdate(),
            assignee=worker,
        )
        addresses.append(worker.email)
    return addresses


def test_two_concurrent_digest_runs_send_one_email_per_person(real, smtp):
    from casework.background import send
    from casework.tasks import send_daily_reminders

    smtp.delay = 0.2  # each e-mail takes a moment: the two runs overlap
    addresses = digest_world(8)
    first, second = real(**mail_to(smtp)), real(**mail_to(smtp))
    assert send(send_daily_reminders) and send(send_daily_reminders)
    wait_until(lambda: len(smtp.messages) >= 8, what="eight digests", worker=first)

    def runs_logged():  # "received" and "succeeded" lines of each run
        return sum(w.log().count("send_daily_reminders[") for w in (first, second))

    wait_until(lambda: runs_logged() >= 4, what="both runs to end", worker=second)
    time.sleep(2)
    assert sorted(smtp.recipients()) == sorted(addresses)


@contextmanager
def _always_mine(name):
    yield True


def test_two_runs_at_once_without_the_job_lock_still_send_one_per_person(
    django_db_serialized_rollback, transactional_db, monkeypatch
):
    """The unique key alone: both runs queue every digest at the same moment, on their
    own connections; the database lets one row per person and day through."""
    if connection.vendor != "postgresql":
        pytest.skip("threads need a server database (CI runs this on PostgreSQL)")
    from casework import background
    from casework.tasks import send_daily_reminders

    monkeypatch.setattr(background, "exclusive", _always_mine)
    addresses = digest_world(8)
    mail.outbox.clear()
    at_once(send_daily_reminders)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(addresses)
    assert Notification.objects.filter(kind="digest_caseworker").count() == 8


class Beat(Worker):
    """`celery beat` with the project's scheduler, checking its lock every second."""

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel=INFO",
                "--max-interval=1",
                f"--schedule={self.tmp_path / f'beat-{time.time_ns()}'}",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self


def test_a_second_beat_stands_by_and_takes_over_when_the_first_dies(real, tmp_path):
    first = Beat(tmp_path).start()
    second = None
    try:
        first.wait_for("beat leads", 60)
        second = Beat(tmp_path).start()
        second.wait_for("beat stands by", 60)
        assert "beat leads" not in second.log()
        first.proc.send_signal(signal.SIGKILL)  # its database session ends with it
        first.proc.wait(10)
        second.wait_for("beat leads", 30)
    finally:
        for beat in (first, second):
            if beat is not None:
                beat.stop()
