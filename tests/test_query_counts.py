"""Exact query counts of the case page and of the list and queue pages, per persona.

Each page is measured with a little data and with more, and both must give the same,
pinned number: no query runs per row. The comment above each number names its queries
in order, read from the captured SQL. Every staff page starts with the same three:

    1 session, 2 user with their roles (staff.StaffBackend), 3 second-factor device

and writing the page's access event takes one more ("access event" below): its insert.
Writers of the log take no lock, open no savepoint and read no earlier event
(casework/audit.py; before issue 14 it was four queries, five on PostgreSQL).
"""

import os
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casework import queues, search, services
from casework.models import Case, Task
from contacts import services as contact_services
from contacts.models import Message
from families import services as family_services
from families.models import Disclosure, FamilyMessage, FamilyRequest, MatchCandidate, ScreeningFlag
from tests.base import consent_to_relay, grant, login_verified, make_case

pytestmark = pytest.mark.django_db


def _tables(sql: str) -> str:
    """A short name for one query, to read a failure without the full SQL."""
    sql = sql.lstrip("(")  # a UNION: PostgreSQL writes each part in parentheses
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
def queries(client, url, *, post=None) -> list[str]:
    """The short names of the queries of one GET (or POST) of `url`, after an unmeasured
    one (as in measure())."""
    send = (lambda: client.post(url, post)) if post is not None else (lambda: client.get(url))
    send()
    with CaptureQueriesContext(connection) as ctx:
        response = send()
    assert response.status_code == (302 if post is not None else 200), response.status_code
    sql = [q["sql"] for q in ctx.captured_queries]
    if os.environ.get("PASSAGE_SHOW_SQL"):
        print(f"\n{url}: " + "".join(f"\n{i:3} {s}" for i, s in enumerate(sql, 1)))
    return [_tables(s) for s in sql]


def case_contents(personas, case):
    """Notes (each with an attachment, every third restricted), tasks, stage changes,
    contacts and family requests handed to the case, until there are n of each."""
    stages = ["refuge", "resettlement", "reunification", "intake"]

    def grow(n):
        while case.notes.count() < n:
            i = case.notes.count()
            services.note_add(
                actor=personas.caseworker,
                case=case,
                body=f"note {i}",
                restricted=i % 3 == 2,
                upload=SimpleUploadedFile(f"scan-{i}.pdf", b"%PDF-1.4", "application/pdf"),
            )
            queues.task_create(
                actor=personas.coordinator,
                case=case,
                title=f"task {i}",
                aim="support",
                assignee=personas.caseworker if i % 2 else None,
            )
            services.case_change_stage(actor=personas.caseworker, case=case, stage=stages[i % 4])
            contact_services.contact_save(
                actor=personas.caseworker, case=case, data={"kind": "family", "name": f"Aunt {i}"}
            )
            fr = new_request(f"Sought Person{i}", stage="handed")
            FamilyRequest.objects.filter(pk=fr.pk).update(case=case)

    return grow


# The case page, whatever it holds: the same queries, in this order, at 1 and at 5 notes,
# attachments, tasks, stage changes, contacts and family requests. The case comes with
# the viewer's rights (#9), so no query asks the permission tables again; the forms are
# plain markup in the template (no form library, no query of their own).
CASE_PAGE = [
    "select django_session",  # 1-3: every staff page
    "select casework_user",  # the user with their roles (staff.StaffBackend)
    "select casework_vaulttotpdevice",
    "select casework_case",  # 4 the case with the viewer's rights, its data key and team
    "insert casework_accessevent",  # 5 the opening (case.viewed)
    # 6 people, one UNION ALL: the caseworkers named on the case (Access) and, for who
    # may work on it, the team's caseworkers a task can go to (the task form)
    "select casework_user",
    "select casework_note",  # 7 notes with their authors (restricted ones only for those who may)
    "select casework_attachment",  # 8 the notes' attachments (their case set from 4: no key query)
    "select families_familyrequest",  # 9 family requests on this case the viewer may open
    "select casework_stagechange",  # 10 stage history with who changed it
    "select casework_task",  # 11 tasks with their assignees
    "select casework_tasktemplate",  # 12 active checklists (for who may work on the case)
]
# A read-only grant: no task form, so no checklists, and only the named caseworkers in 6.
CASE_PAGE_READ_ONLY = CASE_PAGE[:-1]


