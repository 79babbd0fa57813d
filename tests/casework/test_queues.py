import datetime
import threading

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from casework import access, queues
from casework.models import AccessEvent, Priority, Task, TaskEvent, TaskStatus, TaskTemplate
from casework.tasks import send_daily_reminders
from tests.base import grant, login_verified, make_case, make_user

pytestmark = pytest.mark.django_db
TODAY = timezone.localdate()
CANARY = "Persephone Canarywood"


def day(n):
    return TODAY + datetime.timedelta(days=n)


@pytest.fixture
def case(personas):
    c = make_case(personas.team, actor=personas.coordinator, name=CANARY)
    grant(c, personas.caseworker, "work")
    return c


def new_task(case, actor, title="Task", **kw):
    return queues.task_create(
        actor=actor, case=case, title=title, aim=kw.pop("aim", "support"), **kw
    )


def test_my_queue_puts_urgent_and_overdue_first_then_due_date(case, personas):
    cw = personas.caseworker
    later = new_task(case, cw, "later", due_on=day(10), assignee=cw)
    undated = new_task(case, cw, "undated", assignee=cw)
    soon = new_task(case, cw, "soon", due_on=day(2), assignee=cw)
    overdue = new_task(case, cw, "overdue", due_on=day(-3), assignee=cw)
    urgent = new_task(case, cw, "urgent", due_on=day(20), priority=Priority.URGENT, assignee=cw)
    done = new_task(case, cw, "done", due_on=day(-9), assignee=cw)
    queues.task_set_status(actor=cw, task=done, status=TaskStatus.DONE)
    assert [t.title for t in queues.my_queue(cw)] == [
        "overdue",
        "urgent",
        "soon",
        "later",
        "undated",
    ]
    html = login_verified(Client(), cw).get(reverse("my_queue")).content.decode()
    assert html.index("overdue</bdi>") < html.index("soon</bdi>") and "done</bdi>" not in html
    assert 'class="table-danger"' in html  # overdue marked
    assert {later, undated, soon, overdue, urgent}


def test_claiming_the_same_task_twice_one_wins_the_other_is_told(case, personas):
    second = make_user("caseworker2b", "caseworker")
    personas.team.members.add(second)
    grant(case, second, "work")
    task = new_task(case, personas.coordinator, "shared")
    first_client, second_client = (
        login_verified(Client(), personas.caseworker),
        login_verified(Client(), second),
    )
    url = reverse("task_claim", args=[task.pk])
    assert (
        first_client.post(url, HTTP_HX_REQUEST="true").content.decode().count("Claimed by you") == 1
    )
    lost = second_client.post(url, follow=True)
    assert "Someone else claimed this task" in lost.content.decode()
    assert Task.objects.get(pk=task.pk).assignee == personas.caseworker
    assert TaskEvent.objects.filter(task=task, kind="claimed").count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_claims_on_the_database_exactly_one_wins(personas):
    if connection.vendor != "postgresql":
        pytest.skip("threads need a server database (CI runs this on PostgreSQL)")
    c = make_case(personas.team, actor=personas.coordinator)
    others = [make_user(f"racer{i}", "caseworker") for i in range(4)]
    personas.team.members.add(*others)
    for user in others:
        grant(c, user, "work")
    task = new_task(c, personas.coordinator, "race")
    results, barrier = [], threading.Barrier(len(others))

    def claim(user):
        try:
            fresh = Task.objects.select_related("case__data_key").get(pk=task.pk)
            barrier.wait()
            results.append(queues.task_claim(actor=user, task=fresh))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(u,)) for u in others]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [False, False, False, True]
    assert Task.objects.get(pk=task.pk).assignee in others


