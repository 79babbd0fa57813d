"""The staff side of family requests: triage, the request page, the person's answer and
the second-person release of shared details."""

import datetime
import re

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from casework import services as case_services
from casework.models import AccessEvent, Role, Task, TaskAim, Team
from contacts import services as contact_services
from contacts.models import ConsentEvent, Contact, Message, NoticeText, Thread
from families import limits, services, staff_urls
from families.models import Disclosure, FamilyMessage, FamilyRequest, ScreeningFlag
from tests.base import grant, login_verified, make_case, make_team, make_user

pytestmark = pytest.mark.django_db

CANARY_NAME = "Quetzalcoatl Vandersnoot"
CANARY_CITY = "Xylotown-Canary"
CANARY_ADDRESS = "17 Hiddenlane Canary"
CANARY_WHEREABOUTS_PHONE = "+47 555 01 999"
REQUESTER_EMAIL = "seeker-canary@example.net"
REQUESTER_PHONE = "+98 21 5550 1234"
SHARED = "Her new e-mail, agreed with her: hello-canary@example.org"


def submit(names=(CANARY_NAME,), *, process=True, **data):
    """A request as the public form saves it, screened and matched at once (tests run in
    a transaction, so the after-commit task does not fire)."""
    fields = {
        "requester_name": "Reza Tehrani",
        "relationship": "brother",
        "requester_country": "Iran",
        "requester_email": REQUESTER_EMAIL,
        "requester_phone": REQUESTER_PHONE,
        "sought_names": list(names),
        "sought_birth_year": 1990,
        "last_place": "Qom",
        "last_year": 2010,
        "other_details": "Has a scar on the left hand.",
        "message": "We miss you. Mother is ill.",
    }
    fr, secret = services.request_submit(data=fields | data, language="en", notice_sha256="x" * 64)
    if process:
        services.process(fr)
    return FamilyRequest.objects.select_related("data_key").get(pk=fr.pk), secret


def consenting_case(team, actor, worker=None, name=CANARY_NAME, **person):
    """A case whose person agreed to family tracing, with whereabouts on record."""
    case = make_case(team, actor=actor, name=name, birth_year=1990, **person)
    if worker is not None:
        grant(case, worker, "work")
        grant(case, worker, "whereabouts")
    contact_services.consent_record(
        actor=actor,
        case=case,
        purpose="tracing",
        decision="granted",
        method="in_person",
        notice=NoticeText.current("tracing", "en"),
    )
    case_services.whereabouts_save(
        actor=worker or actor,
        case=case,
        data={
            "country": "Norway",
            "city": CANARY_CITY,
            "address": CANARY_ADDRESS,
            "phone": CANARY_WHEREABOUTS_PHONE,
            "email": "",
            "safe_contact": "",
            "code_word": "",
        },
    )
    return case


@pytest.fixture
def case(personas):
    return consenting_case(personas.team, personas.coordinator, personas.caseworker)


@pytest.fixture
def matched(case):
    fr, secret = submit()
    assert fr.stage == FamilyRequest.Stage.TRIAGE
    assert list(fr.candidates.values_list("case_id", flat=True)) == [case.pk]
    return fr, secret


def refresh(fr):
    return FamilyRequest.objects.select_related("data_key").get(pk=fr.pk)


def hand_over(personas, fr, case):
    client = login_verified(Client(), personas.coordinator)
    response = client.post(reverse("family_hand", args=[fr.pk]), {"case": case.pk})
    assert response.status_code == 302
    fr = refresh(fr)
    assert fr.stage == FamilyRequest.Stage.HANDED
    return fr


def answer(client, fr, answer, method="in_person", **extra):
    """POST the answer form with the notices the page showed."""
    data = {"answer": answer, "method": method, **extra}
    for purpose in ("relay", "share_contact", "meet"):
        data[f"notice_{purpose}"] = NoticeText.current(purpose, fr.language).pk
    return client.post(reverse("family_answer", args=[fr.pk]), data, follow=True)


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def family_status(reference, secret) -> str:
    """What the family sees, through the public status page."""
    family = Client()
    response = family.post(reverse("family_status"), {"reference": reference, "secret": secret})
    assert response.status_code == 302, response.content.decode()[:500]
    return family.get(reverse("family_status")).content.decode()


