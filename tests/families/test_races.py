"""Exactly one effect under races (issue 13, item 2).

Reproduced from outside: two coordinators handing over one request made two tasks;
a hand-over racing a "screened out" close left a live task on a request screened out
as a suspected hunter (4 of 4 trials); two approvals of one disclosure wrote two
`approved` events naming different people; a decline racing an approval ended
"approved after the decline" or in a deadlock (a 500); the same answer recorded twice
made two contacts, grants and disclosures; a consent sent twice made two permanent
ledger events.

Each race is played two ways: deterministically, by handing a service the object as an
earlier page read it (what the losing request holds when the winner commits first),
and, on PostgreSQL, with real threads released together.
"""

import threading

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from casework.models import AccessEvent, Role, Task
from contacts.models import ConsentEvent, Contact, NoticeText
from families import services
from families.models import Disclosure, FamilyRequest
from tests.base import login_verified, make_user
from tests.families.test_staff import consenting_case, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(personas):
    return consenting_case(personas.team, personas.coordinator, personas.caseworker)


@pytest.fixture
def flagged(case, personas):
    """A request in triage with a candidate case (flagged or not, closing it as
    "screened out" is the coordinator's call in these tests)."""
    fr, _secret = submit()
    assert fr.stage == FamilyRequest.Stage.TRIAGE
    return fr


@pytest.fixture
def second(personas):
    other = make_user("coordinator3", Role.COORDINATOR, first_name="Cleo")
    personas.team.coordinators.add(other)
    return other


def stale(fr):
    """The request as a page read it before the other request committed."""
    return FamilyRequest.objects.get(pk=fr.pk)


def live_tasks(fr):
    """Hand-over tasks (the only reunification tasks these tests make), not cancelled."""
    return Task.objects.filter(aim="reunification").exclude(status="cancelled")


# --- Deterministic: the loser holds an old copy ---------------------------------------------------------
def test_two_hand_overs_of_one_request_make_one_task(personas, case, flagged, second):
    seen_a, seen_b = stale(flagged), stale(flagged)
    services.triage_hand_over(actor=personas.coordinator, family_request=seen_a, case=case)
    with pytest.raises(Exception, match="left triage"):
        services.triage_hand_over(actor=second, family_request=seen_b, case=case)
    assert live_tasks(flagged).count() == 1


def test_a_hand_over_after_a_screened_out_close_makes_no_task(personas, case, flagged, second):
    seen = stale(flagged)
    services.triage_close(
        actor=second, family_request=stale(flagged), outcome=FamilyRequest.Outcome.SCREENED_OUT
    )
    with pytest.raises(Exception, match="left triage"):
        services.triage_hand_over(actor=personas.coordinator, family_request=seen, case=case)
    fr = FamilyRequest.objects.get(pk=flagged.pk)
    assert fr.outcome == FamilyRequest.Outcome.SCREENED_OUT and fr.task_id is None
    assert not live_tasks(flagged).exists()


def test_a_close_after_a_hand_over_is_refused_not_a_closed_request_with_a_task(
    personas, case, flagged, second
):
    seen = stale(flagged)
    services.triage_hand_over(actor=personas.coordinator, family_request=stale(flagged), case=case)
    with pytest.raises(Exception, match="left triage"):
        services.triage_close(
            actor=second, family_request=seen, outcome=FamilyRequest.Outcome.SCREENED_OUT
        )
    assert FamilyRequest.objects.get(pk=flagged.pk).stage == FamilyRequest.Stage.HANDED


def test_the_close_page_answers_a_request_handed_meanwhile_with_a_message(
    personas, case, flagged, second, monkeypatch
):
    # The view read "triage"; the service, under the lock, reads "handed": a message,
    # not a 500.
    client = login_verified(Client(), second)
    original = services.triage_close

    def hand_over_first(**kwargs):
        services.triage_hand_over(
            actor=personas.coordinator, family_request=stale(flagged), case=case
        )
        return original(**kwargs)

    monkeypatch.setattr(services, "triage_close", hand_over_first)
    response = client.post(
        reverse("family_close", args=[flagged.pk]), {"outcome": "no_match"}, follow=True
    )
    assert response.status_code == 200
    assert "left triage" in response.content.decode()
    assert FamilyRequest.objects.get(pk=flagged.pk).stage == FamilyRequest.Stage.HANDED