def test_claim_works_without_javascript(case, personas):
    task = new_task(case, personas.coordinator, "plain")
    client = login_verified(Client(), personas.caseworker)
    response = client.post(reverse("task_claim", args=[task.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("team_queue")
    assert Task.objects.get(pk=task.pk).assignee == personas.caseworker


def test_tasks_go_only_to_members_of_the_case_team(case, personas):
    task = new_task(case, personas.coordinator)
    with pytest.raises(Exception, match="not a caseworker of the team"):
        queues.task_assign(
            actor=personas.coordinator, tasks=[task], assignee=personas.other_caseworker
        )
    assert Task.objects.get(pk=task.pk).assignee is None


def test_assigning_someone_without_access_asks_for_a_grant_in_the_same_step(case, personas):
    newcomer = make_user("newcomer", "caseworker")
    personas.team.members.add(newcomer)
    task = new_task(case, personas.coordinator)
    client = login_verified(Client(), personas.coordinator)
    url = reverse("task_assign", args=[task.pk])
    refused = client.post(url, {"assignee": newcomer.pk, "version": 1}, follow=True)
    assert "cannot see the case yet" in refused.content.decode()
    assert Task.objects.get(pk=task.pk).assignee is None
    assert not access.rights_of(newcomer, case).view
    client.post(url, {"assignee": newcomer.pk, "grant_access": "on", "version": 1})
    assert Task.objects.get(pk=task.pk).assignee == newcomer
    assert access.rights_of(newcomer, case).work
    granted = AccessEvent.objects.get(action="access.granted")
    assert granted.detail["user"] == str(newcomer.pk) and granted.actor == personas.coordinator


def test_a_caseworker_cannot_widen_access_by_assigning(case, personas):
    newcomer = make_user("newcomer", "caseworker")
    personas.team.members.add(newcomer)
    task = new_task(case, personas.caseworker)
    with pytest.raises(queues.AccessNeeded):
        queues.task_assign(
            actor=personas.caseworker, tasks=[task], assignee=newcomer, grant_access=True
        )
    assert not access.rights_of(newcomer, case).view


def test_bulk_assignment_on_the_board(case, personas):
    tasks = [new_task(case, personas.coordinator, f"t{i}") for i in range(3)]
    client = login_verified(Client(), personas.coordinator)
    response = client.post(
        reverse("board_assign"),
        {
            "tasks": [t.pk for t in tasks[:2]],
            "assignee": personas.caseworker.pk,
            **{f"version-{t.pk}": t.version for t in tasks},
        },
    )
    assert response.status_code == 302
    assert [Task.objects.get(pk=t.pk).assignee for t in tasks] == [
        personas.caseworker,
        personas.caseworker,
        None,
    ]
    assert AccessEvent.objects.filter(action="task.assigned").count() == 2


def test_board_groups_by_assignee_with_counts(case, personas):
    cw = personas.caseworker
    new_task(case, cw, "a", due_on=day(-1), assignee=cw)
    new_task(case, cw, "b", due_on=day(3), assignee=cw)
    new_task(case, cw, "c")
    response = login_verified(Client(), personas.coordinator).get(reverse("board"))
    groups = {g["assignee"]: g for g in response.context["groups"]}
    assert (groups[cw]["open"], groups[cw]["overdue"], groups[cw]["week"]) == (2, 1, 1)
    assert groups[None]["open"] == 1
    filtered = login_verified(Client(), personas.coordinator).get(reverse("board") + "?due=overdue")
    assert filtered.context["total"] == 1
    assert login_verified(Client(), personas.caseworker).get(reverse("board")).status_code == 403


def test_every_change_leaves_history_and_an_access_event(case, personas):
    cw = personas.caseworker
    task = new_task(case, personas.coordinator, "x")
    queues.task_assign(actor=personas.coordinator, tasks=[task], assignee=cw)
    queues.task_set_status(actor=cw, task=task, status=TaskStatus.IN_PROGRESS)
    queues.task_comment(actor=cw, task=task, comment="phoned " + CANARY)
    kinds = list(task.history.values_list("kind", flat=True))
    assert kinds == ["created", "assigned", "status", "commented"]
    actions = list(
        AccessEvent.objects.filter(object_id=str(task.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["task.created", "task.assigned", "task.status_changed", "task.commented"]
    assert CANARY not in str(list(AccessEvent.objects.values_list("detail", flat=True)))


def test_checklist_creates_tasks_due_relative_to_today(case, personas):
    template = TaskTemplate.objects.get(name="Resettlement checklist")
    client = login_verified(Client(), personas.caseworker)
    client.post(reverse("case_task_template", args=[case.pk]), {"template": template.pk})
    titles = {t.title: t.due_on for t in Task.objects.filter(case=case)}
    assert titles["Residence-permit appointment"] == day(7)
    assert titles["Language course"] == day(30)
    assert len(titles) == 6


def test_coordinators_edit_checklists(personas):
    client = login_verified(Client(), personas.coordinator)
    template = TaskTemplate.objects.get(name="Counselling and support")
    url = reverse("task_template_edit", args=[template.pk])
    page = client.get(url)
    assert page.status_code == 200
    items = list(template.items.all())
    data = {
        "name": template.name,
        "aim": template.aim,
        "active": "on",
        "version": template.version,
        "items-TOTAL_FORMS": str(len(items) + 1),
        "items-INITIAL_FORMS": str(len(items)),
        "items-MIN_NUM_FORMS": "0",
        "items-MAX_NUM_FORMS": "1000",
    }
    for i, item in enumerate(items):
        data.update(
            {
                f"items-{i}-id": item.pk,
                f"items-{i}-template": template.pk,
                f"items-{i}-title": item.title,
                f"items-{i}-priority": item.priority,
                f"items-{i}-due_in_days": item.due_in_days,
                f"items-{i}-position": item.position,
            }
        )
    n = len(items)
    data.update(
        {
            f"items-{n}-title": "Peer group",
            f"items-{n}-priority": 2,
            f"items-{n}-due_in_days": 10,
            f"items-{n}-position": 9,
            f"items-{n}-template": template.pk,
        }
    )
    assert client.post(url, data).status_code == 302
    assert template.items.filter(title="Peer group").exists()
    assert login_verified(Client(), personas.caseworker).get(url).status_code == 403


def checklist_post(template, *, add=(), delete=(), **fields):
    """The checklist page's form as a browser posts it: its items, some to delete, new ones."""
    items = list(template.items.all()) if template.pk else []
    data = {
        "name": template.name,
        "aim": template.aim,
        "active": "on",
        "items-TOTAL_FORMS": str(len(items) + len(add)),
        "items-INITIAL_FORMS": str(len(items)),
        "items-MIN_NUM_FORMS": "0",
        "items-MAX_NUM_FORMS": "1000",
        **({"version": template.version} if template.pk else {}),
        **fields,
    }
    rows = [
        {
            "id": item.pk,
            "title": item.title,
            "priority": item.priority,
            "due_in_days": item.due_in_days,
            "position": item.position,
            **({"DELETE": "on"} if item.title in delete else {}),
        }
        for item in items
    ] + [{"title": title, "priority": 2, "due_in_days": 10, "position": 9} for title in add]
    for i, row in enumerate(rows):
        data.update({f"items-{i}-{k}": v for k, v in row.items()})
        if template.pk:
            data[f"items-{i}-template"] = template.pk
    return data


def test_a_checklist_edit_writes_its_access_event(personas):
    client = login_verified(Client(), personas.coordinator)
    template = TaskTemplate.objects.get(name="Counselling and support")
    first = template.items.first()
    url = reverse("task_template_edit", args=[template.pk])
    data = checklist_post(template, add=["Peer group"], delete=[first.title], aim="refuge")
    assert client.post(url, data).status_code == 302
    assert set(template.items.values_list("title", flat=True)) >= {"Peer group"}
    assert not template.items.filter(pk=first.pk).exists()
    event = AccessEvent.objects.get(action="checklist.updated")
    assert event.actor == personas.coordinator
    assert (event.object_type, event.object_id) == ("tasktemplate", str(template.pk))
    assert event.fields == ["aim"]
    assert event.detail == {"items_added": 1, "items_changed": 0, "items_removed": 1, "version": 2}
    assert "Peer group" not in str(event.detail)


def test_a_new_checklist_writes_its_access_event(personas):
    client = login_verified(Client(), personas.coordinator)
    data = checklist_post(TaskTemplate(name="Housing", aim="resettlement"), add=["Viewing"])
    assert client.post(reverse("task_template_new"), data).status_code == 302
    template = TaskTemplate.objects.get(name="Housing")
    assert list(template.items.values_list("title", flat=True)) == ["Viewing"]
    event = AccessEvent.objects.get(action="checklist.created")
    assert event.object_id == str(template.pk)
    assert event.detail == {"items_added": 1, "items_changed": 0, "items_removed": 0, "version": 1}


def test_an_unchanged_checklist_writes_nothing(personas):
    client = login_verified(Client(), personas.coordinator)
    template = TaskTemplate.objects.get(name="Counselling and support")
    url = reverse("task_template_edit", args=[template.pk])
    assert client.post(url, checklist_post(template)).status_code == 302
    assert not AccessEvent.objects.filter(action__startswith="checklist.").exists()


def test_only_coordinators_edit_checklists_through_the_service(personas):
    template = TaskTemplate.objects.get(name="Counselling and support")
    with pytest.raises(PermissionDenied):
        queues.template_save(
            actor=personas.caseworker, template=template, data={"name": "x"}, items=[]
        )
    assert TaskTemplate.objects.get(pk=template.pk).name == "Counselling and support"


def test_daily_job_run_twice_sends_each_email_once_without_names(case, personas):
    cw, coord = personas.caseworker, personas.coordinator
    cw.email, coord.email = "cw@example.org", "coord@example.org"
    cw.save()
    coord.save()
    new_task(case, coord, "Meet " + CANARY, due_on=day(0), assignee=cw)
    new_task(case, coord, "Call " + CANARY, due_on=day(-2), assignee=cw)
    stale = new_task(case, coord, "Unassigned " + CANARY)
    Task.objects.filter(pk=stale.pk).update(created_at=timezone.now() - datetime.timedelta(days=10))
    send_daily_reminders()
    send_daily_reminders()
    assert sorted(m.to[0] for m in mail.outbox) == ["coord@example.org", "cw@example.org"]
    by_to = {m.to[0]: m for m in mail.outbox}
    assert (
        "1 due today" in by_to["cw@example.org"].subject
        and "1 overdue" in by_to["cw@example.org"].subject
    )
    assert "caseworker: 1" in by_to["coord@example.org"].body
    assert "older than 3 days: 1" in by_to["coord@example.org"].body
    for message in mail.outbox:
        text = message.subject + message.body
        assert CANARY not in text and "Canarywood" not in text and case.reference not in text


def test_queue_and_board_queries_stay_flat(case, personas):
    cw = personas.caseworker
    pages = [
        (login_verified(Client(), cw), reverse("my_queue")),
        (login_verified(Client(), cw), reverse("team_queue")),
        (login_verified(Client(), personas.coordinator), reverse("board")),
    ]
    for client, url in pages:
        client.get(url)  # warm up: session save, content types
    counts = {}
    for n in (5, 50):
        while Task.objects.count() < n:
            i = Task.objects.count()
            other = make_case(personas.team, actor=personas.coordinator, name=f"P{i}")
            grant(other, cw, "work")
            new_task(
                other,
                personas.coordinator,
                f"t{i}",
                due_on=day(i % 7 - 3),
                assignee=cw if i % 2 else None,
            )
        for client, url in pages:
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200
            counts.setdefault(url, []).append(len(ctx.captured_queries))
    # my queue: session, user, roles, visible cases + tasks with their cases and keys (one
    # query), count for the pager; board: the same with assignees, plus the people list.
    for url, (small, large) in counts.items():
        assert small == large, (url, small, large)


def test_a_sealed_case_keeps_its_tasks_off_the_board_and_team_queue(case, personas):
    from casework import services as case_services

    new_task(case, personas.coordinator, "sealed-secret-title")
    second = make_user("coordinator9", "coordinator")
    personas.team.coordinators.add(second)
    case_services.case_seal(actor=personas.coordinator, case=case, sealed=True)
    assert not queues.board_tasks(second).exists()
    assert queues.board_tasks(personas.coordinator).exists()  # named by sealing it
    outsider = make_user("cw-team", "caseworker")
    personas.team.members.add(outsider)
    assert not queues.team_queue(outsider).exists()


def test_a_coordinator_not_named_on_a_sealed_case_cannot_reassign_its_tasks(case, personas):
    """Found from outside: the board's bulk assignment took tasks by team and reassigned
    a sealed case's tasks for a coordinator who gets 404 on them. The board now assigns
    only the tasks it shows, with the same rights."""
    from casework import services as case_services

    task = new_task(case, personas.coordinator, "sealed-secret-title")
    second = make_user("coordinator9", "coordinator")
    personas.team.coordinators.add(second)
    case_services.case_seal(actor=personas.coordinator, case=case, sealed=True)
    client = login_verified(Client(), second)
    assert client.get(reverse("task_detail", args=[task.pk])).status_code == 404
    bulk = client.post(
        reverse("board_assign"),
        {"tasks": [task.pk], "assignee": personas.caseworker.pk, f"version-{task.pk}": 1},
    )
    assert bulk.status_code == 302
    single = client.post(
        reverse("task_assign", args=[task.pk]), {"assignee": personas.caseworker.pk, "version": 1}
    )
    assert single.status_code == 404
    assert Task.objects.get(pk=task.pk).assignee is None
    assert not AccessEvent.objects.filter(action="task.assigned").exists()
    with pytest.raises(PermissionDenied):  # the service refuses it too
        queues.task_assign(actor=second, tasks=[task], assignee=personas.caseworker)
    # The coordinator named on it (by sealing) still can.
    named = login_verified(Client(), personas.coordinator)
    named.post(
        reverse("board_assign"),
        {"tasks": [task.pk], "assignee": personas.caseworker.pk, f"version-{task.pk}": 1},
    )
    assert Task.objects.get(pk=task.pk).assignee == personas.caseworker


def test_reading_a_queue_is_logged(case, personas):
    new_task(case, personas.coordinator, "logged", assignee=personas.caseworker)
    login_verified(Client(), personas.caseworker).get(reverse("my_queue"))
    login_verified(Client(), personas.coordinator).get(reverse("board"))
    pages = [
        e.detail["page"] for e in AccessEvent.objects.filter(action="task.listed").order_by("seq")
    ]
    assert pages == ["my_queue", "board"]


def test_opening_a_task_is_logged(case, personas):
    task = new_task(case, personas.coordinator, "opened", assignee=personas.caseworker)
    login_verified(Client(), personas.caseworker).get(reverse("task_detail", args=[task.pk]))
    assert AccessEvent.objects.filter(action="task.viewed", object_id=str(task.pk)).count() == 1
