"""Faults lose nothing: tried with a real worker process on Redis and PostgreSQL."""

import datetime
import time

import pytest
import redis
from django.core import signing
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from casework.models import AccessEvent
from families.forms import SIGNER_SALT
from families.models import FamilyRequest
from tests.ops.conftest import BROKER, DEAD_BROKER, use_broker, wait_until

CANARY = "Quillon Brokerdown"


def post_request(client, name=CANARY):
    return client.post(
        "/contact/",
        {
            "requester_name": "Parent",
            "relationship": "mother",
            "requester_country": "Iran",
            "sought_names": name,
            "message": "Come home when you want.",
            "consent_processing": "on",
            "consent_nothing_shared": "on",
            "consent_retention": "on",
            "website": "",
            "started": signing.dumps(time.time() - 60, salt=SIGNER_SALT),
        },
    )


def processed(pk):
    return FamilyRequest.objects.filter(pk=pk, processed_at__isnull=False).exists()


def test_broker_down_while_a_family_submits_then_the_sweeper_catches_up(real):
    use_broker(DEAD_BROKER)
    response = post_request(Client(REMOTE_ADDR="198.51.100.20"))
    assert response.status_code == 200 and "families/thanks.html" in [
        t.name for t in response.templates
    ]
    request = FamilyRequest.objects.get()
    assert request.processed_at is None  # saved, not yet screened
    use_broker(BROKER)
    real()  # the broker is back, a worker runs
    from casework.tasks import sweep

    sweep()  # too early: nothing is overdue yet
    time.sleep(1)
    assert not processed(request.pk)
    FamilyRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - datetime.timedelta(hours=1)
    )
    sweep()
    wait_until(lambda: processed(request.pk), what="the sweeper's re-enqueued screening")
    assert FamilyRequest.objects.get(pk=request.pk).stage == "triage"


def test_worker_killed_mid_task_runs_it_again_and_its_effect_happens_once(real):
    from casework.background import send
    from families import services
    from families.tasks import process_request

    request, _secret = services.request_submit(
        data={"requester_name": "P", "sought_names": ["Sara Killtest"], "message": "m"},
        language="en",
        notice_sha256="n",
    )
    slow = real(PASSAGE_FAULT_DELAY_SECONDS="30")
    assert send(process_request, str(request.pk))
    slow.wait_for("process_request", 30)
    time.sleep(1)  # inside the task's transaction, sleeping
    slow.kill()
    assert not processed(request.pk)
    real()  # a healthy worker picks up the unacknowledged message
    wait_until(lambda: processed(request.pk), seconds=90, what="redelivery after SIGKILL")
    assert (
        AccessEvent.objects.filter(
            action="family.request.processed", object_id=str(request.pk)
        ).count()
        == 1
    )


def test_a_duplicated_delivery_has_no_second_effect(real, tmp_path):
    from casework.background import send
    from casework.models import Task
    from casework.tasks import send_daily_reminders
    from families import services
    from families.tasks import process_request
    from tests.base import Personas, make_case

    personas = Personas()
    personas.caseworker.email = "cw@example.org"
    personas.caseworker.save()
    case = make_case(personas.team, actor=personas.coordinator)
    from casework import queues
    from tests.base import grant

    grant(case, personas.caseworker)
    queues.task_create(
        actor=personas.coordinator,
        case=case,
        title="Due",
        aim="support",
        due_on=timezone.localdate(),
        assignee=personas.caseworker,
    )
    request, _secret = services.request_submit(
        data={"requester_name": "P", "sought_names": ["Sara Duplicate"], "message": "m"},
        language="en",
        notice_sha256="n",
    )
    worker = real()
    for _ in range(2):
        assert send(process_request, str(request.pk))
        assert send(send_daily_reminders)
    wait_until(lambda: worker.log().count("succeeded") >= 4, what="four deliveries", worker=worker)
    assert AccessEvent.objects.filter(action="family.request.processed").count() == 1
    mails = list((tmp_path / "mail").glob("*.log"))
    assert sum(p.read_text().count("To: cw@example.org") for p in mails) == 1
    assert Task.objects.count() == 1


def test_a_task_enqueued_in_a_rolled_back_transaction_never_runs(real):
    from casework.background import enqueue
    from casework.tasks import heartbeat

    broker = redis.Redis.from_url(BROKER)
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(heartbeat)
        raise RuntimeError("rolled back")
    assert broker.llen("celery") == 0
    with transaction.atomic():
        enqueue(heartbeat)
    assert broker.llen("celery") == 1


def test_a_dropped_database_connection_does_not_fail_the_next_request(real):
    """Requests through Django's real WSGI handler (the test client skips the connection
    checks): the connection is kept between requests (CONN_MAX_AGE) and checked before
    use (CONN_HEALTH_CHECKS), so one the database dropped is replaced."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connections
    from django.test import RequestFactory

    handler = WSGIHandler()

    def health():
        environ = RequestFactory().get("/healthz", REMOTE_ADDR="127.0.0.1").environ
        started = []
        body = b"".join(handler(environ, lambda status, headers: started.append(status)))
        return started[0], body

    saved = dict(connection.settings_dict)
    connection.settings_dict.update(CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True)
    connection.close()
    try:
        assert health() == ("200 OK", b"ok")
        pid = connection.connection.info.backend_pid  # kept open between requests
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        other.close()
        assert health() == ("200 OK", b"ok")
        assert connection.connection.info.backend_pid != pid
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        connection.close()
