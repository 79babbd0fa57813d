"""The demo cases, tasks and family requests of `seed_demo` (the benchmark's own tests are
in test_benchmark.py)."""

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from casework import queues
from casework.access import cases_for_user
from casework.models import (
    AccessEvent,
    Case,
    CaseUserObjectPermission,
    Note,
    Priority,
    Stage,
    Task,
    TaskEvent,
    TaskTemplate,
    User,
    Whereabouts,
)
from contacts.models import ConsentEvent, Message, NoticeText
from families.matching import tracing_consented
from families.models import FamilyRequest, MatchCandidate
from tests.base import login_verified
from tooling.management.commands.seed_demo import (
    DEMO_CASES,
    DEMO_CHECKLISTS,
    DEMO_REQUESTS,
    DEMO_TASKS,
)

ROOT = Path(__file__).resolve().parents[2]


def seed(settings) -> str:
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {
        "cases": Case.objects.count(),
        "notes": Note.objects.count(),
        "whereabouts": Whereabouts.objects.count(),
        "grants": CaseUserObjectPermission.objects.count(),
        "events": AccessEvent.objects.count(),
        "consents": ConsentEvent.objects.count(),
        "family requests": FamilyRequest.objects.count(),
        "candidates": MatchCandidate.objects.count(),
        "tasks": Task.objects.count(),
        "messages": Message.objects.count(),
    }


def demo_requests() -> dict:
    """The seeded requests by their requester's phone (each demo requester has one)."""
    found = FamilyRequest.objects.select_related("data_key", "case__data_key", "contact")
    return {r.requester_phone: r for r in found}


def spec_of(then: str) -> dict:
    return next(spec for spec in DEMO_REQUESTS if spec["then"] == then)


def granted(username, codename="view_case") -> set:
    return set(
        CaseUserObjectPermission.objects.filter(
            user__username=username, permission__codename=codename
        ).values_list("content_object_id", flat=True)
    )


@pytest.mark.django_db
def test_seed_demo_opens_the_demo_cases_with_notes_whereabouts_and_grants(settings):
    seed(settings)
    cases = list(Case.objects.select_related("team", "data_key"))
    assert len(cases) == len(DEMO_CASES) >= 12
    assert {c.team.name for c in cases} == {
        "Refuge and arrival",
        "Resettlement",
        "Family reunification",
    }
    assert {Stage.INTAKE, Stage.REFUGE, Stage.RESETTLEMENT, Stage.REUNIFICATION, Stage.CLOSED} == {
        c.stage for c in cases
    }
    assert sum(c.sealed for c in cases) == 1
    assert len({c.risk for c in cases}) == 4
    names = {c.legal_name for c in cases}
    assert {"مریم کریمی", "علی رضایی"} <= names  # Persian script, decrypted from the rows
    assert any("برادر نور" in c.other_names for c in cases)
    for case in cases:
        notes = case.notes.all()
        assert notes.count() >= 2, case.reference
        assert case.stage_changes.exists()
    assert Note.objects.filter(restricted=True).exists()
    assert Note.objects.filter(restricted=False).exists()
    assert Whereabouts.objects.count() >= 4
    place = Whereabouts.objects.select_related("case__data_key").first()
    assert place.city and place.phone  # encrypted, and readable under the case's key
    assert AccessEvent.objects.filter(action="case.created").count() == len(cases)
    assert AccessEvent.objects.filter(action="access.granted").exists()
    assert AccessEvent.objects.filter(action="case.sealed").count() == 1


@pytest.mark.django_db
def test_seed_demo_grants_follow_the_caseworkers_teams(settings):
    seed(settings)
    by_team = {
        "caseworker": {"Refuge and arrival", "Resettlement"},
        "caseworker2": {"Resettlement", "Family reunification"},
    }
    for username, teams in by_team.items():
        worked = Case.objects.filter(pk__in=granted(username, "change_case"))
        assert worked.exists(), username
        assert {c.team.name for c in worked} <= teams, username
        assert granted(username, "view_whereabouts"), username


@pytest.mark.django_db
def test_seed_demo_run_twice_adds_nothing(settings):
    seed(settings)
    before = counts()
    out = seed(settings)
    assert counts() == before
    assert "Demo cases: already there, none added." in out
    assert "Demo tasks: already there, none added." in out
    assert "Demo family requests: already there, none added." in out
    assert "Demo family credentials" not in out  # the secret is shown once, when made


