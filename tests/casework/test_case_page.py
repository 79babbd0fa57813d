"""The case page's forms (a note, a task, a checklist): plain markup, folded until opened,
with the same labels, errors tied to their fields, and the same choices as the forms
that check them (issue 14, item 3). Their query counts: tests/test_query_counts.py."""

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from casework import access
from casework.forms import NoteForm, TaskForm
from casework.models import Task
from tests.base import grant, login_verified, make_case, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(personas):
    """A Team A case the caseworker works on and the reader may only read."""
    c = make_case(personas.team, actor=personas.coordinator)
    grant(c, personas.caseworker, "work")
    grant(c, personas.reader, "view")
    return c


class Form(HTMLParser):
    """The controls of one <form> (by its action) and the labels of the page."""

    def __init__(self, action):
        super().__init__()
        self.action, self.inside = action, False
        self.controls, self.labels, self.options = [], {}, {}
        self._label, self._select = None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("action") == self.action
        elif tag == "label" and attrs.get("for"):
            self._label = attrs["for"]
            self.labels[self._label] = ""
        elif self.inside and tag in ("input", "textarea", "select"):
            self.controls.append(attrs)
            if tag == "select":
                self._select = attrs["name"]
                self.options[self._select] = []
        elif tag == "option" and self._select:
            self.options[self._select].append((attrs.get("value"), "selected" in attrs))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "label":
            self._label = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._label:
            self.labels[self._label] += data


def parse(html, action) -> Form:
    form = Form(action)
    form.feed(html)
    return form


def page(client, case, **kwargs):
    response = client.get(reverse("case_detail", args=[case.pk]), **kwargs)
    assert response.status_code == 200
    return response.content.decode()


def test_every_field_of_the_note_and_task_forms_has_its_label(case, personas):
    html = page(login_verified(Client(), personas.caseworker), case)
    for action, form_class in (("note_add", NoteForm), ("case_task_new", TaskForm)):
        form = parse(html, reverse(action, args=[case.pk]))
        visible = [c for c in form.controls if c.get("type") != "hidden"]
        names = [c["name"] for c in visible]
        assert names == [n for n in form_class().fields if n != "once"]  # in the form's order
        for control in visible:
            label = form.labels[control["id"]].strip().rstrip("*")
            assert label == str(form_class.base_fields[control["name"]].label)
    note = parse(html, reverse("note_add", args=[case.pk]))
    assert [c["name"] for c in note.controls if c.get("type") == "hidden"] == [
        "csrfmiddlewaretoken",
        "once",
    ]
    assert next(c for c in note.controls if c["name"] == "once")["value"]  # a fresh token


def test_the_forms_are_folded_until_opened(case, personas):
    html = page(login_verified(Client(), personas.caseworker), case)
    assert '<details class="mb-3"><summary>Add a note</summary>' in html
    assert "<details><summary>Add a task</summary>" in html


def test_a_note_with_an_error_comes_back_open_with_the_error_tied_to_its_field(case, personas):
    client = login_verified(Client(), personas.caseworker)
    response = client.post(reverse("note_add", args=[case.pk]), {"body": "x" * 20_001})
    assert response.status_code == 400
    html = response.content.decode()
    assert '<details class="mb-3" open><summary>Add a note</summary>' in html
    body = re.search(r"<textarea name=\"body\"[^>]*>", html).group(0)
    assert 'aria-invalid="true"' in body and 'aria-describedby="id_body_error"' in body
    error = re.search(r'<div id="id_body_error" class="invalid-feedback">([^<]*)</div>', html)
    assert "at most 20000 characters" in error.group(1).replace(",", "")
    assert "x" * 20_001 in html  # as typed


