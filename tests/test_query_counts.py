"""Exact query counts of the case page and of the list and queue pages, per persona.

Each page is measured with a little data and with more, and both must give the same,
pinned number: no query runs per row. The comment above each number names its queries
in order, read from the captured SQL. Every staff page starts with the same four:

    1 session, 2 user, 3 second-factor device, 4 user's roles (groups)

and writing the page's access event takes four more ("access event" below):

    savepoint, last event (seq and MAC of the chain), insert, release savepoint

and on PostgreSQL one more, before "last event": the advisory lock that serialises the
log's writers (casework/audit.py), counted as LOCK below.
"""

import os
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casework import queues, services
from casework.models import Case, Task
from contacts import services as contact_services
from contacts.models import Message
from families import services as family_services
from families.models import Disclosure, FamilyMessage, FamilyRequest, MatchCandidate, ScreeningFlag
from tests.base import consent_to_relay, grant, login_verified, make_case

pytestmark = pytest.mark.django_db


def _tables(sql: str) -> str:
    """A short name for one query, to read a failure without the full SQL."""
    verb = sql.split(" ", 1)[0]
    if verb in ("SAVEPOINT", "RELEASE"):
        return verb.lower()
    outer = re.sub(r"'[^']*'", "''", sql)
    while (shorter := re.sub(r"\([^()]*\)", "", outer)) != outer:  # drop subqueries
        outer = shorter
    tables = re.findall(r'(?:FROM|INTO|UPDATE) "(\w+)"', outer)
    return f"{verb.lower()} {tables[0] if tables else '?'}"


def measure(client, url, grow, sizes, *, shows=None) -> list[int]:
    """The query count of GET `url` after `grow(n)`, for each n in `sizes`.

    Each measured GET follows an unmeasured one that does the once-per-session work
    (the session's last-seen time, the content-type cache), so only the page's own
    queries count. `shows(n, html)` checks that the page really lists the n rows.
    """
    counts = []
    for n in sizes:
        grow(n)
        assert client.get(url).status_code == 200
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url)
        assert response.status_code == 200
        if shows is not None:
            shows(n, response.content.decode())
        sql = [q["sql"] for q in ctx.captured_queries]
        if os.environ.get("PASSAGE_SHOW_SQL"):  # to name the queries of a changed page
            print(f"\n{url} n={n}: " + "".join(f"\n{i:3} {s}" for i, s in enumerate(sql, 1)))
        counts.append(len(sql))
        print(f"{url} n={n}: {len(sql)}: " + ", ".join(_tables(s) for s in sql))
    return counts


# The access log's advisory lock: a query on PostgreSQL only.
LOCK = 1 if connection.vendor == "postgresql" else 0


# --- Data -----------------------------------------------------------------------------------------
@pytest.fixture
def case(personas, settings, tmp_path):
    """A Team A case that the caseworker works on (the coordinator leads Team A)."""
    settings.MEDIA_ROOT = tmp_path
    c = make_case(personas.team, actor=personas.coordinator, name="Maryam Karimi")
    grant(c, personas.caseworker, "work")
    return c


def attachments(case, author):
    """Notes with one attachment each, until the case has n attachments."""

    def grow(n):
        while case.attachments.count() < n:
            i = case.attachments.count()
            services.note_add(
                actor=author,
                case=case,
                body=f"note {i}",
                restricted=False,
                upload=SimpleUploadedFile(f"scan-{i}.pdf", b"%PDF-1.4", "application/pdf"),
            )

    return grow


def cases(personas):
    """Team A cases the caseworker works on, until there are n."""

    def grow(n):
        while Case.objects.count() < n:
            c = make_case(
                personas.team, actor=personas.coordinator, name=f"Person {Case.objects.count()}"
            )
            grant(c, personas.caseworker, "work")

    return grow


def tasks(personas):
    """Open tasks on the caseworker's cases, until there are n of each kind: waiting in
    the team queue ("open"), assigned to the caseworker ("mine"), claimed by the
    coordinator ("claimed"; tasks are assigned to caseworkers only)."""

    def grow(n):
        while Task.objects.filter(assignee__isnull=True).count() < n:
            i = Task.objects.count()
            c = make_case(personas.team, actor=personas.coordinator, name=f"Task Person {i}")
            grant(c, personas.caseworker, "work")
            made = {
                title: queues.task_create(
                    actor=personas.coordinator,
                    case=c,
                    title=f"{title} {i}",
                    aim="support",
                    assignee=personas.caseworker if title == "mine" else None,
                )
                for title in ("open", "mine", "claimed")
            }
            assert queues.task_claim(actor=personas.coordinator, task=made["claimed"])

    return grow


