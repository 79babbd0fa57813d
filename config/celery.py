"""The Celery app, its task defaults and its beat schedule (kept in code, as the design asks).

Tasks take UUIDs and codes only, return nothing, are idempotent and are enqueued after
commit through `casework.background.enqueue` (a broker that is down never fails the
request that enqueues; the sweeper catches up). With no broker configured they run eagerly.
"""

import os

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import worker_init
from django.db.utils import InterfaceError as DjangoInterfaceError
from django.db.utils import OperationalError as DjangoOperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class PassageTask(Task):
    """Acknowledged only when done (a killed worker's task runs again), retried with
    backoff on transient database and network errors."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (
        ConnectionError,
        TimeoutError,
        DjangoOperationalError,
        DjangoInterfaceError,
        BrokerOperationalError,
    )
    retry_backoff = True
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 8


app = Celery("passage", task_cls=PassageTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


app.conf.beat_schedule = {
    "heartbeat": {"task": "casework.tasks.heartbeat", "schedule": 60.0},
    "sweep": {"task": "casework.tasks.sweep", "schedule": 5 * 60.0},
    "clear-expired-sessions": {
        "task": "casework.tasks.clear_expired_sessions",
        "schedule": crontab(minute=17),
    },
    "daily-reminders": {
        "task": "casework.tasks.send_daily_reminders",
        "schedule": crontab(hour=6, minute=30),
    },
    "consent-daily": {
        "task": "contacts.tasks.consent_daily",
        "schedule": crontab(hour=6, minute=10),
    },
    "families-daily": {
        "task": "families.tasks.families_daily",
        "schedule": crontab(minute=5),  # hourly: releases follow the cooling-off closely
    },
    "shred-expired-cases": {
        "task": "casework.tasks.shred_expired_cases",
        "schedule": crontab(hour=2, minute=23),
    },
    "forget-old-login-failures": {
        "task": "casework.tasks.forget_old_login_failures",
        "schedule": crontab(hour=3, minute=41),
    },
}


@worker_init.connect
def _check_keyring(**kwargs):
    """A worker without a usable keyring stops at start, with the reason."""
    from casework import vault

    vault.keyring()
