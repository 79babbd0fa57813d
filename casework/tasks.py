"""Periodic housekeeping. Each task is idempotent, takes no personal data and returns nothing."""

from datetime import timedelta

from celery import shared_task
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

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