REQUEST = {
    "requester_name": "Reza Tehrani",
    "relationship": "brother",
    "requester_country": "Iran",
    "requester_email": "seeker@example.net",
    "requester_phone": "+98 21 5550 1234",
    "sought_birth_year": 1990,
    "last_place": "Qom",
    "last_year": 2010,
    "other_details": "",
    "message": "We miss you.",
}


def new_request(name, stage="triage") -> FamilyRequest:
    fr, _secret = family_services.request_submit(
        data=REQUEST | {"sought_names": [name]}, language="en", notice_sha256="x" * 64
    )
    FamilyRequest.objects.filter(pk=fr.pk).update(stage=stage)
    return FamilyRequest.objects.get(pk=fr.pk)


def triage_requests(personas, case):
    """Requests waiting in triage, until there are n; by turns one with a Team A
    candidate and a flag, one with Team B and Team A candidates, one matching nothing."""
    other = make_case(personas.other_team, name="Other Team Person")

    def grow(n):
        while FamilyRequest.objects.count() < n:
            i = FamilyRequest.objects.count()
            fr = new_request(f"Sought Person{i}")
            if i % 3 == 0:
                MatchCandidate.objects.create(request=fr, case=case, score=0.9, reasons=["names"])
                ScreeningFlag.objects.create(request=fr, kind="sought_repeatedly")
            elif i % 3 == 1:
                MatchCandidate.objects.create(request=fr, case=other, score=0.5, reasons=[])
                MatchCandidate.objects.create(request=fr, case=case, score=0.4, reasons=["place"])

    return grow


def request_details(personas, fr):
    """Follow-ups, candidate cases (of Team A and Team B), flags naming them and
    proposed meetings, until there are n of each."""

    def grow(n):
        while fr.followups.count() < n:
            i = fr.followups.count()
            FamilyMessage(request=fr, body=f"one more thing {i}").save()
            team = personas.team if i % 2 == 0 else personas.other_team
            other = make_case(team, name=f"Candidate Person{i}")
            MatchCandidate.objects.create(request=fr, case=other, score=0.5, reasons=["names"])
            ScreeningFlag.objects.create(request=fr, kind="sought_repeatedly", case=other)
            Disclosure(
                request=fr, kind="meet", details=f"Library {i}", proposed_by=personas.caseworker
            ).save()

    return grow


def messages(personas):
    """Messages waiting for review and approved ones, each on its own case of the
    caseworker's, until there are n of each."""

    def grow(n):
        while Message.objects.filter(status="pending").count() < n:
            c = make_case(
                personas.team, actor=personas.coordinator, name=f"Relay {Case.objects.count()}"
            )
            grant(c, personas.caseworker, "work")
            contact = contact_services.contact_save(
                actor=personas.caseworker, case=c, data={"kind": "family", "name": "Mother"}
            )
            consent_to_relay(c, personas.caseworker, contact)
            for body in ("waiting", "approved"):
                message = contact_services.message_submit(
                    actor=personas.caseworker,
                    case=c,
                    contact=contact,
                    direction="to_contact",
                    body=body,
                )
            contact_services.message_review(
                actor=personas.coordinator, case=c, message=message, decision="approve"
            )

    return grow


def shows_all(texts):
    """A `shows` check: every text of the first n rows appears on the page."""

    def check(n, html):
        for text in texts()[:n] if callable(texts) else texts[:n]:
            assert text in html, text

    return check


def references(queryset):
    return lambda: list(queryset.order_by("reference").values_list("reference", flat=True))


# --- The case page --------------------------------------------------------------------------------
# Each attachment's filename is encrypted under its case's key; the view hands the
# prefetched attachments their (checked) case, so none loads the case and its key again
# (before: 2 queries more per attachment).
ATTACHMENT_N_PLUS_ONE = 0

CASE_DETAIL = {
    # 5 the case with its rights, data key and team (get_case_for_user: one query),
    # 6-9 access event (case.viewed), 10 notes with their authors, 11 the notes'
    # attachments, 12 family requests on this case the viewer may open (families
    # panel), 13 stage history with who changed it, 14 tasks with assignees,
    # 15 caseworkers of the team (task form), 16 active checklists (task form),
    # 17 caseworkers named on the case.
    "caseworker": 17,
    # The same: the coordinator's rights (triage team included) are conditions of the
    # panel's one query, not queries of their own.
    "coordinator": 17,
}


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_case_page_queries_do_not_grow_with_attachments(personas, case, who):
    client = login_verified(Client(), getattr(personas, who))
    sizes = (1, 5)
    counts = measure(
        client,
        reverse("case_detail", args=[case.pk]),
        attachments(case, personas.caseworker),
        sizes,
        shows=shows_all([f"scan-{i}.pdf" for i in range(5)]),
    )
    assert counts == [CASE_DETAIL[who] + LOCK + ATTACHMENT_N_PLUS_ONE * n for n in sizes]


