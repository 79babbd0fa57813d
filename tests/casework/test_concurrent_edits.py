"""No silent lost update (issue 13, item 1).

Reproduced from outside: two caseworkers open a case's edit form, A adds to the needs, B
(from the older form) changes the circumstances, and A's change was gone while both
saw "Saved". The same for whereabouts, task status, task assignment over a claim,
contacts and checklists. Every edit form now carries the version it was loaded from
(casework/versions.py); a stale save is refused (409) with who changed what, everything
typed kept, and the other person's change kept where the stale form had not touched it.
"""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from casework import queues, services
from casework.models import AccessEvent, Case, Task, TaskTemplate, Whereabouts
from contacts import services as contact_services
from contacts.models import Contact
from tests.base import form_state, grant, login_verified, make_case, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(personas):
    case = make_case(personas.team, actor=personas.coordinator, needs="Housing")
    services.access_grant(
        actor=personas.coordinator, case=case, user=personas.caseworker, level="whereabouts"
    )
    services.access_grant(
        actor=personas.coordinator, case=case, user=personas.caseworker, level="work"
    )
    return case


def case_form(case, **changes) -> dict:
    data = {
        "legal_name": case.legal_name,
        "other_names": "",
        "team": str(case.team_id),
        "risk": case.risk,
        "aims": case.aims,
        "circumstances": case.circumstances or "",
        "needs": case.needs or "",
        "safety_notes": case.safety_notes or "",
    }
    return {**data, **changes}


def open_edit(client, url):
    page = client.get(url)
    assert page.status_code == 200
    return form_state(page)


# --- Cases ------------------------------------------------------------------------------------------
def test_a_stale_case_edit_is_refused_and_keeps_both_changes(case, personas):
    url = reverse("case_edit", args=[case.pk])
    a = login_verified(Client(), personas.caseworker)
    b = login_verified(Client(), personas.coordinator)
    state_a, state_b = open_edit(a, url), open_edit(b, url)

    saved = a.post(url, case_form(case, needs="Housing, and a lawyer") | state_a)
    assert saved.status_code == 302
    stale = b.post(url, case_form(case, circumstances="Left in March") | state_b)
    assert stale.status_code == 409
    page = stale.content.decode()
    assert "Casey changed Needs" in page  # who, and which field (its label)
    assert stale.context["stale"]["taken"] == ["Needs"]
    form = stale.context["form"]
    # B's typing is kept; the field only A changed now holds A's saved text.
    assert form["circumstances"].value() == "Left in March"
    assert form["needs"].value() == "Housing, and a lawyer"
    fresh = Case.objects.get(pk=case.pk)
    assert fresh.needs == "Housing, and a lawyer" and not fresh.circumstances
    assert fresh.version == 2
    # Saving the page as shown applies both.
    again = b.post(url, {**form.data.dict(), "aims": form.data.getlist("aims")})
    assert again.status_code == 302
    fresh = Case.objects.get(pk=case.pk)
    assert (fresh.needs, fresh.circumstances) == ("Housing, and a lawyer", "Left in March")
    assert fresh.version == 3
    # The conflict page showed saved content: it is logged as a read.
    assert AccessEvent.objects.filter(
        action="case.viewed", actor=personas.coordinator, detail__page="edit_conflict"
    ).exists()


def test_both_changing_one_field_shows_the_saved_text_and_keeps_mine(case, personas):
    url = reverse("case_edit", args=[case.pk])
    a = login_verified(Client(), personas.caseworker)
    b = login_verified(Client(), personas.coordinator)
    state_a, state_b = open_edit(a, url), open_edit(b, url)
    a.post(url, case_form(case, needs="A's needs") | state_a)
    stale = b.post(url, case_form(case, needs="B's needs") | state_b)
    assert stale.status_code == 409
    assert stale.context["stale"]["conflicts"] == [("Needs", "A's needs")]
    assert stale.context["form"]["needs"].value() == "B's needs"
    assert Case.objects.get(pk=case.pk).needs == "A's needs"


