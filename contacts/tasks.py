"""Daily consent upkeep: warn before consents expire, let expired ones lapse."""

import datetime

from celery import shared_task
from django.utils import timezone

from casework import outbox
from casework.background import sweeper


@shared_task(acks_late=True)
def consent_daily() -> None:
    """1. A grant past its expiry date gets a "lapsed" event (so the ledger shows it) and
       messages waiting on it are stopped.
    2. Each case's caseworkers hear how many consents expire within 30 days: a count
       and a link, no personal data.
    One run at a time (two at once would each write a "lapsed" event); a run after
    another is safe: lapsing looks at the latest event, and the warning is an outbox
    row keyed by day, so each person gets it once a day."""
    from casework import access
    from casework.background import daily_done, exclusive
    from casework.models import Case

    from . import services
    from .models import ConsentEvent

    with exclusive("consent_daily") as mine:
        if not mine:
            return  # another run (a second beat, the sweeper) is at it
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
    from casework import outbox

    if not user.email:
        return
    outbox.notification_queue(
        kind="consent_expiring",
        recipients=[user],
        key=f"consent_expiring:{today.isoformat()}",
        codes=[n],
        send_now=True,
    )


def _warning_message(row):
    from django.conf import settings
    from django.urls import reverse

    return (
        "Passage: consents expire soon",
        f"{row.codes[0]} consent(s) on your cases expire within 30 days. Renew them with the "
        f"person or let them lapse.\n\n"
        f"{settings.PASSAGE_BASE_URL.rstrip('/')}{reverse('case_list')}\n\n"
        "-- Passage (this message holds no personal details by design)\n",
    )


outbox.register("consent_expiring", render=_warning_message, lifetime=datetime.timedelta(hours=12))


@sweeper
def _sweep_consent() -> None:
    from casework.background import daily_due, send

    if daily_due("consent_daily", 6, 10):
        send(consent_daily)