@pytest.mark.django_db
def test_the_demo_caseworker_sees_only_the_cases_granted_to_them(settings):
    seed(settings)
    caseworker = User.objects.get(username="caseworker")
    visible = set(cases_for_user(caseworker).values_list("pk", flat=True))
    assert visible == granted("caseworker")
    assert 0 < len(visible) < Case.objects.count()
    sealed = Case.objects.get(sealed=True)
    assert sealed.pk not in visible
    assert not cases_for_user(caseworker).filter(team__name="Family reunification").exists()


@pytest.mark.django_db
def test_seed_demo_prints_a_summary_and_no_names(settings):
    out = seed(settings)
    assert f"Demo cases: {len(DEMO_CASES)} opened" in out
    assert (
        "Demo family requests: 5 made (2 in triage, 1 handed over, 1 relaying messages, "
        "1 closed); family-tracing consent for 6 of 12 demo cases."
    ) in out
    assert (
        "Demo tasks: 20 made on 10 cases (2 checklists applied): 15 assigned, 5 unassigned, "
        "1 overdue, 3 urgent."
    ) in out
    names = [
        name
        for spec in DEMO_CASES
        for name in [spec["person"]["legal_name"], *spec["person"]["other_names"]]
    ]
    for spec in DEMO_REQUESTS:
        names += [spec["data"]["requester_name"], *spec["data"]["sought_names"]]
    words = set(names)
    for name in names:
        words.update(w for w in name.split() if len(w) > 3)
    printed = [w for w in words if w in out]
    assert not printed, printed


@pytest.mark.django_db
def test_seed_demo_fills_each_caseworkers_queue_with_tasks_they_can_open(settings):
    seed(settings)
    for username in ("caseworker", "caseworker2"):
        user = User.objects.get(username=username)
        queue = list(queues.my_queue(user))
        assert 6 <= len(queue) <= 10, (username, len(queue))
        # Every task given to them is in their queue: none on a case they cannot see.
        assert (
            len(queue) == user.tasks.filter(status__in=["open", "in_progress", "waiting"]).count()
        )
        assert {t.case_id for t in queue} <= set(cases_for_user(user).values_list("pk", flat=True))
        assert {t.status for t in queue} > {"open"}  # some moved along by the assignee
        page = login_verified(Client(), user).get("/tasks/")
        assert page.status_code == 200
        assert page.content.decode().count('id="task-') == len(queue)
    mine = list(queues.my_queue(User.objects.get(username="caseworker")))
    assert mine[0].is_overdue  # the overdue task comes first
    assert sum(t.is_overdue for t in Task.objects.select_related("case__data_key")) == 1
    assert Task.objects.filter(priority=Priority.URGENT, assignee__isnull=False).exists()
    assert not Task.objects.filter(case__sealed=True).exists()
    # Made through the services: each has its history and its access event.
    made = Task.objects.count()
    assert TaskEvent.objects.filter(kind="created").count() == made
    assert AccessEvent.objects.filter(action="task.created").count() == made


@pytest.mark.django_db
def test_seed_demo_applies_the_checklists_and_the_board_groups_the_tasks(settings):
    seed(settings)
    titles = {}
    for task in Task.objects.select_related("case__data_key"):
        titles.setdefault(task.case.legal_name, set()).add(task.title)
    for name, case_name, _assignees in DEMO_CHECKLISTS:
        items = set(TaskTemplate.objects.get(name=name).items.values_list("title", flat=True))
        assert items and items <= titles[case_name], name
    assert {s["title"] for s in DEMO_TASKS} <= set().union(*titles.values())

    coordinator = User.objects.get(username="coordinator")
    groups = queues.board_summary(queues.board_tasks(coordinator))
    by_name = {g["assignee"].username if g["assignee"] else None: g for g in groups}
    assert set(by_name) == {None, "caseworker", "caseworker2"}
    assert groups[0]["assignee"] is None and by_name[None]["open"] == 5
    assert by_name["caseworker"]["overdue"] == 1 and by_name["caseworker"]["week"] >= 1
    page = login_verified(Client(), coordinator).get("/tasks/board/")
    assert page.status_code == 200
    html = page.content.decode()
    total = sum(g["open"] for g in groups)
    assert f"{total} open tasks" in html
    assert html.count('name="tasks" value="') == total


@pytest.mark.django_db
def test_seed_demo_makes_the_single_tasks_without_the_checklists(settings):
    # As in a flushed (transactional) test database: the migrations' checklists are gone.
    TaskTemplate.objects.all().delete()
    out = seed(settings)
    assert "Demo tasks: 9 made on 8 cases (0 checklists applied)" in out
    assert "Demo tasks: already there, none added." in seed(settings)


