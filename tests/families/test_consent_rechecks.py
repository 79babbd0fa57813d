"""Consent is checked at every moment something about the person is shown or sent, not
only when it is first released (issue 12, item 4; SECURITY.md case 34)."""

import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from casework.models import Role, Task, TaskAim
from contacts import services as contact_services
from contacts.consent import ConsentRequired
from contacts.models import ConsentEvent, Message, Thread
from families import services
from families.models import Disclosure, FamilyMessage, FamilyRequest
from tests.base import login_verified, make_user
from tests.families.test_staff import (
    SHARED,
    answer,
    family_status,
    hand_over,
    neutral,
    page_messages,
    refresh,
    submit,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(personas):
    from tests.families.test_staff import consenting_case

    return consenting_case(personas.team, personas.coordinator, personas.caseworker)


@pytest.fixture
def matched(case):
    fr, secret = submit()
    assert list(fr.candidates.values_list("case_id", flat=True)) == [case.pk]
    return fr, secret


def withdraw(personas, case, purpose, counterpart=None):
    event = ConsentEvent.objects.filter(
        case=case, purpose=purpose, subject__isnull=True, counterpart=counterpart
    ).latest("recorded_at", "id")
    contact_services.consent_withdraw(
        actor=personas.caseworker, case=case, event=event, method="in_person"
    )


# --- Hand-over -----------------------------------------------------------------------------
def test_hand_over_after_tracing_consent_was_withdrawn_is_refused(personas, case, matched):
    fr, secret = matched
    withdraw(personas, case, "tracing")
    with pytest.raises(ConsentRequired):
        services.triage_hand_over(actor=personas.coordinator, family_request=fr, case=case)
    client = login_verified(Client(), personas.coordinator)
    page = client.get(reverse("family_request", args=[fr.pk])).content.decode()
    assert "Hand to this case" not in page and "no longer" in page
    response = client.post(reverse("family_hand", args=[fr.pk]), {"case": case.pk}, follow=True)
    assert response.status_code == 200
    assert any("withdrawn" in m for m in page_messages(response)), page_messages(response)
    assert not Task.objects.filter(case=case, aim=TaskAim.REUNIFICATION).exists()
    assert refresh(fr).stage == FamilyRequest.Stage.TRIAGE and refresh(fr).case is None
    # The family sees what any other family sees.
    nobody, nobody_secret = submit(["Nobody Knownhere"])
    assert neutral(family_status(fr.reference, secret), fr.reference) == neutral(
        family_status(nobody.reference, nobody_secret), nobody.reference
    )


# --- The family's status page ---------------------------------------------------------------
def _released(personas, case, fr, kind, monkeypatch):
    """A disclosure of `kind` proposed, approved by a second person and released."""
    fr = hand_over(personas, fr, case)
    response = answer(login_verified(Client(), personas.caseworker), fr, kind, details=SHARED)
    assert any("recorded" in m for m in page_messages(response)), page_messages(response)
    disclosure = Disclosure.objects.get(request=fr)
    services.disclosure_approve(actor=personas.coordinator, disclosure=disclosure)
    disclosure.refresh_from_db()
    later = disclosure.release_after + datetime.timedelta(minutes=1)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    assert services.disclosure_release(disclosure=disclosure, actor=personas.coordinator)
    return refresh(fr)


@pytest.mark.parametrize("kind", ["share_contact", "meet"])
def test_released_details_vanish_from_the_status_page_once_consent_is_withdrawn(
    personas, case, matched, kind, monkeypatch
):
    fr, secret = matched
    fr = _released(personas, case, fr, kind, monkeypatch)
    page = family_status(fr.reference, secret)
    assert SHARED in page and "A reply is waiting." in page
    withdraw(personas, case, kind, counterpart=fr.contact)
    page = family_status(fr.reference, secret)
    assert SHARED not in page and "A reply is waiting." not in page
    assert Disclosure.objects.get(request=fr).released_at is not None  # history stays


def _relaying(personas, case, fr):
    fr = hand_over(personas, fr, case)
    answer(login_verified(Client(), personas.caseworker), fr, "relay")
    return refresh(fr)


def test_relayed_replies_vanish_from_the_status_page_once_relay_consent_is_withdrawn(
    personas, case, matched
):
    fr, secret = matched
    fr = _relaying(personas, case, fr)
    reply = contact_services.message_submit(
        actor=personas.caseworker,
        case=case,
        contact=fr.contact,
        direction="to_contact",
        body="I am safe, do not worry.",
    )
    contact_services.message_review(
        actor=personas.coordinator, case=case, message=reply, decision="approve"
    )
    contact_services.message_deliver(actor=personas.coordinator, case=case, message=reply)
    page = family_status(fr.reference, secret)
    assert "I am safe" in page and "A reply is waiting." in page
    withdraw(personas, case, "relay", counterpart=fr.contact)
    page = family_status(fr.reference, secret)
    assert "I am safe" not in page and "A reply is waiting." not in page


def test_a_follow_up_is_not_sent_on_once_relay_consent_is_withdrawn(personas, case, matched):
    fr, _secret = matched
    fr = _relaying(personas, case, fr)
    withdraw(personas, case, "relay", counterpart=fr.contact)
    services.family_follow_up(family_request=fr, body="Are you there?")
    thread = Thread.objects.get(case=case, contact=fr.contact)
    assert not Message.objects.filter(thread=thread).exists()
    assert [m.body for m in FamilyMessage.objects.filter(request=fr)] == ["Are you there?"]


def test_approval_and_release_still_check_consent(personas, case, matched):
    """The checks that existed stay: approving after a withdrawal is refused."""
    fr, _secret = matched
    fr = hand_over(personas, fr, case)
    answer(login_verified(Client(), personas.caseworker), fr, "share_contact", details=SHARED)
    fr = refresh(fr)
    withdraw(personas, case, "share_contact", counterpart=fr.contact)
    second = make_user("coordinator3", Role.COORDINATOR)
    personas.team.coordinators.add(second)
    with pytest.raises(ConsentRequired):
        services.disclosure_approve(actor=second, disclosure=Disclosure.objects.get(request=fr))
    assert Disclosure.objects.get(request=fr).approved_at is None
    assert timezone.now()  # the real clock: nothing above was simulated
