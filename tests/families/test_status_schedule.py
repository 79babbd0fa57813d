"""What a family sees, and when it changes, never depends on whether anyone matched
(issue 12, item 5; SECURITY.md case 35).

The clock is simulated: `django.utils.timezone.now` is replaced by a clock the test
moves forward, and the staff work on each request at its own pace in between."""

import datetime
import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts import services as contact_services
from families import services
from families.models import FamilyRequest
from families.tasks import families_daily
from tests.base import login_verified, make_case
from tests.families.test_staff import answer, consenting_case, hand_over, neutral, refresh, submit

pytestmark = pytest.mark.django_db

HOUR, DAY = datetime.timedelta(hours=1), datetime.timedelta(days=1)
STATES = {
    "Received.": "received",
    "In progress.": "in_progress",
    "A reply is waiting.": "reply",
    "Closed.": "closed",
}


# Savepoint names, quoted values, numbers, NULL (a value Django writes inline, such as
# the case of an access event) and PostgreSQL's casts of values: what differs between
# two runs of one query.
SQL_VALUES = re.compile(r"\"s\d+_x\d+\"|(?:'[^']*'|\bNULL\b|\b\d+\b)(?:::\w+)?")


class Clock:
    def __init__(self, monkeypatch):
        self.start = self.now = timezone.now()
        monkeypatch.setattr("django.utils.timezone.now", lambda: self.now)

    def at(self, offset):
        self.now = self.start + offset


def seen(reference, secret, queries=None) -> tuple[str, str]:
    """(state, page) as the family sees them now, after a follow-up if the page offers
    one; "gone" once the request is deleted. The queries of the page and the follow-up
    (their SQL, without values) go to `queries`."""
    cache.clear()  # the status lookups' rate limit is not under test here
    family = Client()
    response = family.post(reverse("family_status"), {"reference": reference, "secret": secret})
    if response.status_code != 302:
        assert "could not find" in response.content.decode()
        return "gone", ""
    with CaptureQueriesContext(connection) as ctx:
        page = family.get(reverse("family_status")).content.decode()
        if "Send us a message" in page:  # and a follow-up, while the page offers one
            answer = family.post(reverse("family_follow_up"), {"body": "Any news?"}, follow=True)
            page += "".join(str(m) for m in answer.context["messages"])
    if queries is not None:
        queries.extend(SQL_VALUES.sub("?", q["sql"]) for q in ctx.captured_queries)
    states = [code for text, code in STATES.items() if text in page]
    assert len(states) == 1, states
    return states[0], neutral(page, reference)


@pytest.fixture
def four_requests(personas):
    """The four kinds of request, each with what the staff will do with it and when."""
    c = personas.coordinator
    consenting = consenting_case(personas.team, c, personas.caseworker, name="Sara Karimi")
    make_case(personas.team, actor=c, name="Leila Tehrani")  # no family-tracing consent
    feared = make_case(personas.team, actor=c, name="Someone Else")
    contact_services.do_not_disclose_add(
        actor=c, case=feared, data={"name": "Omid Ghorbani", "phone": "", "email": "", "note": ""}
    )

    declined, declined_secret = submit(["Sara Karimi"], requester_name="Parvin Karimi")
    assert declined.candidates.get().case == consenting
    silent, silent_secret = submit(["Leila Tehrani"], requester_name="Hamid Tehrani")
    assert not silent.candidates.exists()
    hunter, hunter_secret = submit(["Nasrin Azadi"], requester_name="Omid Ghorbani")
    assert hunter.flags.filter(kind="requester_on_dnd").exists()
    nobody, nobody_secret = submit(["Nobody Atall"], requester_name="Ali Nobody")
    assert not nobody.candidates.exists() and not nobody.flags.exists()

    def fresh(fr):
        return FamilyRequest.objects.select_related("data_key").get(pk=fr.pk)

    def hand(fr=declined):
        services.triage_hand_over(actor=c, family_request=fresh(fr), case=consenting)

    def decline(fr=declined):
        services.record_answer(
            actor=personas.caseworker,
            family_request=fresh(fr),
            answer="decline",
            method="in_person",
        )

    def close(fr, outcome="no_match"):
        return lambda: services.triage_close(actor=c, family_request=fresh(fr), outcome=outcome)

    work = [
        (10 * datetime.timedelta(minutes=1), close(nobody)),
        (1 * DAY, hand),
        (2 * DAY, close(silent)),
        (5 * DAY, close(hunter, "screened_out")),
        (20 * DAY, decline),
    ]
    requests = {
        "consenting match, declined": (declined, declined_secret),
        "non-consenting match": (silent, silent_secret),
        "do-not-disclose hit": (hunter, hunter_secret),
        "no match": (nobody, nobody_secret),
    }
    return requests, work