def test_a_task_with_errors_comes_back_as_typed_with_its_choices(case, personas):
    client = login_verified(Client(), personas.caseworker)
    response = client.post(
        reverse("case_task_new", args=[case.pk]),
        {
            "title": "",
            "details": "Bring <b>the</b> letter",
            "aim": "refuge",
            "priority": "0",
            "due_on": "not a date",
            "assignee": str(personas.reader.pk),
            "grant_access": "on",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    form = parse(html, reverse("case_task_new", args=[case.pk]))
    fields = {c["name"]: c for c in form.controls}
    assert fields["title"]["aria-describedby"] == "id_title_error"
    assert fields["due_on"]["aria-describedby"] == "id_due_on_error"
    assert fields["due_on"]["value"] == "not a date"
    assert "checked" in fields["grant_access"]
    assert ("refuge", True) in form.options["aim"]
    assert ("0", True) in form.options["priority"]
    assert (str(personas.reader.pk), True) in form.options["assignee"]
    assert "Bring &lt;b&gt;the&lt;/b&gt; letter" in html  # escaped, as typed
    assert not Task.objects.filter(case=case).exists()


def test_the_task_form_offers_the_teams_caseworkers_and_access_names_the_cases_own(case, personas):
    # A caseworker of another team named on the case, and an inactive one of Team A.
    personas.team.members.add(make_user("gone", "caseworker", is_active=False))
    grant(case, personas.other_caseworker, "work")
    html = page(login_verified(Client(), personas.coordinator), case)
    form = parse(html, reverse("case_task_new", args=[case.pk]))
    offered = [value for value, _selected in form.options["assignee"]]
    expected = [str(u.pk) for u in access.team_people(personas.team)]
    assert offered == ["", *expected]  # "Nobody yet", then Team A's active caseworkers
    assert str(personas.other_caseworker.pk) not in offered
    named = re.search(r"Caseworkers: ([^<]*)</p>", html).group(1)
    assert named == "Casey, Otto"  # named on the case, whatever their team


def test_the_task_form_assigns_through_the_plain_markup(case, personas):
    client = login_verified(Client(), personas.coordinator)
    response = client.post(
        reverse("case_task_new", args=[case.pk]),
        {
            "title": "Find housing",
            "aim": "support",
            "priority": "1",
            "assignee": personas.caseworker.pk,
        },
    )
    assert response.status_code == 302
    task = Task.objects.get(case=case)
    assert (task.title, task.assignee, task.priority) == ("Find housing", personas.caseworker, 1)


def test_a_read_only_grant_shows_no_forms(case, personas):
    html = page(login_verified(Client(), personas.reader), case)
    assert reverse("note_add", args=[case.pk]) not in html
    assert reverse("case_task_new", args=[case.pk]) not in html
    assert reverse("case_task_template", args=[case.pk]) not in html


def test_the_forms_read_in_persian_right_to_left(case, personas):
    client = login_verified(Client(), personas.caseworker)
    client.cookies["django_language"] = "fa"
    html = page(client, case, HTTP_ACCEPT_LANGUAGE="fa")
    assert 'dir="rtl"' in html
    note = parse(html, reverse("note_add", args=[case.pk]))
    assert note.labels["id_body"].strip().rstrip("*") == "یادداشت تازه"
    assert "New note" not in html


def test_a_user_s_rules_read_the_grants_when_the_query_runs(personas):
    """A rule built for a user object (a page asks for the same grants several times)
    reads the grant table when its query runs: a grant or a revocation made afterwards
    counts at once for that same object."""
    from guardian.shortcuts import remove_perm

    case = make_case(personas.team, actor=personas.coordinator)
    user = personas.other_caseworker
    visible = access.cases_for_user(user)
    assert not visible.filter(pk=case.pk).exists()
    grant(case, user, "work")
    assert visible.filter(pk=case.pk).exists()
    assert access.cases_for_user(user, access.CHANGE).filter(pk=case.pk).exists()
    remove_perm(access.CHANGE, user, case)
    remove_perm(access.VIEW, user, case)
    assert not visible.filter(pk=case.pk).exists()


def test_only_a_user_s_own_case_grants_count_never_a_group_s_or_a_global_one(personas):
    """access.granted_ids reads guardian's per-case user grants directly: a grant to a
    group the user is in, a model-wide permission and the superuser flag add nothing
    (SECURITY.md: guardian's defaults would let the last two in)."""
    from django.contrib.auth.models import Group, Permission
    from guardian.shortcuts import assign_perm

    case = make_case(personas.team, actor=personas.coordinator)
    user = personas.other_caseworker
    group = Group.objects.create(name="helpers")
    user.groups.add(group)
    assign_perm(access.CHANGE, group, case)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=[access.VIEW, access.CHANGE, access.WHEREABOUTS])
    )
    user.is_superuser = True
    user.save()
    assert not access.granted_cases(user, access.VIEW, access.CHANGE).exists()
    assert not access.cases_for_user(user).filter(pk=case.pk).exists()
    grant(case, user, "view")
    assert list(access.granted_cases(user, access.VIEW, access.CHANGE)) == [case]
