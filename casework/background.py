"""Putting work on the queue: after commit, and never at the cost of the request.

If the broker is down when a transaction commits, the request still succeeds (the data
is saved); the periodic sweeper finds the work whose background step has not run and
enqueues it again. Every task is idempotent, so a second enqueue does no harm.
"""

import logging

from django.db import transaction

logger = logging.getLogger("passage.background")


def enqueue(task, *args: str) -> None:
    """Send `task(*args)` once the current transaction commits (args: ids and codes)."""
    transaction.on_commit(lambda: send(task, *args))


def send(task, *args: str) -> bool:
    try:
        task.apply_async(
            args=args,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2},
        )
    except Exception as exc:  # the broker is down: the sweeper will catch up
        logger.warning(
            "enqueue failed for %s (%s); the sweeper will retry", task.name, type(exc).__name__
        )
        return False
    return True


# --- The sweeper: work whose background step has not run in time -----------------------------
SWEEPERS = []


def sweeper(func):
    """Register a function that re-enqueues overdue work of one kind (apps register
    theirs in their tasks module, which the worker imports)."""
    SWEEPERS.append(func)
    return func


def overdue_since():
    import datetime

    from django.conf import settings
    from django.utils import timezone

    return timezone.now() - datetime.timedelta(minutes=settings.PASSAGE_SWEEP_MINUTES)


def daily_done(name: str) -> None:
    """A daily job marks its run for today (the sweeper runs it if the mark is missing)."""
    from django.utils import timezone

    from .models import DailyRun

    DailyRun.objects.get_or_create(name=name, day=timezone.localdate())


def daily_due(name: str, hour: int, minute: int) -> bool:
    """Has today's run of a daily job been missed (its time plus the grace has passed)?"""
    import datetime

    from django.conf import settings
    from django.utils import timezone

    from .models import DailyRun

    now = timezone.localtime()
    due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if now < due + datetime.timedelta(minutes=settings.PASSAGE_SWEEP_MINUTES):
        return False
    return not DailyRun.objects.filter(name=name, day=now.date()).exists()