@pytest.mark.parametrize("who", ["caseworker", "coordinator", "reader"])
def test_case_page_runs_the_same_queries_whatever_it_holds(personas, case, who):
    grant(case, personas.reader, "view")
    client = login_verified(Client(), getattr(personas, who))
    url = reverse("case_detail", args=[case.pk])
    grow = case_contents(personas, case)
    expected = CASE_PAGE_READ_ONLY if who == "reader" else CASE_PAGE
    for n in (1, 5):
        grow(n)
        assert queries(client, url) == expected, n
        page = client.get(url).content.decode()
        for i in range(n):
            assert f"task {i}</bdi>" in page
            shown = who != "reader" or i % 3 != 2  # a restricted note, to a read-only grant
            assert (f"note {i}<" in page) == shown and (f"scan-{i}.pdf" in page) == shown
        assert FamilyRequest.objects.filter(case=case).count() == n


# --- The contact POST -----------------------------------------------------------------------------
# Adding a contact: one transaction (BEGIN and COMMIT in production; a savepoint here, as
# the test runs in a transaction of its own) holding the row, its blind indexes and its
# access event. VaultModel.save (casework/vault/index.py) joins it: no savepoint of its own.
CONTACT_POST = [
    "select django_session",  # 1-3: every staff page
    "select casework_user",  # with the user's roles
    "select casework_vaulttotpdevice",
    "select casework_case",  # 4 the case with the viewer's rights
    "savepoint",  # 5 contact_save's transaction (BEGIN in production)
    "insert contacts_contact",  # 6
    "insert casework_blindindexentry",  # 7 name, phone and e-mail indexes, one INSERT
    "insert casework_accessevent",  # 8 contact.created
    "release",  # 9 (COMMIT in production)
]


def test_adding_a_contact_is_one_transaction_with_its_event(personas, case):
    client = login_verified(Client(), personas.caseworker)
    data = {
        "kind": "family",
        "name": "Mina Rahimi",
        "phone": "+98 912 000 1111",
        "email": "m@x.org",
    }
    url = reverse("case_contacts", args=[case.pk])
    assert queries(client, url, post=data) == CONTACT_POST
    assert case.contacts.filter(kind="family").count() == 2


# --- Screening and matching -----------------------------------------------------------------------
def consenting_cases(personas, name):
    """Cases of Team A named `name` whose person agreed to family tracing, until there
    are n."""
    from contacts.models import NoticeText

    made = []

    def grow(n):
        while len(made) < n:
            c = make_case(personas.team, actor=personas.coordinator, name=name, birth_year=1990)
            contact_services.consent_record(
                actor=personas.coordinator,
                case=c,
                purpose="tracing",
                decision="granted",
                method="in_person",
                notice=NoticeText.current("tracing", "en"),
            )
            made.append(c)

    return grow


def earlier_requests(name):
    """Requests from other families seeking `name`, until there are n."""
    made = []

    def grow(n):
        while len(made) < n:
            i = len(made)
            made.append(None)
            family_services.request_submit(
                data=REQUEST
                | {
                    "sought_names": [name],
                    "requester_name": f"Other Family{i}",
                    "requester_email": f"other{i}@example.net",
                    "requester_phone": f"+1 555 010 {i:04d}",
                },
                language="en",
                notice_sha256="x" * 64,
            )

    return grow