def test_an_edit_form_without_its_version_saves_nothing(case, personas):
    url = reverse("case_edit", args=[case.pk])
    client = login_verified(Client(), personas.caseworker)
    for bad in ({}, {"version": "x"}, {"version": "-1"}, {"version": "1", "loaded": "forged"}):
        response = client.post(url, case_form(case, needs="changed") | bad)
        assert response.status_code == 200
        assert "This form is out of date" in response.content.decode()
    assert Case.objects.get(pk=case.pk).needs == "Housing"


# --- Whereabouts -------------------------------------------------------------------------------------
def whereabouts_page(client, case):
    page = client.post(reverse("whereabouts", args=[case.pk]), {"reason": "contact"})
    assert page.status_code == 200
    return form_state(page)


WHEREABOUTS = {
    "country": "Norway",
    "city": "Bergen",
    "address": "",
    "phone": "+47 555 0100",
    "email": "",
    "safe_contact": "",
    "code_word": "",
}


@pytest.fixture
def other(case, personas):
    """A second caseworker of the case, with the whereabouts grant."""
    colleague = make_user("caseworker7", "caseworker", first_name="Sam")
    personas.team.members.add(colleague)
    grant(case, colleague, "work")
    grant(case, colleague, "whereabouts")
    return colleague


def test_a_stale_whereabouts_form_never_puts_an_old_phone_back(case, personas, other):
    services.whereabouts_save(actor=personas.caseworker, case=case, data=WHEREABOUTS)
    a = login_verified(Client(), personas.caseworker)
    b = login_verified(Client(), other)
    state_a, state_b = whereabouts_page(a, case), whereabouts_page(b, case)
    url = reverse("whereabouts_edit", args=[case.pk])
    assert a.post(url, {**WHEREABOUTS, "phone": "+47 555 0199"} | state_a).status_code == 302
    stale = b.post(url, {**WHEREABOUTS, "city": "Oslo"} | state_b)
    assert stale.status_code == 409
    assert stale.context["edit_form"]["phone"].value() == "+47 555 0199"
    assert stale.context["edit_form"]["city"].value() == "Oslo"
    place = Whereabouts.objects.get(case=case)
    assert (place.phone, place.city) == ("+47 555 0199", "Bergen")
    # The comparison read the whereabouts: logged as such.
    assert AccessEvent.objects.filter(
        action="whereabouts.viewed", actor=other, detail__reason="edit_conflict"
    ).exists()


def test_two_first_whereabouts_saves_make_one_row_and_one_refusal(case, personas, other):
    a = login_verified(Client(), personas.caseworker)
    b = login_verified(Client(), other)
    state_a, state_b = whereabouts_page(a, case), whereabouts_page(b, case)
    assert state_a["version"] == "0"
    url = reverse("whereabouts_edit", args=[case.pk])
    assert a.post(url, WHEREABOUTS | state_a).status_code == 302
    assert b.post(url, {**WHEREABOUTS, "city": "Oslo"} | state_b).status_code == 409
    assert Whereabouts.objects.filter(case=case).count() == 1
    assert Whereabouts.objects.get(case=case).city == "Bergen"


# --- Tasks -----------------------------------------------------------------------------------------------
@pytest.fixture
def task(case, personas):
    return queues.task_create(
        actor=personas.coordinator, case=case, title="Call the lawyer", aim="refuge"
    )


def test_a_stale_status_never_undoes_done(task, personas):
    url = reverse("task_status", args=[task.pk])
    a = login_verified(Client(), personas.caseworker)
    b = login_verified(Client(), personas.coordinator)
    assert a.post(url, {"status": "done", "version": 1}).status_code == 302
    stale = b.post(url, {"status": "in_progress", "version": 1}, HTTP_HX_REQUEST="true")
    assert stale.status_code == 200
    assert "changed this task since your page showed it" in stale.content.decode()
    assert Task.objects.get(pk=task.pk).status == "done"
    # Without htmx: the same refusal as a message, nothing changed.
    page = b.post(url, {"status": "in_progress", "version": 1}, follow=True)
    assert "your change was not made" in page.content.decode()
    assert Task.objects.get(pk=task.pk).status == "done"
    assert AccessEvent.objects.filter(action="task.status_changed").count() == 1


