"""Periodic housekeeping. Each task is idempotent, takes no personal data and returns nothing."""

import datetime
from datetime import timedelta

from celery import shared_task
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from casework import outbox, staff  # noqa: F401  (staff declares the account notices)
from casework.background import sweeper

HEARTBEAT_KEY = "passage:worker-heartbeat"


@shared_task
def heartbeat() -> None:
    """Proves a worker is consuming: the time it last ran, in the shared cache."""
    cache.set(HEARTBEAT_KEY, timezone.now().isoformat(), timeout=60 * 60)


@shared_task
def clear_expired_sessions() -> None:
    call_command("clearsessions")


@shared_task
def forget_old_form_state() -> None:
    """Used one-time form tokens are needed only while a double submit can still come
    (a day is plenty; kept 30); a kept note nobody came back for goes after 30 days."""
    from casework.drafts import NoteDraft
    from casework.versions import FormToken

    cutoff = timezone.now() - timedelta(days=30)
    FormToken.objects.filter(used_at__lt=cutoff).delete()
    NoteDraft.objects.filter(created_at__lt=cutoff).delete()


@shared_task
def forget_old_login_failures() -> None:
    """Failed-login records (usernames and addresses) are kept 30 days, then dropped."""
    from axes.models import AccessAttempt, AccessFailureLog

    cutoff = timezone.now() - timedelta(days=30)
    AccessAttempt.objects.filter(attempt_time__lt=cutoff).delete()
    AccessFailureLog.objects.filter(attempt_time__lt=cutoff).delete()


@shared_task(acks_late=True)
def rotate_keys(job_id: str) -> None:
    """Re-wrap data keys under the active KEK, moving the Job's progress."""
    from casework import vault
    from casework.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status == Job.Status.DONE:
        return
    Job.objects.filter(pk=job_id).update(status=Job.Status.RUNNING, started_at=timezone.now())

    def progress(done, total):
        Job.objects.filter(pk=job_id).update(done=done, total=total)

    try:
        vault.rotate(progress=progress)
    except Exception:
        Job.objects.filter(pk=job_id).update(status=Job.Status.FAILED, finished_at=timezone.now())
        raise
    Job.objects.filter(pk=job_id).update(status=Job.Status.DONE, finished_at=timezone.now())


@shared_task(bind=True, acks_late=True)
def deliver(self, notification_id: str) -> None:
    """Send one outbox e-mail (casework/outbox.py). A failed try schedules the next; the
    outbox sweeper re-sends it if that message is lost."""
    from casework.background import send

    retry_in = outbox.notification_deliver(notification_id=notification_id)
    if retry_in is not None and not self.request.is_eager:
        send(deliver, notification_id, countdown=retry_in)


@shared_task(bind=True, acks_late=True)
def notify(self, kind: str, object_id: str, actor_id: str = "", *codes: str) -> None:
    """The notice task from before the outbox, kept for messages still queued during an
    upgrade: it queues the notice as outbox rows (keyed by the message's id, so a
    redelivery queues nothing more). New code calls `outbox.notification_queue` in the
    transaction of the event itself."""
    from casework.models import User

    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    outbox.notification_queue(
        kind=kind, about=object_id, actor=actor, codes=codes, key=f"notify:{self.request.id}"
    )


# --- Notices about a case: who is told, what they read --------------------------------------
def _case(case_id):
    from casework.models import Case

    return Case.objects.filter(pk=case_id).select_related("team").first()


def _break_glass_recipients(*, about, actor, codes):
    """Break-glass goes to the team's coordinators."""
    case = _case(about)
    if case is None:
        return []
    return case.team.coordinators.filter(is_active=True).exclude(pk=actor.pk if actor else None)


def _sealed_recipients(*, about, actor, codes):
    """A sealed case's opening goes to its other named caseworkers..."""
    from casework import access

    case = _case(about)
    if case is None:
        return []
    return access.case_workers(case).exclude(pk=actor.pk if actor else None)


def _unwatched_recipients(*, about, actor, codes):
    """...and with none, the opening must not go unseen: the team's coordinators and the
    auditors."""
    from casework.models import Role, User

    case = _case(about)
    if case is None:
        return []
    coordinators = case.team.coordinators.filter(
        is_active=True, groups__name=Role.COORDINATOR
    ).exclude(pk=actor.pk if actor else None)
    auditors = User.objects.filter(is_active=True, groups__name=Role.AUDITOR)
    return [*coordinators.distinct(), *auditors.distinct()]


def _case_message(row):
    """A link and the case's reference, never a name. Rendered when sent, from the ids."""
    from django.conf import settings
    from django.template.loader import render_to_string
    from django.urls import reverse

    from casework.models import Role

    case = _case(row.about)
    if case is None or row.actor is None:
        return None
    base = settings.PASSAGE_BASE_URL.rstrip("/")
    url = base + reverse("case_detail", args=[case.pk])
    if row.kind == "sealed_opened_unwatched":
        is_auditor = row.recipient is not None and row.recipient.has_role(Role.AUDITOR)
        url = base + reverse("audit_unusual" if is_auditor else "home")
    context = {
        "kind": "break_glass" if row.kind == "break_glass" else "sealed_opened",
        "reference": case.reference,
        "actor": row.actor.get_username(),
        "url": url,
    }
    subject = render_to_string(f"emails/{row.kind}_subject.txt", context).strip()
    return subject, render_to_string(f"emails/{row.kind}.txt", context)


outbox.register("break_glass", render=_case_message, recipients=_break_glass_recipients)
outbox.register(
    "sealed_opened",
    render=_case_message,
    recipients=_sealed_recipients,
    fallback="sealed_opened_unwatched",
)
outbox.register("sealed_opened_unwatched", render=_case_message, recipients=_unwatched_recipients)