# --- Lists and queues -----------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_case_list_queries_stay_flat(personas, who):
    # 5 count of the cases the user may see (pager), 6 the page of cases with data keys
    # and teams, 7 caseworkers of the page's cases (one query), 8-11 access event
    # (case.listed), 12 the user's teams (team filter), 13 their caseworkers (assignee
    # filter).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("case_list"),
        cases(personas),
        (2, 10),
        shows=shows_all(references(Case.objects)),
    )
    assert counts == [13 + LOCK] * 2


@pytest.mark.parametrize("who, title", [("caseworker", "mine"), ("coordinator", "claimed")])
def test_my_queue_queries_stay_flat(personas, who, title):
    # 5 count of the user's open tasks (pager), 6 the page of tasks with their cases and
    # data keys (rules as a condition of the same query), 7-10 access event (task.listed).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("my_queue"),
        tasks(personas),
        (2, 10),
        shows=shows_all([f"{title} {3 * i}</bdi>" for i in range(10)]),
    )
    assert counts == [10 + LOCK] * 2


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_team_queue_queries_stay_flat(personas, who):
    # 5 the unassigned tasks of the user's teams with their cases, data keys and the
    # rights on each case (one query), 6-9 access event (task.listed).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("team_queue"),
        tasks(personas),
        (2, 10),
        shows=shows_all([f"open {3 * i}</bdi>" for i in range(10)]),
    )
    assert counts == [9 + LOCK] * 2


def test_board_queries_stay_flat(personas):
    # 5 the open tasks of the coordinator's teams with their cases, data keys, teams,
    # assignees and the rights on each case (one query), 6-9 access event (task.listed),
    # 10 caseworkers of the led teams (assignee picker).
    client = login_verified(Client(), personas.coordinator)
    counts = measure(
        client,
        reverse("board"),
        tasks(personas),
        (2, 10),
        shows=shows_all([f"{t} {3 * i}</bdi>" for i in range(10) for t in ("open", "mine")]),
    )
    assert counts == [10 + LOCK] * 2


def test_family_triage_queries_stay_flat(personas, case):
    # 5 count of the waiting requests (pager), 6 the page of requests with data keys
    # (whether the coordinator leads a triage team is a condition of it), 7 their
    # flags, 8 their candidates, 9-12 access event (family.request.listed).
    client = login_verified(Client(), personas.coordinator)
    counts = measure(
        client,
        reverse("family_triage"),
        triage_requests(personas, case),
        (2, 10),
        shows=shows_all(references(FamilyRequest.objects)),
    )
    assert counts == [12 + LOCK] * 2


FAMILY_REQUEST = {
    # 5 the request with its rights, data key, case, the case's key and team (one
    # query), 6 follow-ups, 7-10 access event (family.request.viewed), 11 disclosures
    # with who proposed and approved them, 12-14 the current notice for relaying,
    # sharing contact details and meeting (one each: the answer form), 15 witnesses
    # (people of the case's team). A caseworker sees neither flags nor candidates.
    "caseworker": 15,
    # 5 the request with its rights (as above; the triage team is a condition of it),
    # 6 follow-ups, 7 flags with their case's team and the other request, 8-11 access
    # event, 12 candidates with their cases, keys and teams, and whether the
    # coordinator may open each (one query), 13 disclosures, 14-16 the three notices,
    # 17 witnesses.
    "coordinator": 17,
}


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_family_request_page_queries_stay_flat(personas, case, who):
    fr = new_request("Maryam Karimi", stage="handed")
    FamilyRequest.objects.filter(pk=fr.pk).update(case=case)
    MatchCandidate.objects.create(request=fr, case=case, score=0.9, reasons=["names"])
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("family_request", args=[fr.pk]),
        request_details(personas, fr),
        (1, 5),
        shows=shows_all([f"one more thing {i}" for i in range(5)]),
    )
    assert counts == [FAMILY_REQUEST[who] + LOCK] * 2


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_message_review_queue_queries_stay_flat(personas, who):
    # 5 messages waiting for review with their threads, cases, data keys and contacts,
    # 6 approved messages with their threads, cases and contacts (the page shows case
    # references and dates, no content: no access event).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("review_queue"),
        messages(personas),
        (2, 10),
        shows=shows_all(references(Case.objects.filter(threads__isnull=False))),
    )
    assert counts == [6, 6]