@pytest.mark.django_db
def test_seed_demo_records_tracing_consent_for_half_the_demo_cases(settings):
    seed(settings)
    grants = ConsentEvent.objects.filter(purpose="tracing").select_related("case__data_key")
    consenting = {s["person"]["legal_name"] for s in DEMO_CASES if s.get("tracing")}
    assert len(consenting) == len(DEMO_CASES) // 2
    assert {e.case.legal_name for e in grants} == consenting
    assert grants.count() == len(consenting)
    for event in grants:
        assert event.decision == "granted" and event.method == "in_person"
        assert event.notice.purpose == "tracing" and event.notice_sha256 == event.notice.sha256
        assert event.recorded_by.username in {"caseworker", "caseworker2", "coordinator"}
    # What matching reads: the latest tracing decision of each case.
    every_case = Case.objects.values_list("pk", flat=True)
    assert tracing_consented(every_case) == {e.case_id for e in grants}


@pytest.mark.django_db
def test_seed_demo_makes_family_requests_in_each_state(settings):
    seed(settings)
    requests = demo_requests()
    assert len(requests) == len(DEMO_REQUESTS) == 5
    assert all(r.processed_at is not None for r in requests.values())  # matched in the seed
    by_phone = {spec["data"]["requester_phone"]: spec for spec in DEMO_REQUESTS}
    stages = sorted(r.stage for r in requests.values())
    assert stages == ["closed", "handed", "relay", "triage", "triage"]
    for phone, request in requests.items():
        spec = by_phone[phone]
        candidates = {
            c.case.legal_name for c in request.candidates.select_related("case__data_key")
        }
        if spec["then"] == "triage" and spec["language"] == "fa":
            # Typed with Arabic yeh; the case is spelled with the Persian one.
            assert "\u064a" in spec["data"]["sought_names"][0]
            assert candidates == {"فاطمه احمدی"}
            assert request.stage == "triage" and request.case is None
        elif spec["then"] == "triage":
            assert candidates == set() and request.stage == "triage"
        elif spec["then"] == "close":
            assert candidates == set()
            assert (request.stage, request.outcome) == ("closed", "no_match")
            closed = AccessEvent.objects.get(action="family.request.triaged", object_id=request.pk)
            assert closed.actor.username == "coordinator"
        else:
            assert candidates == {spec["case"]} and request.case.legal_name == spec["case"]
            assert request.task is not None and request.task.case_id == request.case.pk


@pytest.mark.django_db
def test_seed_demo_adds_no_family_requests_without_notice_texts(settings):
    # As in a flushed (transactional) test database: the migrations' notices are gone.
    NoticeText.objects.all().delete()
    out = seed(settings)
    assert "Demo family requests: no notice texts to show, none added." in out
    assert Case.objects.count() == len(DEMO_CASES)
    assert not FamilyRequest.objects.exists() and not ConsentEvent.objects.exists()


@pytest.mark.django_db
def test_seed_demo_hands_over_and_relays_as_the_staff_would(settings):
    seed(settings)
    requests = demo_requests()
    handed = requests[spec_of("hand_over")["data"]["requester_phone"]]
    assert handed.stage == "handed" and handed.task.assignee.username == "caseworker2"
    relay = requests[spec_of("relay")["data"]["requester_phone"]]
    assert relay.stage == "relay" and relay.contact.case_id == relay.case.pk
    answer = ConsentEvent.objects.get(purpose="relay", counterpart=relay.contact)
    assert answer.decision == "granted" and answer.recorded_by.username == "caseworker"
    follow_up = Message.objects.select_related("thread__case__data_key").get(
        thread__contact=relay.contact
    )
    assert follow_up.direction == "from_contact" and follow_up.status == "pending"
    assert follow_up.body == spec_of("relay")["follow_up"]


@pytest.mark.django_db
def test_the_printed_demo_credentials_open_the_relay_request_status(settings):
    out = seed(settings)
    secrets = re.findall(r"[0-9A-Z]{5}(?:-[0-9A-Z]{5}){3}", out)
    assert len(secrets) == 1  # one demo request, no other secret
    line = next(line for line in out.splitlines() if secrets[0] in line)
    assert line.startswith("Demo family credentials (DEBUG only), for /contact/status/:")
    reference = re.search(r"FR-[0-9A-Z]{4}-[0-9A-Z]{4}", line).group()
    client = Client()
    opened = client.post("/contact/status/", {"reference": reference, "secret": secrets[0]})
    assert opened.status_code == 302
    page = client.get("/contact/status/")
    relay = demo_requests()[spec_of("relay")["data"]["requester_phone"]]
    # What a family sees depends only on the time since they wrote (PASSAGE_FAMILY_
    # RECEIVED_HOURS), never on the match: a request written a moment ago reads "received".
    assert page.context["req"].pk == relay.pk and page.context["state"] == "received"