@shared_task
def shred_expired_cases() -> None:
    """Daily: crypto-shred closed cases whose retention date has passed (in batches).
    One run at a time: two at once would each shred and log the same case."""
    from casework import services
    from casework.background import daily_done, exclusive
    from casework.models import Case, Stage

    with exclusive("shred_expired_cases") as mine:
        if not mine:
            return
        due = Case.objects.filter(
            stage=Stage.CLOSED,
            retention_until__lt=timezone.localdate(),
            data_key__shredded_at__isnull=True,
        ).select_related("data_key")
        for case in due[:500]:
            services.case_shred(case=case)
        daily_done("shred_expired_cases")


@shared_task(acks_late=True)
def send_daily_reminders() -> None:
    """Each morning: caseworkers hear what is due today and overdue; coordinators hear of
    overdue work per person and old unassigned tasks. Counts and a link, never a name of
    a client. Safe to run twice, at once or one after the other: each digest is an outbox
    row keyed by kind and day, so each person gets each digest once a day."""
    from casework.background import daily_done, exclusive
    from casework.models import Role, User

    with exclusive("send_daily_reminders") as mine:
        if not mine:
            return  # another run (a second beat, the sweeper) is at it
        today = timezone.localdate()
        people = User.objects.filter(is_active=True).exclude(email="")
        for user in people.filter(groups__name=Role.CASEWORKER).distinct().iterator():
            _queue_digest(user, today, "caseworker")
        for user in people.filter(groups__name=Role.COORDINATOR).distinct().iterator():
            _queue_digest(user, today, "coordinator")
        daily_done("send_daily_reminders")


def _digest_counts(user, day, kind: str) -> dict:
    from casework import queues

    digest = queues.caseworker_digest if kind == "caseworker" else queues.coordinator_digest
    return digest(user, day)


def _queue_digest(user, today, kind: str) -> None:
    counts = _digest_counts(user, today, kind)
    if not any(v for k, v in counts.items() if k != "days"):
        return
    outbox.notification_queue(
        kind=f"digest_{kind}",
        recipients=[user],
        key=f"digest_{kind}:{today.isoformat()}",
        codes=[today.isoformat()],
        send_now=True,
    )


def _digest_message(row):
    """The counts as they are when it is sent (work done since leaves nothing to say)."""
    from django.conf import settings
    from django.template.loader import render_to_string
    from django.urls import reverse

    kind = row.kind.removeprefix("digest_")
    counts = _digest_counts(row.recipient, datetime.date.fromisoformat(row.codes[0]), kind)
    if not any(v for k, v in counts.items() if k != "days"):
        return None
    base = settings.PASSAGE_BASE_URL.rstrip("/")
    context = {**counts, "url": base + reverse("my_queue" if kind == "caseworker" else "board")}
    return (
        render_to_string(f"emails/digest_{kind}_subject.txt", context).strip(),
        render_to_string(f"emails/digest_{kind}.txt", context),
    )


# A digest a day late would tell of the wrong day: it is given up by then.
for _kind in ("caseworker", "coordinator"):
    outbox.register(
        f"digest_{_kind}", render=_digest_message, lifetime=datetime.timedelta(hours=12)
    )


@shared_task
def sweep() -> None:
    """Every few minutes: enqueue again whatever should have run and has not (the broker
    was down, a beat tick was lost). All work is idempotent, so this is always safe."""
    from casework.background import SWEEPERS

    for func in SWEEPERS:
        func()


@shared_task
def sweep_outbox() -> None:
    """Every minute: e-mails whose try is overdue are handed to the worker again."""
    _sweep_outbox()


@sweeper
def _sweep_outbox() -> None:
    from casework.background import send

    for pk in outbox.notifications_due():
        send(deliver, pk)


@sweeper
def _sweep_casework() -> None:
    from casework.background import daily_due, overdue_since, send
    from casework.models import Job

    for job in Job.objects.filter(
        kind="rotate_keys", status=Job.Status.QUEUED, created_at__lt=overdue_since()
    )[:20]:
        send(rotate_keys, str(job.pk))
    if daily_due("send_daily_reminders", 6, 30):
        send(send_daily_reminders)
    if daily_due("shred_expired_cases", 2, 23):
        send(shred_expired_cases)


# --- The access log's sequencer (casework/transparency.py) -------------------------------------
@shared_task
def sequence_access_log() -> None:
    """Every few seconds: integrate the events written since into the access log's Merkle
    tree and append a signed checkpoint. One run at a time (a second beat's run returns);
    runs one after the other are safe anyway: the state row's lock orders them."""
    from django.conf import settings

    from casework import transparency
    from casework.background import exclusive

    with exclusive("sequence_access_log") as mine:
        if mine:
            transparency.sequence(every=settings.PASSAGE_CHECKPOINT_SECONDS)


def _checkpoint_message(row):
    """The checkpoint's size, root hash and time, and where to find it: nothing personal."""
    from django.conf import settings
    from django.template.loader import render_to_string
    from django.urls import reverse

    size, root, at = row.codes
    base = settings.PASSAGE_BASE_URL.rstrip("/")
    context = {
        "size": size,
        "root": root,
        "time": at,
        "url": f"{base}{reverse('audit_checkpoint')}?size={int(size)}",
    }
    return (
        render_to_string("audit/checkpoint_email_subject.txt", context).strip(),
        render_to_string("audit/checkpoint_email.txt", context),
    )


outbox.register(
    "audit_checkpoint", render=_checkpoint_message, lifetime=datetime.timedelta(hours=20)
)
