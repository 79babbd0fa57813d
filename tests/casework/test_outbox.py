"""The notification outbox (casework/outbox.py): every e-mail is a row written with the
event that causes it, sent once per recipient, retried until it goes. Tasks run eagerly
here; tests/ops/test_outbox.py runs the same with a real worker, Redis and SMTP server."""

import datetime
import logging
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import IntegrityError, transaction
from django.utils import timezone

from casework import outbox, services, staff
from casework.background import BeatLock, OneBeatScheduler, exclusive
from casework.models import DataKey, Notification, Role
from casework.tasks import (
    _queue_digest,
    deliver,
    notify,
    send_daily_reminders,
    sweep,
    sweep_outbox,
)
from tests.base import grant, make_case, make_user

OLD_ADDRESS = "quillon.oldaddress@example.org"


class FlakyBackend(EmailBackend):
    """The locmem backend, failing its next `failures` sends as an SMTP server that drops
    the connection would (with an address in the error, as smtplib's errors carry)."""

    failures = 0

    def send_messages(self, messages):
        if FlakyBackend.failures:
            FlakyBackend.failures -= 1
            raise smtplib.SMTPServerDisconnected(f"lost while sending to {OLD_ADDRESS}")
        return super().send_messages(messages)


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = "tests.casework.test_outbox.FlakyBackend"
    FlakyBackend.failures = 0
    yield FlakyBackend
    FlakyBackend.failures = 0


@pytest.fixture
def team_case(personas):
    """A Team A case; the team has two coordinators with addresses."""
    personas.coordinator.email = "cora@example.org"
    personas.coordinator.save()
    second = make_user("coordinator3", Role.COORDINATOR, email="cleo@example.org")
    personas.team.coordinators.add(second)
    return make_case(personas.team, actor=personas.coordinator, name="Quillon Outboxcase")


def overdue(*rows, by=datetime.timedelta(minutes=5)):
    Notification.objects.filter(pk__in=[r.pk for r in rows]).update(
        next_attempt_at=timezone.now() - by
    )


