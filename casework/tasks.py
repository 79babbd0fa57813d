"""Periodic housekeeping. Each task is idempotent, takes no personal data and returns nothing."""

from datetime import timedelta

from celery import shared_task
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

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


@shared_task(acks_late=True)
def notify(kind: str, object_id: str, actor_id: str = "", *codes: str) -> None:
    """E-mail the people who must know: a link, never a name.

    `object_id` is a case's id for case openings ("sealed_opened", "break_glass"), and
    for account notices (casework/staff.py) an account's, a team's or an enrolment
    link's; `codes` are what changed, as codes. A secret link is made here, from the
    database, so no token travels through the broker.
    """
    from django.core.mail import send_mass_mail

    if kind in ("sealed_opened", "break_glass"):
        messages = _case_messages(kind, object_id, actor_id)
    else:
        from casework import staff

        messages = staff.account_messages(kind, object_id, actor_id, codes)
    if messages:
        send_mass_mail([(s, b, None, to) for s, b, to in messages], fail_silently=False)


def _case_messages(kind: str, case_id: str, actor_id: str) -> list:
    """A sealed case's opening goes to its other named caseworkers; with none, to the
    team's coordinators and the auditors. Break-glass goes to the team's coordinators."""
    from django.conf import settings
    from django.template.loader import render_to_string
    from django.urls import reverse
    from django.utils import translation

    from casework import access
    from casework.models import Case, Role, User

    case = Case.objects.filter(pk=case_id).select_related("team").first()
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    if case is None or actor is None:
        return []
    base = settings.PASSAGE_BASE_URL.rstrip("/")
    case_url = base + reverse("case_detail", args=[case.pk])
    template, recipients = kind, []
    if kind == "sealed_opened":
        recipients = [(u, case_url) for u in access.case_workers(case).exclude(pk=actor.pk)]
        if not recipients:
            # Nobody else is named on it: the opening must not go unseen.
            template = "sealed_opened_unwatched"
            coordinators = case.team.coordinators.filter(
                is_active=True, groups__name=Role.COORDINATOR
            ).exclude(pk=actor.pk)
            auditors = User.objects.filter(is_active=True, groups__name=Role.AUDITOR)
            recipients = [(u, base + reverse("home")) for u in coordinators.distinct()]
            recipients += [(u, base + reverse("audit_unusual")) for u in auditors.distinct()]
    else:
        coordinators = case.team.coordinators.filter(is_active=True).exclude(pk=actor.pk)
        recipients = [(u, case_url) for u in coordinators]
    messages = []
    with translation.override(settings.LANGUAGE_CODE):
        for user, url in recipients:
            if not user.email:
                continue
            context = {
                "kind": kind,
                "reference": case.reference,
                "actor": actor.get_username(),
                "url": url,
            }
            subject = render_to_string(f"emails/{template}_subject.txt", context).strip()
            body = render_to_string(f"emails/{template}.txt", context)
            messages.append((subject, body, [user.email]))
    return messages


@shared_task
def shred_expired_cases() -> None:
    """Daily: crypto-shred closed cases whose retention date has passed (in batches)."""
    from casework import services
    from casework.background import daily_done
    from casework.models import Case, Stage

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
    a client. Safe to run twice: each person gets each digest once a day."""
    from casework.models import Role, User

    today = timezone.localdate()
    staff = User.objects.filter(is_active=True).exclude(email="")
    for user in staff.filter(groups__name=Role.CASEWORKER).distinct().iterator():
        _send_digest(user, today, "caseworker")
    for user in staff.filter(groups__name=Role.COORDINATOR).distinct().iterator():
        _send_digest(user, today, "coordinator")
    from casework.background import daily_done

    daily_done("send_daily_reminders")


def _send_digest(user, today, kind: str) -> None:
    from django.conf import settings
    from django.core.mail import send_mail
    from django.db import IntegrityError, transaction
    from django.template.loader import render_to_string
    from django.urls import reverse

    from casework import queues
    from casework.models import ReminderLog

    counts = (queues.caseworker_digest if kind == "caseworker" else queues.coordinator_digest)(
        user, today
    )
    if not any(v for k, v in counts.items() if k != "days"):
        return
    try:
        with transaction.atomic():
            log = ReminderLog.objects.create(user=user, day=today, kind=kind)
    except IntegrityError:
        log = ReminderLog.objects.get(user=user, day=today, kind=kind)
        if log.sent_at is not None:
            return  # sent already today
    base = settings.PASSAGE_BASE_URL.rstrip("/")
    context = {**counts, "url": base + reverse("my_queue" if kind == "caseworker" else "board")}
    send_mail(
        render_to_string(f"emails/digest_{kind}_subject.txt", context).strip(),
        render_to_string(f"emails/digest_{kind}.txt", context),
        None,
        [user.email],
    )
    ReminderLog.objects.filter(pk=log.pk).update(sent_at=timezone.now())


@shared_task
def sweep() -> None:
    """Every few minutes: enqueue again whatever should have run and has not (the broker
    was down, a beat tick was lost). All work is idempotent, so this is always safe."""
    from casework.background import SWEEPERS

    for func in SWEEPERS:
        func()


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