@pytest.fixture
def proposed(personas, case, flagged):
    services.triage_hand_over(actor=personas.coordinator, family_request=stale(flagged), case=case)
    services.record_answer(
        actor=personas.caseworker,
        family_request=stale(flagged),
        answer="share_contact",
        method="in_person",
        details="An e-mail address agreed with the person.",
    )
    return Disclosure.objects.get(request=flagged)


def test_two_approvals_of_one_disclosure_write_one_approval(personas, proposed, second):
    third = make_user("coordinator4", Role.COORDINATOR)
    personas.team.coordinators.add(third)
    seen_a, seen_b = (Disclosure.objects.get(pk=proposed.pk) for _ in range(2))
    services.disclosure_approve(actor=second, disclosure=seen_a)
    with pytest.raises(Exception, match="decided already"):
        services.disclosure_approve(actor=third, disclosure=seen_b)
    assert Disclosure.objects.get(pk=proposed.pk).approved_by == second
    (event,) = AccessEvent.objects.filter(action="family.disclosure.approved")
    assert event.actor == second  # the log and the row name the same person


def test_an_approval_after_a_decline_is_refused(personas, proposed, second, flagged):
    seen = Disclosure.objects.get(pk=proposed.pk)
    services.record_answer(
        actor=personas.caseworker,
        family_request=stale(flagged),
        answer="decline",
        method="in_person",
    )
    with pytest.raises(Exception, match="decided already|closed"):
        services.disclosure_approve(actor=second, disclosure=seen)
    disclosure = Disclosure.objects.get(pk=proposed.pk)
    assert disclosure.approved_at is None and disclosure.cancelled_at is not None


def test_a_decline_after_an_approval_cancels_it(personas, proposed, second, flagged):
    services.disclosure_approve(actor=second, disclosure=Disclosure.objects.get(pk=proposed.pk))
    services.record_answer(
        actor=personas.caseworker,
        family_request=stale(flagged),
        answer="decline",
        method="in_person",
    )
    disclosure = Disclosure.objects.get(pk=proposed.pk)
    assert disclosure.cancelled_at is not None and disclosure.released_at is None


def test_the_same_answer_twice_records_once(personas, proposed, flagged):
    contacts_before = Contact.objects.count()
    events_before = ConsentEvent.objects.count()
    with pytest.raises(Exception, match="recorded already"):
        services.record_answer(
            actor=personas.caseworker,
            family_request=stale(flagged),
            answer="share_contact",
            method="in_person",
            details="An e-mail address agreed with the person.",
        )
    assert Disclosure.objects.filter(request=flagged).count() == 1
    assert (Contact.objects.count(), ConsentEvent.objects.count()) == (
        contacts_before,
        events_before,
    )


def test_an_answer_page_sent_twice_records_once(personas, case, flagged):
    services.triage_hand_over(actor=personas.coordinator, family_request=stale(flagged), case=case)
    client = login_verified(Client(), personas.caseworker)
    page = client.get(reverse("family_request", args=[flagged.pk]))
    once = page.context["answer_form"]["once"].value()
    data = {"answer": "relay", "method": "in_person", "once": once}
    for purpose in ("relay", "share_contact", "meet"):
        data[f"notice_{purpose}"] = NoticeText.current(purpose, "en").pk
    url = reverse("family_answer", args=[flagged.pk])
    first = client.post(url, data, follow=True)
    again = client.post(url, data, follow=True)
    assert "recorded in the consent ledger" in first.content.decode()
    assert "saved already" in again.content.decode()
    assert ConsentEvent.objects.filter(purpose="relay", decision="granted").count() == 1


