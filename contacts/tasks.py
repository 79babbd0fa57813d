"""Daily consent upkeep: warn before consents expire, let expired ones lapse."""

import datetime

from celery import shared_task
from django.utils import timezone

from casework.background import sweeper


@shared_task(acks_late=True)
def consent_daily() -> None:
    """1. A grant past its expiry date gets a "lapsed" event (so the ledger shows it) and
       messages waiting on it are stopped.
    2. Each case's caseworkers hear how many consents expire within 30 days: a count
       and a link, no personal data. Safe to run twice (lapsing is idempotent; the
       warning is sent once per person per day through the reminder log)."""
    from casework import access
    from casework.models import Case

    from . import services
    from .models import ConsentEvent

    today = timezone.localdate()
    soon = today + datetime.timedelta(days=30)
    cases = Case.objects.filter(
        pk__in=ConsentEvent.objects.filter(decision="granted", expires_on__isnull=False).values(
            "case_id"
        )
    ).select_related("data_key")
    expiring_by_user = {}
    for case in cases:
        if case.is_shredded:
            continue
        for event in _latest_per_key(case):
            if event.decision != ConsentEvent.Decision.GRANTED or event.expires_on is None:
                continue
            if event.expires_on < today:
                services.consent_lapse(case=case, event=event)
            elif event.expires_on <= soon:
                for user in access.case_workers(case):
                    expiring_by_user[user] = expiring_by_user.get(user, 0) + 1
    for user, n in expiring_by_user.items():
        _warn(user, n, today)
    from casework.background import daily_done

    daily_done("consent_daily")


def _latest_per_key(case):
    from .consent import timeline
    from .models import NAMED_PURPOSES

    seen = set()
    for event in timeline(case):
        key = (
            event.subject_id,
            event.purpose,
            event.counterpart_id if event.purpose in NAMED_PURPOSES else None,
        )
        if key not in seen:
            seen.add(key)
            yield event


def _warn(user, n, today):
    from django.conf import settings
    from django.core.mail import send_mail
    from django.db import IntegrityError, transaction
    from django.urls import reverse

    from casework.models import ReminderLog

    if not user.email:
        return
    try:
        with transaction.atomic():
            log = ReminderLog.objects.create(user=user, day=today, kind="consent")
    except IntegrityError:
        return
    send_mail(
        "Passage: consents expire soon",
        f"{n} consent(s) on your cases expire within 30 days. Renew them with the person "
        f"or let them lapse.\n\n{settings.PASSAGE_BASE_URL.rstrip('/')}{reverse('case_list')}\n\n"
        "-- Passage (this message holds no personal details by design)\n",
        None,
        [user.email],
    )
    ReminderLog.objects.filter(pk=log.pk).update(sent_at=timezone.now())


@sweeper
def _sweep_consent() -> None:
    from casework.background import daily_due, send

    if daily_due("consent_daily", 6, 10):
        send(consent_daily)