# --- Queue: in the event's transaction ----------------------------------------------------------
def test_a_break_glass_queues_one_row_per_coordinator_in_its_own_transaction(
    personas, team_case, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.break_glass(
            actor=personas.other_coordinator, case=team_case, justification="risk now"
        )
    rows = Notification.objects.filter(kind="break_glass")
    assert sorted(r.recipient.username for r in rows) == ["coordinator", "coordinator3"]
    # Ids and codes only: who it is about and who acted, by id; no address, no text.
    for row in rows:
        assert row.about == str(team_case.pk) and row.actor == personas.other_coordinator
        assert row.address is None and row.data_key is None and row.codes == []
        assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    assert sorted(m.to[0] for m in mail.outbox) == ["cleo@example.org", "cora@example.org"]
    assert "Quillon" not in "".join(m.subject + m.body for m in mail.outbox)


def test_a_rolled_back_event_queues_and_sends_nothing(
    personas, team_case, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.break_glass(
                actor=personas.other_coordinator, case=team_case, justification="risk now"
            )
            raise RuntimeError("the next step failed")
    assert callbacks == [] and not Notification.objects.exists() and mail.outbox == []


def test_a_sealed_opening_with_nobody_else_named_goes_to_coordinators_and_auditors(
    personas, team_case, django_capture_on_commit_callbacks
):
    personas.auditor.email = "audrey@example.org"
    personas.auditor.save()
    with django_capture_on_commit_callbacks(execute=True):
        outbox.notification_queue(
            kind="sealed_opened", about=str(team_case.pk), actor=personas.coordinator
        )
    rows = Notification.objects.all()
    assert {r.kind for r in rows} == {"sealed_opened_unwatched"}
    by_to = {m.to[0]: m.body for m in mail.outbox}
    assert sorted(by_to) == ["audrey@example.org", "cleo@example.org"]  # not the opener
    assert "/audit/" in by_to["audrey@example.org"] and "/audit/" not in by_to["cleo@example.org"]


# --- Send: once per row -------------------------------------------------------------------------
def test_a_row_is_sent_once_however_often_it_is_delivered(personas, team_case):
    (pk,) = outbox.notification_queue(
        kind="break_glass",
        about=str(team_case.pk),
        actor=personas.other_coordinator,
        recipients=[personas.coordinator],
    )
    for _ in range(3):  # a redelivery, a retry, the sweeper
        deliver(pk)
    assert [m.to for m in mail.outbox] == [["cora@example.org"]]
    row = Notification.objects.get(pk=pk)
    assert row.attempts == 1 and row.status == "sent"
    # Every try of one row carries one Message-ID, so a copy is recognisable.
    assert mail.outbox[0].extra_headers["Message-ID"].startswith(f"<{pk}@")


def test_a_row_another_worker_holds_is_left_alone(personas, team_case):
    (pk,) = outbox.notification_queue(
        kind="break_glass",
        about=str(team_case.pk),
        actor=personas.other_coordinator,
        recipients=[personas.coordinator],
    )
    Notification.objects.filter(pk=pk).update(
        leased_until=timezone.now() + datetime.timedelta(minutes=1)
    )
    assert outbox.notification_deliver(notification_id=pk) is None
    assert mail.outbox == [] and outbox.notifications_due() == []
    # The lease ran out (that worker died): the sweeper hands it over again.
    Notification.objects.filter(pk=pk).update(
        leased_until=timezone.now() - datetime.timedelta(seconds=1),
        next_attempt_at=timezone.now() - datetime.timedelta(minutes=5),
    )
    assert outbox.notifications_due() == [pk]
    sweep()
    assert [m.to for m in mail.outbox] == [["cora@example.org"]]


# --- Retry ---------------------------------------------------------------------------------------
def test_an_smtp_error_is_retried_with_backoff_until_sent(
    personas, team_case, flaky, caplog, django_capture_on_commit_callbacks
):
    flaky.failures = 1
    with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
        services.break_glass(
            actor=personas.other_coordinator, case=team_case, justification="risk now"
        )
    rows = list(Notification.objects.filter(kind="break_glass").order_by("created_at"))
    assert len(mail.outbox) == 1  # the first try of one of the two failed
    failed = [r for r in rows if r.status == "pending"]
    assert len(failed) == 1 and failed[0].attempts == 1
    assert failed[0].last_error == "SMTPServerDisconnected"
    wait = failed[0].next_attempt_at - timezone.now()
    assert datetime.timedelta(seconds=20) < wait < datetime.timedelta(seconds=40)
    assert OLD_ADDRESS not in caplog.text and "cora@" not in caplog.text
    assert outbox.notifications_due() == []  # not yet: its retry is scheduled
    overdue(failed[0])
    flaky.failures = 1
    sweep_outbox()  # fails again: the wait doubles
    row = Notification.objects.get(pk=failed[0].pk)
    assert row.status == "pending" and row.attempts == 2
    wait = row.next_attempt_at - timezone.now()
    assert datetime.timedelta(seconds=50) < wait < datetime.timedelta(seconds=70)
    overdue(row)
    sweep_outbox()
    row.refresh_from_db()
    assert row.status == "sent" and row.attempts == 3 and row.last_error == ""
    assert sorted(m.to[0] for m in mail.outbox) == ["cleo@example.org", "cora@example.org"]


def test_a_row_past_its_lifetime_is_given_up_and_logged(personas, team_case, flaky, caplog):
    (pk,) = outbox.notification_queue(
        kind="break_glass",
        about=str(team_case.pk),
        actor=personas.other_coordinator,
        recipients=[personas.coordinator],
        send_now=True,
    )
    Notification.objects.filter(pk=pk).update(status="pending", sent_at=None)
    overdue(Notification(pk=pk))
    Notification.objects.filter(pk=pk).update(give_up_at=timezone.now())
    mail.outbox.clear()
    with caplog.at_level(logging.ERROR):
        deliver(pk)
    assert Notification.objects.get(pk=pk).status == "failed" and mail.outbox == []
    assert f"notification {pk} (break_glass) given up" in caplog.text


def test_nothing_is_sent_once_there_is_nothing_to_say(personas):
    newcomer = make_user("newcomer", Role.CASEWORKER, device=False, email="new@example.org")
    link = staff.enrolment_link_issue(actor=personas.administrator, user=newcomer)
    row = Notification.objects.get(kind="enrolment_link")
    type(link).objects.filter(pk=link.pk).update(used_at=timezone.now())
    deliver(str(row.pk))
    row.refresh_from_db()
    assert row.status == "skipped" and mail.outbox == []


# --- The old address: sealed, then shredded -----------------------------------------------------
def test_the_old_address_is_sealed_in_its_row_and_shredded_once_sent(
    personas, flaky, django_capture_on_commit_callbacks
):
    flaky.failures = 1
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            staff._tell_old_address(OLD_ADDRESS)
    row = Notification.objects.get(kind="old_address")
    assert OLD_ADDRESS.encode() not in bytes(row.address)  # sealed, not stored
    assert row.status == "pending" and DataKey.objects.filter(pk=row.data_key_id).exists()
    key_id = row.data_key_id
    overdue(row)
    sweep_outbox()
    row.refresh_from_db()
    assert row.status == "sent" and [m.to for m in mail.outbox] == [[OLD_ADDRESS]]
    assert "e-mail address" in mail.outbox[0].body
    assert row.address is None and row.data_key_id is None
    assert not DataKey.objects.filter(pk=key_id).exists()  # no way back to the address


def test_a_sealed_address_moved_to_another_row_fails(personas):
    from casework import vault

    with transaction.atomic():
        staff._tell_old_address(OLD_ADDRESS)
        staff._tell_old_address("someone.else@example.org")
    first, second = Notification.objects.filter(kind="old_address")
    with pytest.raises(vault.DecryptionError):
        outbox._unseal(Notification(pk=second.pk, address=first.address, data_key=second.data_key))


# --- Digests: once per person and day -----------------------------------------------------------
@pytest.fixture
def busy_caseworker(personas):
    from casework import queues

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
    return personas.caseworker


def test_two_runs_of_the_digest_send_one_email_per_person(busy_caseworker):
    send_daily_reminders()
    send_daily_reminders()
    assert [m.to for m in mail.outbox] == [["casey@example.org"]]
    row = Notification.objects.get(kind="digest_caseworker")
    assert row.key == f"digest_caseworker:{timezone.localdate().isoformat()}"


def test_the_digest_key_is_a_unique_constraint_not_a_check(busy_caseworker, monkeypatch):
    """Even with the job's lock out of the way (two runs at once), the second row of a
    key and person is refused by the database."""
    today = timezone.localdate()
    _queue_digest(busy_caseworker, today, "caseworker")
    _queue_digest(busy_caseworker, today, "caseworker")
    assert Notification.objects.filter(kind="digest_caseworker").count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Notification.objects.create(
            kind="digest_caseworker",
            recipient=busy_caseworker,
            key=f"digest_caseworker:{today.isoformat()}",
            give_up_at=timezone.now(),
        )


def test_a_redelivered_notice_of_the_old_task_queues_once(
    personas, team_case, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            notify.apply(
                args=["break_glass", str(team_case.pk), str(personas.other_coordinator.pk)],
                task_id="a-message-delivered-twice",
            )
    assert Notification.objects.filter(kind="break_glass").count() == 2  # two coordinators
    assert sorted(m.to[0] for m in mail.outbox) == ["cleo@example.org", "cora@example.org"]


# --- One run at a time, one beat at a time ----------------------------------------------------
def test_a_second_run_of_a_job_finds_it_held(db):
    with exclusive("some_job") as first:
        with exclusive("some_job") as second:
            assert first and not second
        with exclusive("another_job") as other:
            assert other
    with exclusive("some_job") as later:
        assert later


def test_a_second_beat_stands_by_until_the_first_is_gone(db, tmp_path, monkeypatch):
    from celery.beat import Scheduler

    from config.celery import app

    published = []
    monkeypatch.setattr(
        Scheduler, "apply_entry", lambda self, entry, producer=None: published.append(self)
    )
    first = OneBeatScheduler(app=app, schedule_filename=str(tmp_path / "first"), lazy=True)
    second = OneBeatScheduler(app=app, schedule_filename=str(tmp_path / "second"), lazy=True)
    entry = object()
    try:
        for _ in range(3):
            first.apply_entry(entry)
            second.apply_entry(entry)
        assert published == [first] * 3
        first.lock.release()  # the first beat's process ended
        second.apply_entry(entry)
        first.apply_entry(entry)
        assert published == [first] * 3 + [second]
    finally:
        first.lock.release()
        second.lock.release()


def test_the_beat_lock_is_one_holder_at_a_time(db):
    a, b = BeatLock(), BeatLock()
    try:
        assert a.held() and a.held() and not b.held()
        a.release()
        assert b.held() and not a.held()
    finally:
        a.release()
        b.release()