def neutral(html, reference) -> str:
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    html = re.sub(r'nonce="[^"]*"', "", html)
    return html.replace(reference, "FR-XXXX-XXXX")


# --- Triage -------------------------------------------------------------------------------------
def test_triage_shows_each_coordinator_only_their_requests(personas, matched):
    fr, _secret = matched
    unmatched, _ = submit(["Nobody Knownhere"])
    pending, _ = submit(["Someone Else"], process=False)
    other_case = consenting_case(
        personas.other_team,
        personas.other_coordinator,
        personas.other_caseworker,
        name="Bahar Noor",
    )
    elsewhere, _ = submit(["Bahar Noor"])
    assert elsewhere.candidates.get().case == other_case

    html = login_verified(Client(), personas.coordinator).get(reverse("family_triage"))
    assert html.status_code == 200
    html = html.content.decode()
    assert fr.reference in html and unmatched.reference in html and pending.reference in html
    assert elsewhere.reference not in html
    assert "screening pending" in html
    # Oldest first.
    assert (
        html.index(fr.reference) < html.index(unmatched.reference) < html.index(pending.reference)
    )
    assert CANARY_NAME not in html and CANARY_CITY not in html and REQUESTER_EMAIL not in html

    # Team B does not triage family requests: it sees only the one that matched its case.
    html = login_verified(Client(), personas.other_coordinator).get(reverse("family_triage"))
    html = html.content.decode()
    assert elsewhere.reference in html
    assert unmatched.reference not in html and pending.reference not in html
    assert fr.reference not in html


def test_a_coordinator_of_an_empty_team_opens_no_unmatched_request(personas):
    """Need-to-know: unmatched requests (the requester's name, phone and e-mail, the
    names sought) are for the coordinators of the teams designated for family triage."""
    lonely = make_user("lonely", Role.COORDINATOR)
    make_team("Empty team", coordinators=[lonely])
    unmatched, _ = submit(["Nobody Knownhere"])
    client = login_verified(Client(), lonely)
    assert REQUESTER_EMAIL not in client.get(reverse("family_triage")).content.decode()
    assert client.get(reverse("family_request", args=[unmatched.pk])).status_code == 404
    assert client.post(reverse("family_close", args=[unmatched.pk])).status_code == 404
    # Designating the team for triage opens it, at once.
    Team.objects.filter(name="Empty team").update(family_triage=True)
    assert client.get(reverse("family_request", args=[unmatched.pk])).status_code == 200


def test_triage_is_for_coordinators_only(personas, matched):
    for user in (
        personas.caseworker,
        personas.other_caseworker,
        personas.auditor,
        personas.administrator,
        personas.superuser,
    ):
        response = login_verified(Client(), user).get(reverse("family_triage"))
        assert response.status_code == 403, user.username
    assert Client().get(reverse("family_triage")).status_code == 302  # to the login page


def test_triage_leaves_out_handed_and_closed_requests(personas, case, matched):
    fr, _ = matched
    hand_over(personas, fr, case)
    closed, _ = submit(["Nobody Knownhere"])
    services.triage_close(actor=personas.coordinator, family_request=closed)
    html = login_verified(Client(), personas.coordinator).get(reverse("family_triage"))
    html = html.content.decode()
    assert fr.reference not in html and closed.reference not in html


