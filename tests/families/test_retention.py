"""Nothing leaves the log: family requests shredded at the end of retention write their
access event, through a service, as cases do (issue 12, item 8)."""

import datetime

import pytest
from django.utils import timezone

from casework.models import AccessEvent, BlindIndexEntry
from families import services
from families.models import FamilyRequest
from families.tasks import families_daily
from tests.families.test_staff import submit

pytestmark = pytest.mark.django_db


def test_shredding_at_the_end_of_retention_writes_one_event_per_request(personas, settings):
    settings.PASSAGE_FAMILY_RETENTION_DAYS = 30
    old, _ = submit(["Old Request"])
    young, _ = submit(["Young Request"])
    for fr in (old, young):
        services.triage_close(actor=personas.coordinator, family_request=fr)
    long_ago = timezone.now() - datetime.timedelta(days=400)
    FamilyRequest.objects.filter(pk=old.pk).update(created_at=long_ago, closed_at=long_ago)

    families_daily()

    assert FamilyRequest.objects.get(pk=old.pk).is_shredded
    assert not FamilyRequest.objects.get(pk=young.pk).is_shredded
    events = AccessEvent.objects.filter(action="family.request.shredded")
    assert list(events.values_list("object_id", "detail")) == [
        (str(old.pk), {"reason": "retention"})
    ]
    assert BlindIndexEntry.objects.filter(row_id=old.pk).exists()  # tombstones stay
    families_daily()  # a re-run shreds nothing twice and logs nothing twice
    assert events.count() == 1


def test_the_shred_service_writes_its_event_in_the_same_transaction(personas):
    fr, _ = submit(["Some Body"])
    services.triage_close(actor=personas.coordinator, family_request=fr)
    services.request_shred(family_request=fr)
    assert FamilyRequest.objects.get(pk=fr.pk).is_shredded
    assert AccessEvent.objects.filter(
        action="family.request.shredded", object_id=str(fr.pk)
    ).exists()
    services.request_shred(family_request=fr)  # already shredded: nothing more
    assert AccessEvent.objects.filter(action="family.request.shredded").count() == 1