def test_every_request_shows_the_same_states_at_the_same_times(
    personas, four_requests, monkeypatch, settings
):
    settings.PASSAGE_FAMILY_RECEIVED_HOURS = 72
    settings.PASSAGE_FAMILY_CLOSED_AFTER_DAYS = 90
    settings.PASSAGE_FAMILY_RETENTION_DAYS = 365
    requests, work = four_requests
    clock = Clock(monkeypatch)
    moments = [
        datetime.timedelta(0),
        15 * datetime.timedelta(minutes=1),
        HOUR,
        DAY + HOUR,
        2 * DAY + HOUR,
        71 * HOUR,
        73 * HOUR,
        5 * DAY + HOUR,
        20 * DAY + HOUR,
        89 * DAY,
        91 * DAY,
        (90 + 364) * DAY,
        (90 + 366) * DAY,
    ]
    timelines = {label: [] for label in requests}
    for moment in moments:
        clock.at(moment)
        while work and work[0][0] <= moment:
            work.pop(0)[1]()
        families_daily()  # the daily job: releases, and shredding at the end of retention
        pages, queries = {}, {}
        for label, (fr, secret) in requests.items():
            queries[label] = []
            state, page = seen(fr.reference, secret, queries[label])
            timelines[label].append(state)
            pages[label] = page
        assert len(set(pages.values())) == 1, (moment, {k: t[-1] for k, t in timelines.items()})
        # The same queries too, so the page's timing tells nothing either.
        assert len({tuple(q) for q in queries.values()}) == 1, moment
    assert not work  # the staff did everything they meant to, in between
    expected = ["received"] * 6 + ["in_progress"] * 4 + ["closed"] * 2 + ["gone"]
    for label, timeline in timelines.items():
        assert timeline == expected, label
    outcomes = set(FamilyRequest.objects.values_list("outcome", flat=True))
    assert outcomes == {"declined", "no_match", "screened_out"}


def test_a_reply_shows_as_soon_as_it_is_delivered_and_not_before(personas, monkeypatch):
    case = consenting_case(personas.team, personas.coordinator, personas.caseworker)
    fr, secret = submit()
    clock = Clock(monkeypatch)
    clock.at(HOUR)
    fr = hand_over(personas, fr, case)
    answer(login_verified(Client(), personas.caseworker), fr, "relay")
    fr = refresh(fr)
    reply = contact_services.message_submit(
        actor=personas.caseworker,
        case=case,
        contact=fr.contact,
        direction="to_contact",
        body="Hello from me.",
    )
    assert seen(fr.reference, secret)[0] == "received"  # a relay alone changes nothing
    contact_services.message_review(
        actor=personas.coordinator, case=case, message=reply, decision="approve"
    )
    assert seen(fr.reference, secret)[0] == "received"  # approved is not delivered
    contact_services.message_deliver(actor=personas.coordinator, case=case, message=reply)
    state, page = seen(fr.reference, secret)
    assert state == "reply" and "Hello from me." in page


def test_a_closed_request_still_takes_follow_ups_until_it_shows_closed(personas, monkeypatch):
    """A follow-up to a request closed early gets the answer every open request gets."""
    fr, secret = submit(["Nobody Atall"])
    services.triage_close(actor=personas.coordinator, family_request=fr)
    family = Client()
    family.post(reverse("family_status"), {"reference": fr.reference, "secret": secret})
    response = family.post(reverse("family_follow_up"), {"body": "Any news?"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Your message was received. We pass it on only if they agree."
    ]
    assert [m.body for m in FamilyRequest.objects.get(pk=fr.pk).followups.all()] == ["Any news?"]