def test_triage_flags_requester_on_a_do_not_disclose_list_as_the_strongest_warning(personas, case):
    contact_services.do_not_disclose_add(
        actor=personas.caseworker,
        case=case,
        data={"name": "Elder Hunter", "phone": "", "email": "", "note": ""},
    )
    hunter, _ = submit(requester_name="Elder Hunter", requester_email="", requester_phone="")
    sister, _ = submit(requester_name="Sara Tehrani", requester_email="", requester_phone="")
    assert hunter.flags.get().kind == ScreeningFlag.Kind.REQUESTER_ON_DND
    assert sister.flags.get().kind == ScreeningFlag.Kind.SOUGHT_REPEATEDLY
    html = login_verified(Client(), personas.coordinator).get(reverse("family_triage"))
    rows = html.content.decode().split("<tr>")
    hunter_row = next(r for r in rows if hunter.reference in r)
    sister_row = next(r for r in rows if sister.reference in r)
    assert "text-bg-danger" in hunter_row and "do-not-disclose" in hunter_row
    assert "text-bg-danger" not in sister_row and "several requesters" in sister_row
    assert "Elder Hunter" not in html.content.decode()


def test_triage_queries_stay_flat(personas, case):
    client = login_verified(Client(), personas.coordinator)
    client.get(reverse("family_triage"))  # warm caches (content types, roles) once
    counts = []
    for n in (3, 12):
        while FamilyRequest.objects.count() < n:
            i = FamilyRequest.objects.count()
            # A mix: matched (and flagged as sought repeatedly), unmatched, pending.
            names = [CANARY_NAME] if i % 3 == 0 else [f"Person Number{i}"]
            submit(names, process=i % 3 != 2, requester_name=f"Requester {i}")
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("family_triage"))
        assert response.status_code == 200
        assert response.content.decode().count('<th scope="row">') == n
        counts.append(len(ctx.captured_queries))
    # session, user, second-factor device, roles, count, the page of requests with
    # their data keys, their flags, their candidates, plus the access event's
    # savepoint/last/insert/release: none per row.
    assert counts[0] == counts[1], counts


