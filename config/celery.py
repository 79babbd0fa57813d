"""The Celery app and its beat schedule (kept in code, as the design asks).

Tasks take UUIDs and codes only, return nothing, are idempotent and are enqueued
after commit (`delay_on_commit`). With no broker configured they run eagerly.
"""

import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("passage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "heartbeat": {
        "task": "casework.tasks.heartbeat",
        "schedule": 60.0,
    },
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