def test_an_assignment_from_an_old_page_never_overwrites_a_claim(task, personas):
    page = login_verified(Client(), personas.coordinator).get(
        reverse("task_detail", args=[task.pk])
    )
    version = form_state(page)["version"]
    claimant = login_verified(Client(), personas.caseworker)
    assert claimant.post(reverse("task_claim", args=[task.pk])).status_code == 302
    coordinator = login_verified(Client(), personas.coordinator)
    refused = coordinator.post(
        reverse("task_assign", args=[task.pk]),
        {"assignee": personas.reader.pk, "version": version},
        follow=True,
    )
    assert "Nothing was assigned" in refused.content.decode()
    assert Task.objects.get(pk=task.pk).assignee == personas.caseworker
    # The board's bulk form too.
    board = coordinator.post(
        reverse("board_assign"),
        {"tasks": [task.pk], "assignee": personas.reader.pk, f"version-{task.pk}": version},
        follow=True,
    )
    assert "Nothing was assigned" in board.content.decode()
    assert Task.objects.get(pk=task.pk).assignee == personas.caseworker


def test_the_board_shows_each_tasks_version(task, personas):
    page = login_verified(Client(), personas.coordinator).get(reverse("board"))
    assert f'name="version-{task.pk}" value="1"' in page.content.decode()


# --- Contacts and checklists -------------------------------------------------------------------------------
def test_a_stale_contact_edit_is_refused_and_keeps_the_typing(case, personas):
    contact = contact_services.contact_save(
        actor=personas.caseworker,
        case=case,
        data={"kind": "family", "name": "Aunt", "phone": "+98 21 555 0100"},
    )
    url = reverse("contact_edit", args=[case.pk, contact.pk])
    a = login_verified(Client(), personas.caseworker)
    b = login_verified(Client(), personas.coordinator)
    state_a, state_b = open_edit(a, url), open_edit(b, url)
    base = {"kind": "family", "name": "Aunt", "phone": "+98 21 555 0100"}
    assert a.post(url, {**base, "phone": "+98 21 555 0199"} | state_a).status_code == 302
    stale = b.post(url, {**base, "notes": "Calls on Sundays"} | state_b)
    assert stale.status_code == 409
    assert stale.context["form"]["notes"].value() == "Calls on Sundays"
    assert stale.context["form"]["phone"].value() == "+98 21 555 0199"
    assert Contact.objects.get(pk=contact.pk).phone == "+98 21 555 0199"


def test_a_stale_checklist_save_is_refused(personas):
    from tests.casework.test_queues import checklist_post

    template = TaskTemplate.objects.get(name="Counselling and support")
    url = reverse("task_template_edit", args=[template.pk])
    a = login_verified(Client(), personas.coordinator)
    b = login_verified(Client(), personas.other_coordinator)
    old = checklist_post(template, add=["Peer group"])
    assert a.post(url, checklist_post(template, aim="refuge")).status_code == 302
    stale = b.post(url, old)
    assert stale.status_code == 409
    assert "Cora changed Aim" in stale.content.decode()
    assert 'value="Peer group"' in stale.content.decode()  # the typing is kept
    template.refresh_from_db()
    assert template.aim == "refuge" and not template.items.filter(title="Peer group").exists()


# --- Real concurrency (PostgreSQL): the lock decides, not luck ------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_saves_of_one_version_at_once_one_wins(personas):
    if connection.vendor != "postgresql":
        pytest.skip("threads need a server database (CI runs this on PostgreSQL)")
    from django.db import connections

    from casework.versions import StaleEdit

    case = make_case(personas.team, actor=personas.coordinator)
    outcomes, barrier = [], threading.Barrier(2)

    def save(needs):
        try:
            barrier.wait()
            services.case_update(
                actor=personas.coordinator, case=case, data={"needs": needs}, version=1
            )
            outcomes.append("saved")
        except StaleEdit:
            outcomes.append("stale")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(n,)) for n in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["saved", "stale"]
    assert Case.objects.get(pk=case.pk).version == 2