# --- The request page ---------------------------------------------------------------------------
def test_request_page_shows_the_request_never_whereabouts_or_requester_contact(
    personas, case, matched
):
    fr, _ = matched
    FamilyMessage(request=fr, body="Please, just one word.").save()
    client = login_verified(Client(), personas.coordinator)
    response = client.get(reverse("family_request", args=[fr.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    for shown in (
        fr.reference,
        "Reza Tehrani",
        "brother",
        "Iran",
        "Qom",
        "Has a scar",
        "We miss you",
        "Please, just one word.",
        case.reference,
        CANARY_NAME,
        "1990",
        "Hand to this case",
        "No match — close",
    ):
        assert shown in html, shown
    for hidden in (
        CANARY_CITY,
        CANARY_ADDRESS,
        CANARY_WHEREABOUTS_PHONE,
        "Norway",
        REQUESTER_EMAIL,
        REQUESTER_PHONE,
    ):
        assert hidden not in html, hidden
    assert "style=" not in html
    event = AccessEvent.objects.filter(action="family.request.viewed").get()
    assert event.object_id == str(fr.pk) and event.actor == personas.coordinator
    assert "Reza" not in str(event.detail)


def test_request_page_shows_only_the_team_of_a_candidate_case_one_cannot_see(personas, case):
    other = consenting_case(
        personas.other_team, personas.other_coordinator, personas.other_caseworker
    )
    fr, _ = submit()
    assert fr.candidates.count() == 2
    html = login_verified(Client(), personas.coordinator).get(
        reverse("family_request", args=[fr.pk])
    )
    html = html.content.decode()
    assert case.reference in html
    assert other.reference not in html and "a case in Team B" in html
    assert html.count("Hand to this case") == 1


def test_hand_over_creates_a_task_for_the_caseworker_and_moves_the_stage(personas, case, matched):
    fr, _ = matched
    fr = hand_over(personas, fr, case)
    task = Task.objects.get(case=case, aim=TaskAim.REUNIFICATION)
    assert fr.case == case and fr.task == task
    assert task.assignee == personas.caseworker
    assert fr.reference in task.title
    assert AccessEvent.objects.filter(action="family.request.triaged", case=case).exists()
    # The caseworker now reaches the request and may record the answer.
    html = login_verified(Client(), personas.caseworker).get(
        reverse("family_request", args=[fr.pk])
    )
    assert html.status_code == 200
    html = html.content.decode()
    assert "Record the person" in html and CANARY_CITY not in html
    assert REQUESTER_EMAIL not in html and REQUESTER_PHONE not in html


def test_hand_over_refuses_other_cases_and_a_second_time(personas, case, matched):
    fr, _ = matched
    stranger = make_case(personas.team, actor=personas.coordinator, name="Not A Candidate")
    client = login_verified(Client(), personas.coordinator)
    url = reverse("family_hand", args=[fr.pk])
    for value in (stranger.pk, "not-a-uuid", ""):
        response = client.post(url, {"case": value}, follow=True)
        assert response.status_code == 200
        assert any("candidate" in m for m in page_messages(response))
    assert refresh(fr).stage == FamilyRequest.Stage.TRIAGE
    hand_over(personas, fr, case)
    response = client.post(url, {"case": case.pk}, follow=True)
    assert any("not waiting for triage" in m for m in page_messages(response))
    assert Task.objects.filter(case=case, aim=TaskAim.REUNIFICATION).count() == 1


def test_caseworker_cannot_triage(personas, case, matched):
    fr, _ = matched
    fr = hand_over(personas, fr, case)
    client = login_verified(Client(), personas.caseworker)
    assert client.post(reverse("family_close", args=[fr.pk])).status_code == 403
    assert client.post(reverse("family_hand", args=[fr.pk]), {"case": case.pk}).status_code == 403


def test_screened_out_is_offered_only_for_flagged_requests(personas, matched):
    fr, _ = matched
    client = login_verified(Client(), personas.coordinator)
    assert (
        "screened_out" not in client.get(reverse("family_request", args=[fr.pk])).content.decode()
    )
    response = client.post(
        reverse("family_close", args=[fr.pk]), {"outcome": "screened_out"}, follow=True
    )
    assert any("outcomes offered" in m for m in page_messages(response))
    assert refresh(fr).stage == FamilyRequest.Stage.TRIAGE
    response = client.post(reverse("family_close", args=[fr.pk]), {"outcome": "no_match"})
    assert response.status_code == 302 and response["Location"] == reverse("family_triage")
    fr = refresh(fr)
    assert (fr.stage, fr.outcome) == ("closed", "no_match")


# --- The person's answer -------------------------------------------------------------------------
def test_decline_closes_and_reads_to_the_family_exactly_like_no_match(
    personas, case, matched, monkeypatch
):
    fr, secret = matched
    fr = hand_over(personas, fr, case)
    response = answer(login_verified(Client(), personas.caseworker), fr, "decline")
    assert response.status_code == 200
    fr = refresh(fr)
    assert (fr.stage, fr.outcome) == (FamilyRequest.Stage.CLOSED, FamilyRequest.Outcome.DECLINED)
    event = ConsentEvent.objects.filter(case=case, purpose="relay").get()
    assert event.decision == "declined" and event.counterpart == fr.contact
    declined_page = family_status(fr.reference, secret)

    nomatch, nomatch_secret = submit(["Nobody Knownhere"])
    login_verified(Client(), personas.coordinator).post(
        reverse("family_close", args=[nomatch.pk]), {"outcome": "no_match"}
    )
    nomatch_page = family_status(nomatch.reference, nomatch_secret)
    assert "Received." in declined_page  # both closed, neither shown closed yet
    assert neutral(declined_page, fr.reference) == neutral(nomatch_page, nomatch.reference)
    # Past the minimum time before "closed", both read closed, alike.
    later = timezone.now() + limits.closed_no_earlier_than() + datetime.timedelta(days=1)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    declined_page = family_status(fr.reference, secret)
    nomatch_page = family_status(nomatch.reference, nomatch_secret)
    assert "Closed." in declined_page
    assert neutral(declined_page, fr.reference) == neutral(nomatch_page, nomatch.reference)
    assert "declined" not in declined_page.lower()


def test_relay_opens_a_thread_and_family_follow_ups_wait_for_review(personas, case, matched):
    fr, secret = matched
    services.family_follow_up(family_request=fr, body="Before the answer.")
    fr = hand_over(personas, fr, case)
    client = login_verified(Client(), personas.caseworker)
    response = answer(client, fr, "relay")
    assert any("recorded" in m for m in page_messages(response))
    fr = refresh(fr)
    assert fr.stage == FamilyRequest.Stage.RELAY
    contact = Contact.objects.get(pk=fr.contact_id)
    contact.case = case
    assert contact.case_id == case.pk and contact.name == "Reza Tehrani"
    thread = Thread.objects.get(case=case, contact=contact)
    html = response.content.decode()
    assert reverse("thread", args=[case.pk, contact.pk]) in html
    assert CANARY_CITY not in html and REQUESTER_EMAIL not in html

    services.family_follow_up(family_request=fr, body="After the answer.")
    pending = Message.objects.filter(thread=thread, status=Message.Status.PENDING)
    assert pending.count() == 2
    assert {m.body for m in pending.select_related("thread__case__data_key")} == {
        "Before the answer.",
        "After the answer.",
    }
    assert all(m.direction == Message.Direction.FROM_CONTACT for m in pending)
    assert "Received." in family_status(fr.reference, secret)  # as for every new request


def test_answer_errors_show_as_messages_and_change_nothing(personas, case, matched):
    fr, _ = matched
    fr = hand_over(personas, fr, case)
    client = login_verified(Client(), personas.caseworker)
    cases = [
        ({"answer": "relay", "method": "verbal"}, "witness"),
        ({"answer": "share_contact"}, "what exactly will be shared"),
        ({"answer": "nonsense"}, "valid choice"),
        ({"answer": "relay", "method": "signed_paper"}, "valid choice"),
    ]
    for data, expected in cases:
        response = answer(client, fr, **data)
        assert response.status_code == 200, data
        assert any(expected in m for m in page_messages(response)), (data, page_messages(response))
    # A notice that changed after the page was shown is refused too.
    response = client.post(
        reverse("family_answer", args=[fr.pk]),
        {"answer": "relay", "method": "in_person", "notice_relay": "0"},
        follow=True,
    )
    assert any("notice text changed" in m for m in page_messages(response))
    assert refresh(fr).stage == FamilyRequest.Stage.HANDED
    assert not Contact.objects.filter(case=case).exists()
    assert not ConsentEvent.objects.filter(case=case, purpose="relay").exists()


def test_verbal_answer_with_a_witness_of_the_team(personas, case, matched):
    fr, _ = matched
    fr = hand_over(personas, fr, case)
    client = login_verified(Client(), personas.caseworker)
    form = client.get(reverse("family_request", args=[fr.pk])).context["answer_form"]
    witnesses = set(form.fields["witness"].queryset)
    assert personas.coordinator in witnesses
    assert personas.caseworker not in witnesses and personas.other_coordinator not in witnesses
    answer(client, fr, "relay", method="verbal", witness=personas.coordinator.pk)
    event = ConsentEvent.objects.filter(case=case, purpose="relay").get()
    assert event.witness == personas.coordinator and event.method == "verbal"


def _propose_share(personas, case, fr, actor):
    fr = hand_over(personas, fr, case)
    response = answer(login_verified(Client(), actor), fr, "share_contact", details=SHARED)
    assert any("recorded" in m for m in page_messages(response)), page_messages(response)
    return refresh(fr), Disclosure.objects.get(request=fr)


def test_share_contact_needs_a_second_coordinator_and_the_cooling_off(
    personas, case, matched, monkeypatch
):
    fr, secret = matched
    fr, disclosure = _propose_share(personas, case, fr, personas.coordinator)
    approve = reverse("family_disclosure_approve", args=[disclosure.pk])
    release = reverse("family_disclosure_release", args=[disclosure.pk])
    proposer = login_verified(Client(), personas.coordinator)
    page = proposer.get(reverse("family_request", args=[fr.pk])).content.decode()
    assert SHARED in page and "Approve (second person)" not in page
    response = proposer.post(approve, follow=True)
    assert any("second person" in m for m in page_messages(response))
    # A caseworker is not a second person for this.
    assert login_verified(Client(), personas.caseworker).post(approve).status_code == 403
    assert Disclosure.objects.get(pk=disclosure.pk).approved_at is None

    second = make_user("coordinator3", Role.COORDINATOR)
    personas.team.coordinators.add(second)
    client = login_verified(Client(), second)
    assert (
        "Approve (second person)"
        in client.get(reverse("family_request", args=[fr.pk])).content.decode()
    )
    assert client.post(approve).status_code == 302
    disclosure.refresh_from_db()
    assert disclosure.approved_by == second
    assert disclosure.release_after - disclosure.approved_at == datetime.timedelta(
        hours=settings.PASSAGE_COOLING_OFF_HOURS
    )
    response = client.post(release, follow=True)
    assert any("Not released" in m for m in page_messages(response))
    assert Disclosure.objects.get(pk=disclosure.pk).released_at is None
    assert "left)" in response.content.decode()  # the time remaining
    status = family_status(fr.reference, secret)
    assert SHARED not in status and "Received." in status

    later = disclosure.release_after + datetime.timedelta(minutes=1)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    client = login_verified(Client(), second)  # a staff session does not last days
    page = client.get(reverse("family_request", args=[fr.pk])).content.decode()
    assert "Release now" in page
    response = client.post(release, follow=True)
    assert any("Released" in m for m in page_messages(response))
    assert Disclosure.objects.get(pk=disclosure.pk).released_at == later
    status = family_status(fr.reference, secret)
    assert "A reply is waiting." in status and SHARED in status
    assert CANARY_CITY not in status and CANARY_NAME not in status


def test_a_withdrawn_consent_cancels_the_release(personas, case, matched, monkeypatch):
    fr, secret = matched
    fr, disclosure = _propose_share(personas, case, fr, personas.caseworker)
    client = login_verified(Client(), personas.coordinator)
    assert (
        client.post(reverse("family_disclosure_approve", args=[disclosure.pk])).status_code == 302
    )
    grant_event = ConsentEvent.objects.get(case=case, purpose="share_contact")
    contact_services.consent_withdraw(
        actor=personas.caseworker, case=case, event=grant_event, method="in_person"
    )
    disclosure.refresh_from_db()
    later = disclosure.release_after + datetime.timedelta(hours=1)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    client = login_verified(Client(), personas.coordinator)  # a staff session does not last days
    response = client.post(reverse("family_disclosure_release", args=[disclosure.pk]), follow=True)
    assert any("Cancelled" in m for m in page_messages(response))
    disclosure.refresh_from_db()
    assert disclosure.cancelled_at is not None and disclosure.released_at is None
    status = family_status(fr.reference, secret)
    assert SHARED not in status and "A reply is waiting" not in status


def test_meet_waits_for_approval_like_sharing(personas, case, matched):
    fr, _ = matched
    fr = hand_over(personas, fr, case)
    answer(login_verified(Client(), personas.caseworker), fr, "meet", details="At our office.")
    disclosure = Disclosure.objects.get(request=fr)
    assert disclosure.kind == "meet" and disclosure.proposed_by == personas.caseworker
    assert ConsentEvent.objects.get(case=case, purpose="meet").decision == "granted"
    html = login_verified(Client(), personas.coordinator).get(
        reverse("family_request", args=[fr.pk])
    )
    assert "Approve (second person)" in html.content.decode()


# --- Access ---------------------------------------------------------------------------------------
def staff_urls_with_ids(fr, disclosure):
    values = {"request_pk": fr.pk, "disclosure_pk": disclosure.pk}
    urls = []
    for pattern in staff_urls.urlpatterns:
        params = list(pattern.pattern.converters)
        if params:
            assert set(params) <= set(values), (pattern.name, params)
            urls.append(reverse(pattern.name, kwargs={p: values[p] for p in params}))
    assert len(urls) == 6, urls
    return urls


@pytest.fixture
def handed(personas, case, matched):
    fr, _ = matched
    fr, disclosure = _propose_share(personas, case, fr, personas.caseworker)
    return fr, disclosure


def test_outsiders_get_404_on_every_family_staff_url(personas, handed):
    fr, disclosure = handed
    before = AccessEvent.objects.filter(action="family.request.viewed").count()
    for user in personas.outsiders():
        client = login_verified(Client(), user)
        for url in staff_urls_with_ids(fr, disclosure):
            for method in (client.get, client.post):
                response = method(url)
                assert response.status_code == 404, (user.username, url, method.__name__)
    assert AccessEvent.objects.filter(action="family.request.viewed").count() == before
    assert Disclosure.objects.get(pk=disclosure.pk).approved_at is None


def test_outsiders_get_404_while_the_request_is_in_triage(personas, matched):
    fr, _ = matched
    outsiders = [personas.caseworker, *personas.outsiders()]
    for user in outsiders:
        client = login_verified(Client(), user)
        for name in ("family_request", "family_close", "family_hand", "family_answer"):
            url = reverse(name, args=[fr.pk])
            assert client.get(url).status_code == 404, (user.username, name)
            assert client.post(url).status_code == 404, (user.username, name)
    assert refresh(fr).stage == FamilyRequest.Stage.TRIAGE


def test_no_such_request_looks_the_same(personas, handed):
    fr, disclosure = handed
    ghost = "00000000-0000-4000-8000-000000000001"
    client = login_verified(Client(), personas.coordinator)
    for pattern in staff_urls.urlpatterns:
        params = list(pattern.pattern.converters)
        if params:
            url = reverse(pattern.name, kwargs={p: ghost for p in params})
            assert client.get(url).status_code == 404, pattern.name
            assert client.post(url).status_code == 404, pattern.name


def test_shredded_request_is_gone(personas, matched):
    fr, _ = matched
    services.family_withdraw(family_request=fr)
    client = login_verified(Client(), personas.coordinator)
    assert client.get(reverse("family_request", args=[fr.pk])).status_code == 404
    assert fr.reference not in client.get(reverse("family_triage")).content.decode()


def test_people_with_access_get_405_on_wrong_method(personas, handed):
    fr, disclosure = handed
    client = login_verified(Client(), personas.coordinator)
    for url in staff_urls_with_ids(fr, disclosure):
        if url != reverse("family_request", args=[fr.pk]):
            assert client.get(url).status_code == 405, url
    assert client.get(reverse("family_request", args=[fr.pk])).status_code == 200
    assert client.post(reverse("family_request", args=[fr.pk])).status_code == 405


def test_anonymous_visitors_go_to_the_login_page(handed):
    fr, disclosure = handed
    client = Client()
    for url in [reverse("family_triage"), *staff_urls_with_ids(fr, disclosure)]:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_case_page_lists_only_requests_the_viewer_may_open(personas, case, matched):
    """Found from outside: a read-only caseworker saw a request's reference on the case
    page, then got 404 opening it. The panel comes from the families rules now."""
    fr = hand_over(personas, matched[0], case)
    grant(case, personas.reader, "view")
    case_url = reverse("case_detail", args=[case.pk])
    request_url = reverse("family_request", args=[fr.pk])
    for user, opens in [
        (personas.caseworker, True),
        (personas.coordinator, True),
        (personas.reader, False),
    ]:
        client = login_verified(Client(), user)
        page = client.get(case_url).content.decode()
        assert (f'href="{request_url}"' in page) is opens, user.username
        assert ('id="family-requests"' in page) is opens, user.username
        assert client.get(request_url).status_code == (200 if opens else 404), user.username
