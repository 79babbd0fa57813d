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
