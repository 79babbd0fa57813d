"""Background steps of family requests. Tasks take ids only and are safe to repeat."""

from celery import shared_task
from django.utils import timezone

from casework.background import sweeper


@shared_task(acks_late=True)
def process_request(request_id: str) -> None:
    from . import services
    from .models import FamilyRequest

    request = FamilyRequest.objects.select_related("data_key").filter(pk=request_id).first()
    if request is not None:
        services.process(request)


@shared_task
def families_daily() -> None:
    """Release cooled-off disclosures; shred closed requests past retention, each with
    its access event (their blind indexes stay as tombstones for screening).

    Retention counts from when the family was shown "closed" (never earlier than the
    minimum after submission), so when a reference stops working says nothing about
    how the request ended either.

    One run at a time: two at once could each cancel (and log) the same disclosure."""
    from django.db.models import Q

    from casework.background import exclusive

    from . import limits, services
    from .models import Disclosure, FamilyRequest

    with exclusive("families_daily") as mine:
        if not mine:
            return  # another run (a second beat) is at it
        for disclosure in Disclosure.objects.filter(
            approved_at__isnull=False,
            released_at__isnull=True,
            cancelled_at__isnull=True,
            release_after__lte=timezone.now(),
        ).select_related("request__data_key", "request__case__data_key", "request__contact"):
            services.disclosure_release(disclosure=disclosure)
        cutoff = timezone.now() - limits.retention()
        due = FamilyRequest.objects.filter(
            Q(closed_at__lt=cutoff) | Q(closed_at__isnull=True),
            stage=FamilyRequest.Stage.CLOSED,
            created_at__lt=cutoff - limits.closed_no_earlier_than(),
            data_key__shredded_at__isnull=True,
        )
        for request in due.select_related("data_key", "case").order_by("closed_at")[:500]:
            services.request_shred(family_request=request)


@sweeper
def _sweep_requests() -> None:
    """Requests saved while the broker was down: screen and match them now."""
    from casework.background import overdue_since, send

    from .models import FamilyRequest

    stale = FamilyRequest.objects.filter(
        processed_at__isnull=True,
        created_at__lt=overdue_since(),
        data_key__shredded_at__isnull=True,
    )
    for request_id in stale.values_list("pk", flat=True)[:500]:
        send(process_request, str(request_id))