# process(): screening and matching read a fixed number of queries, then write what they
# found in one short transaction, one INSERT per kind, however much that is. The same at
# 1 and at 5 earlier requests seeking the same person (each a flag) and at 1 and at 5
# consenting cases of that name (each a candidate).
PROCESS = [
    # Screening: the requester against every do-not-disclose list (the name's whole
    # value and its tokens, the phone, the e-mail: the index only, nothing matched)...
    "select casework_blindindexentry",
    "select casework_blindindexentry",
    "select casework_blindindexentry",
    "select casework_blindindexentry",
    # ...the same person sought within the window: whole name and tokens, the earlier
    # requests found (one query, with their data keys), and which of them the same
    # family wrote (their requester indexes, one query)
    "select casework_blindindexentry",
    "select casework_blindindexentry",
    "select families_familyrequest",
    "select casework_blindindexentry",
    # Matching: the cases' name index (whole name, tokens together), the latest
    # family-tracing decisions of those cases, the consenting cases with keys and teams
    "select casework_blindindexentry",
    "select casework_blindindexentry",
    "select contacts_consentevent",
    "select casework_case",
    # Writing: one transaction (a savepoint in this test)
    "savepoint",
    "update families_familyrequest",  # marked processed, only if nobody did meanwhile
    "insert families_screeningflag",  # every flag
    "insert families_matchcandidate",  # every candidate
    "insert casework_accessevent",  # family.request.processed
    "release",
]


def test_screening_and_matching_run_the_same_queries_whatever_they_find(personas):
    name = "Sara Rahimi"
    cases, earlier = consenting_cases(personas, name), earlier_requests(name)
    for n in (1, 5):
        cases(n)
        earlier(n)
        fr, _secret = family_services.request_submit(
            data=REQUEST | {"sought_names": [name]}, language="en", notice_sha256="x" * 64
        )
        fr = FamilyRequest.objects.select_related("data_key").get(pk=fr.pk)
        with CaptureQueriesContext(connection) as ctx:
            family_services.process(fr)
        assert [_tables(q["sql"]) for q in ctx.captured_queries] == PROCESS, n
        assert MatchCandidate.objects.filter(request=fr).count() == n
        assert ScreeningFlag.objects.filter(request=fr, kind="sought_repeatedly").count() == n


# --- Lists and queues -----------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_case_list_queries_stay_flat(personas, who):
    # 4 the page of cases with data keys and teams (by key: the rows after the cursor,
    # LIMIT 51), 5 how many cases the user may see, counted to 1,001 at most, 6
    # caseworkers of the page's cases (one query), 7 access event (case.listed),
    # 8 the user's teams (team filter), 9 their caseworkers (assignee filter).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("case_list"),
        cases(personas),
        (2, 10),
        shows=shows_all(references(Case.objects)),
    )
    assert counts == [9] * 2


SEARCH = {
    # 4 whether the name's first token is held by more than 64 rows (LIMIT 1 OFFSET
    # 64: it is not, so it leads the lookup), 5 the blind index's offer for the name
    # (rows holding the whole name or every token: one query, at most 2,001 row ids),
    # 6 those cases' order keys and whether the user may see each (the rule as a
    # column: the outside count), 7 the newest 101 the user may see, with data keys (the
    # only rows decrypted), 8 access event (case.searched), 9-11 the session keeps the
    # result's token (savepoint, update, release).
    "Maryam Karimi": 11,
    # 4 the cases the user may see with that exact reference (its unique index),
    # 5 access event, 6-8 the session.
    "p-2026-0001": 8,
}


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
@pytest.mark.parametrize("term", list(SEARCH))
def test_case_search_queries_stay_flat(personas, who, term):
    """With 2 or 10 cases the user may see (and as many they may not), a search runs
    the same queries."""
    user = getattr(personas, who)
    client = login_verified(Client(), user)
    first = make_case(personas.team, actor=personas.coordinator, name="Maryam Karimi")
    Case.objects.filter(pk=first.pk).update(reference="P-2026-0001")
    grant(first, personas.caseworker, "work")
    counts = []
    for n in (2, 10):
        while Case.objects.filter(team=personas.team).count() < n:
            c = make_case(personas.team, actor=personas.coordinator, name="Maryam Karimi")
            grant(c, personas.caseworker, "work")
            make_case(personas.other_team, name="Maryam Karimi")
        client.post(reverse("case_search"), {"q": term})
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(reverse("case_search"), {"q": term})
        assert response.status_code == 302
        found = client.session[search.SESSION_KEY][response["Location"].split("found=")[1]]
        assert len(found) == (n if term == "Maryam Karimi" else 1)
        counts.append(len(ctx.captured_queries))
        named = ", ".join(_tables(q["sql"]) for q in ctx.captured_queries)
        print(f"search {term!r} n={n}: {named}")
    assert counts == [SEARCH[term]] * 2


