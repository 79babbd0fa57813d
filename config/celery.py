"""The Celery app, its task defaults and its beat schedule (kept in code, as the design asks).

Tasks take UUIDs and codes only, return nothing, are idempotent and are enqueued after
commit through `casework.background.enqueue` (a broker that is down never fails the
request that enqueues; the sweeper catches up). With no broker configured they run eagerly.
"""

import os

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
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
    # The access log's Merkle tree and signed checkpoints (casework/transparency.py); a
    # run not started within 30 s is dropped: the next one does its work.
    "sequence-access-log": {
        "task": "casework.tasks.sequence_access_log",
        "schedule": 5.0,
        "options": {"expires": 30},
    },
    "sweep": {"task": "casework.tasks.sweep", "schedule": 5 * 60.0},
    # E-mails whose try is overdue (their message was lost): casework/outbox.py.
    "sweep-outbox": {"task": "casework.tasks.sweep_outbox", "schedule": 60.0},
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
    "forget-old-form-state": {
        "task": "casework.tasks.forget_old_form_state",
        "schedule": crontab(hour=3, minute=47),
    },
    "forget-old-login-failures": {
        "task": "casework.tasks.forget_old_login_failures",
        "schedule": crontab(hour=3, minute=41),
    },
}


@worker_init.connect
def _check_keyring(**kwargs):
    """A worker without a usable keyring, or with one that is not this database's,
    stops at start with the reason and exit status 1. (Celery logs an exception raised
    here and carries on, so the worker exits itself.) A worker that starts follows its
    key file and reports the ring it holds (casework/vault/registry.py)."""
    import logging

    from casework import vault
    from casework.vault import registry

    try:
        vault.keyring()
    except vault.KeyringError as exc:
        logging.getLogger("passage.keyring").critical("%s", exc)  # names keys, never data
        raise SystemExit(1) from None
    registry.start_reporter("worker")


@worker_process_init.connect
def _report_pool_process(**kwargs):
    """Each process of the prefork pool runs tasks with the keyring: it reports too."""
    from casework.vault import registry

    registry.start_reporter("worker")


@worker_ready.connect
def _first_heartbeat(**kwargs):
    """A worker that has just started is consuming: /healthz need not wait for beat's
    first tick to see it."""
    from casework.tasks import heartbeat

    heartbeat()


@worker_shutdown.connect
@worker_process_shutdown.connect
def _forget_process(**kwargs):
    """A worker (or pool process) that stops in order no longer holds a keyring."""
    from casework.vault import registry

    registry.forget()