def test_a_consent_form_sent_twice_records_one_event(personas, case):
    client = login_verified(Client(), personas.caseworker)
    url = reverse("consent_record", args=[case.pk]) + "?purpose=processing&language=en"
    page = client.get(url)
    once = page.context["form"]["once"].value()
    notice = NoticeText.current("processing", "en")
    data = {
        "purpose": "processing",
        "language": "en",
        "decision": "granted",
        "method": "in_person",
        "notice": notice.pk,
        "once": once,
    }
    before = ConsentEvent.objects.count()
    first = client.post(url, data, follow=True)
    again = client.post(url, data, follow=True)
    assert "Consent recorded." in first.content.decode()
    assert "saved already" in again.content.decode()
    assert ConsentEvent.objects.count() == before + 1
    # A new page has a new token: a second, deliberate consent is recorded.
    fresh = client.get(url).context["form"]["once"].value()
    assert fresh != once
    client.post(url, data | {"once": fresh})
    assert ConsentEvent.objects.count() == before + 2


# --- Real threads on PostgreSQL: the locks decide ------------------------------------------------------
def race(*calls):
    """Run the calls at once (a barrier releases them together); their outcomes."""
    outcomes = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index, call):
        try:
            barrier.wait()
            call()
            outcomes[index] = "done"
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
            outcomes[index] = type(exc).__name__
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def need_server_database():
    if connection.vendor != "postgresql":
        pytest.skip("threads need a server database (CI runs this on PostgreSQL)")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("trial", range(4))
def test_hand_over_racing_a_screened_out_close_never_leaves_a_live_task(
    personas, case, flagged, second, trial
):
    need_server_database()
    outcomes = race(
        lambda: services.triage_hand_over(
            actor=personas.coordinator, family_request=stale(flagged), case=case
        ),
        lambda: services.triage_close(
            actor=second, family_request=stale(flagged), outcome=FamilyRequest.Outcome.SCREENED_OUT
        ),
    )
    assert sorted(outcomes) == ["ValidationError", "done"], outcomes
    fr = FamilyRequest.objects.get(pk=flagged.pk)
    if fr.outcome == FamilyRequest.Outcome.SCREENED_OUT:
        assert not live_tasks(fr).exists() and fr.task_id is None
    else:
        assert fr.stage == FamilyRequest.Stage.HANDED and live_tasks(fr).count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("trial", range(3))
def test_a_decline_racing_an_approval_never_deadlocks_nor_approves_after(
    personas, flagged, proposed, second, trial
):
    need_server_database()
    outcomes = race(
        lambda: services.disclosure_approve(
            actor=second, disclosure=Disclosure.objects.get(pk=proposed.pk)
        ),
        lambda: services.record_answer(
            actor=personas.caseworker,
            family_request=stale(flagged),
            answer="decline",
            method="in_person",
        ),
    )
    assert "OperationalError" not in outcomes and "InternalError" not in outcomes, outcomes
    disclosure = Disclosure.objects.get(pk=proposed.pk)
    assert FamilyRequest.objects.get(pk=flagged.pk).outcome == FamilyRequest.Outcome.DECLINED
    assert disclosure.cancelled_at is not None  # approved first or not: it never goes out
    if outcomes[0] != "done":
        assert disclosure.approved_at is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_approvals_at_once_write_one(personas, proposed, second):
    need_server_database()
    third = make_user("coordinator4", Role.COORDINATOR)
    personas.team.coordinators.add(third)
    outcomes = race(
        *[
            (
                lambda who=who: services.disclosure_approve(
                    actor=who, disclosure=Disclosure.objects.get(pk=proposed.pk)
                )
            )
            for who in (second, third)
        ]
    )
    assert sorted(outcomes) == ["ValidationError", "done"], outcomes
    (event,) = AccessEvent.objects.filter(action="family.disclosure.approved")
    assert event.actor == Disclosure.objects.get(pk=proposed.pk).approved_by