@pytest.mark.parametrize("who, title", [("caseworker", "mine"), ("coordinator", "claimed")])
def test_my_queue_queries_stay_flat(personas, who, title):
    # 4 count of the user's open tasks (pager), 5 the page of tasks with their cases and
    # data keys (rules as a condition of the same query), 6 access event (task.listed).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("my_queue"),
        tasks(personas),
        (2, 10),
        shows=shows_all([f"{title} {3 * i}</bdi>" for i in range(10)]),
    )
    assert counts == [6] * 2


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_team_queue_queries_stay_flat(personas, who):
    # 4 the unassigned tasks of the user's teams with their cases, data keys and the
    # rights on each case (one query), 5 access event (task.listed).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("team_queue"),
        tasks(personas),
        (2, 10),
        shows=shows_all([f"open {3 * i}</bdi>" for i in range(10)]),
    )
    assert counts == [5] * 2


def test_board_queries_stay_flat(personas):
    # 4 open, overdue and due-this-week counts per person over the whole board (one
    # grouped query: the totals and the pager's count), 5 the page of open tasks with
    # their cases' references and data keys and their assignees (rules as a condition
    # of the same query), 6 access event (task.listed), 7 caseworkers of the led teams
    # (assignee picker).
    client = login_verified(Client(), personas.coordinator)
    counts = measure(
        client,
        reverse("board"),
        tasks(personas),
        (2, 10),
        shows=shows_all([f"{t} {3 * i}</bdi>" for i in range(10) for t in ("open", "mine")]),
    )
    assert counts == [7] * 2


def test_family_triage_queries_stay_flat(personas, case):
    # 4 the page of waiting requests with data keys (by key: LIMIT 51, no count;
    # whether the coordinator leads a triage team is a condition of it), 5 their flags,
    # 6 their candidates, 7 access event (family.request.listed).
    client = login_verified(Client(), personas.coordinator)
    counts = measure(
        client,
        reverse("family_triage"),
        triage_requests(personas, case),
        (2, 10),
        shows=shows_all(references(FamilyRequest.objects)),
    )
    assert counts == [7] * 2


FAMILY_REQUEST = {
    # 4 the request with its rights, data key, case, the case's key and team (one
    # query), 5 follow-ups, 6 access event (family.request.viewed), 7 disclosures with
    # who proposed and approved them, 8-10 the current notice for relaying, sharing
    # contact details and meeting (one each: the answer form), 11 witnesses (people of
    # the case's team). A caseworker sees neither flags nor candidates.
    "caseworker": 11,
    # 4 the request with its rights (as above; the triage team is a condition of it),
    # 5 follow-ups, 6 flags with their case's team and the other request, 7 access
    # event, 8 candidates with their cases, keys and teams, and whether the
    # coordinator may open each (one query), 9 disclosures, 10-12 the three notices,
    # 13 witnesses.
    "coordinator": 13,
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
    assert counts == [FAMILY_REQUEST[who]] * 2


@pytest.mark.parametrize("who", ["caseworker", "coordinator"])
def test_message_review_queue_queries_stay_flat(personas, who):
    # 4 messages waiting for review with their threads, cases, data keys and contacts,
    # 5 approved messages with their threads, cases and contacts (the page shows case
    # references and dates, no content: no access event).
    client = login_verified(Client(), getattr(personas, who))
    counts = measure(
        client,
        reverse("review_queue"),
        messages(personas),
        (2, 10),
        shows=shows_all(references(Case.objects.filter(threads__isnull=False))),
    )
    assert counts == [5, 5]
