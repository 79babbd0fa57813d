"""Two runs of a periodic job at once (a second beat; the sweeper re-sending a job that
is still running) have the effect of one (issue 13, item 9). Each run is a thread with a
connection of its own to PostgreSQL; one step of each job is slowed so the runs overlap."""

import datetime
import time

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from casework.models import AccessEvent, Case, Notification, Stage
from contacts.models import ConsentEvent, NoticeText
from tests.base import Personas, at_once, grant, make_case


@pytest.fixture
def pg(django_db_serialized_rollback, transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("threads need a server database (CI runs this on PostgreSQL)")


def slowed(monkeypatch, module, name, seconds=0.5):
    real = getattr(module, name)

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)


def test_consent_upkeep_twice_at_once_lapses_once_and_warns_once(pg, monkeypatch):
    from contacts import services
    from contacts.tasks import consent_daily

    personas = Personas()
    personas.caseworker.email = "casey@example.org"
    personas.caseworker.save()
    case = make_case(personas.team, actor=personas.coordinator, name="Quillon Consentjob")
    grant(case, personas.caseworker)
    mother = services.contact_save(
        actor=personas.caseworker,
        case=case,
        data={"kind": "family", "name": "Mother", "relationship": "mother"},
    )
    today = timezone.localdate()
    for purpose, expires in (("relay", -1), ("meet", 10)):
        services.consent_record(
            actor=personas.caseworker,
            case=case,
            purpose=purpose,
            decision="granted",
            counterpart=mother,
            notice=NoticeText.current(purpose, "en"),
            method="in_person",
            expires_on=today + datetime.timedelta(days=expires),
        )
    slowed(monkeypatch, services, "consent_lapse")
    mail.outbox.clear()
    at_once(consent_daily)
    assert ConsentEvent.objects.filter(decision="lapsed").count() == 1
    assert AccessEvent.objects.filter(action="consent.lapsed").count() == 1
    assert [m.to for m in mail.outbox] == [["casey@example.org"]]
    assert Notification.objects.filter(kind="consent_expiring").count() == 1


def test_shredding_twice_at_once_shreds_and_logs_once(pg, monkeypatch):
    from casework import services
    from casework.tasks import shred_expired_cases

    personas = Personas()
    case = make_case(personas.team, actor=personas.coordinator, name="Quillon Shredjob")
    services.case_change_stage(actor=personas.coordinator, case=case, stage=Stage.CLOSED)
    Case.objects.filter(pk=case.pk).update(retention_until=datetime.date(2000, 1, 1))
    slowed(monkeypatch, services, "case_shred")
    at_once(shred_expired_cases)
    assert Case.objects.get(pk=case.pk).is_shredded
    assert AccessEvent.objects.filter(action="case.shredded", case=case).count() == 1


def test_digests_twice_at_once_send_one_each(pg, monkeypatch):
    from casework import queues, tasks

    personas = Personas()
    personas.caseworker.email = "casey@example.org"
    personas.caseworker.save()
    case = make_case(personas.team, actor=personas.coordinator)
    grant(case, personas.caseworker)
    queues.task_create(
        actor=personas.coordinator,
        case=case,
        title="Call",
        aim="support",
        due_on=timezone.localdate(),
        assignee=personas.caseworker,
    )
    slowed(monkeypatch, tasks, "_digest_counts", seconds=0.3)
    mail.outbox.clear()
    at_once(tasks.send_daily_reminders)
    assert [m.to for m in mail.outbox] == [["casey@example.org"]]
