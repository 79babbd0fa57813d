"""The demo data as every persona sees it: every object id substituted into every URL.

What an outside crawl does with the demo site: for every persona and every case, task,
family request and the objects under them, the rights object, the lists and the pages
must agree (in a list <=> the rights say view <=> the detail page answers 200), and
every URL naming an object the persona may not see answers 404, on GET and on POST.
"""

import io

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from casework import access
from casework.models import Attachment, Case, Role, Task, Team
from contacts.models import ConsentEvent, Contact, DoNotDisclose, Message
from families import access as family_access
from families.models import Disclosure, FamilyRequest
from tests.base import grant, login_verified, make_team, make_user, url_params

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings):
    """The demo site, and the personas it lacks: a coordinator of an empty team, a
    caseworker of no team, a read-only caseworker, a superuser."""
    settings.DEBUG = True
    call_command("seed_demo", stdout=io.StringIO())
    users = {u.username: u for u in access.User.objects.all()}
    users["lonely"] = make_user("lonely", Role.COORDINATOR)
    make_team("Empty team", coordinators=[users["lonely"]])
    users["stranger"] = make_user("stranger", Role.CASEWORKER)
    users["reader"] = make_user("reader", Role.CASEWORKER)
    first = Case.objects.order_by("reference").first()
    Team.objects.get(pk=first.team_id).members.add(users["reader"])
    grant(first, users["reader"], "view")
    users["root"] = make_user("root", None, is_superuser=True, is_staff=True)
    return users


def fresh(model, pk):
    return model.objects.get(pk=pk)


def sees_case(user, case_id) -> bool:
    return access.rights_of(user, fresh(Case, case_id)).view


def sees_request(user, request_id) -> bool:
    return family_access.rights_of(user, fresh(FamilyRequest, request_id)).view


def objects():
    """(url kwargs, who may see it) for every object a case-scoped URL can name."""
    for case in Case.objects.all():
        yield {"pk": case.pk}, ("case", case.pk)
    for a in Attachment.objects.all():
        yield {"pk": a.case_id, "attachment_pk": a.pk}, ("case", a.case_id)
    for c in Contact.objects.all():
        yield {"pk": c.case_id, "contact_pk": c.pk}, ("case", c.case_id)
    for e in ConsentEvent.objects.all():
        yield {"pk": e.case_id, "event_pk": e.pk}, ("case", e.case_id)
    for d in DoNotDisclose.objects.all():
        yield {"pk": d.case_id, "entry_pk": d.pk}, ("case", d.case_id)
    for m in Message.objects.select_related("thread"):
        yield {"pk": m.thread.case_id, "message_pk": m.pk}, ("case", m.thread.case_id)
    for t in Task.objects.all():
        yield {"task_pk": t.pk}, ("case", t.case_id)
    for fr in FamilyRequest.objects.all():
        yield {"request_pk": fr.pk}, ("request", fr.pk)
    for d in Disclosure.objects.all():
        yield {"disclosure_pk": d.pk}, ("request", d.request_id)


def urls_for(kwargs) -> list[tuple[str, str]]:
    """(name, URL) of every URL pattern whose parameters are exactly these."""
    return [
        (name, reverse(name, kwargs=kwargs))
        for name, params in sorted(url_params().items())
        if set(params) == set(kwargs)
    ]


def absent_for_viewers(name, kwargs) -> bool:
    """A 404 that is not about access: the consent event has no scan to download."""
    if name != "consent_scan":
        return False
    return not ConsentEvent.objects.get(pk=kwargs["event_pk"]).scan_blob


def test_every_object_url_answers_404_to_everyone_who_may_not_see_it(demo):
    crawled = refused = 0
    clients = {name: login_verified(Client(), user) for name, user in demo.items()}
    for kwargs, (kind, owner) in objects():
        urls = urls_for(kwargs)
        assert urls, kwargs
        for name, user in demo.items():
            sees = sees_case(user, owner) if kind == "case" else sees_request(user, owner)
            for url_name, url in urls:
                crawled += 1
                get = clients[name].get(url).status_code
                if sees:
                    expected = {404} if absent_for_viewers(url_name, kwargs) else set()
                    assert get not in {404, 500} - expected, (name, url_name, get)
                    continue
                refused += 1
                post = clients[name].post(url, {}).status_code
                assert (get, post) == (404, 404), (name, url_name, get, post)
    assert refused > 100 and crawled > refused  # the crawl reached both sides


def listed(client) -> dict:
    """What the persona's lists show: cases, tasks, family requests."""
    found = {"case": set(), "task": set(), "request": set()}
    response = client.get(reverse("case_list"))
    if response.status_code == 200:
        found["case"] = {c.pk for c in response.context["rows"]}
    for name in ("my_queue", "team_queue"):
        response = client.get(reverse(name))
        if response.status_code == 200:
            found["task"] |= {t.pk for t in response.context["tasks"]}
    response = client.get(reverse("board"))
    if response.status_code == 200:
        found["task"] |= {t.pk for g in response.context["groups"] for t in g["tasks"]}
    response = client.get(reverse("family_triage"))
    if response.status_code == 200:
        found["request"] |= {fr.pk for fr in response.context["rows"]}
    for case_id in found["case"]:
        response = client.get(reverse("case_detail", args=[case_id]))
        for panel in response.context["panels"]:
            found["request"] |= {fr.pk for fr in panel.get("requests", [])}
        found["task"] |= {t.pk for t in response.context["tasks"]}
    return found


def test_listed_iff_the_rights_say_view_iff_the_page_opens(demo):
    """Tasks count as listed on the case page too; requests on triage (while in triage)
    or on the case page's panel (once handed)."""
    for name, user in demo.items():
        client = login_verified(Client(), user)
        shown = listed(client)
        for case in Case.objects.all():
            sees = sees_case(user, case.pk)
            opens = client.get(reverse("case_detail", args=[case.pk])).status_code
            assert (case.pk in shown["case"], opens) == (sees, 200 if sees else 404), (
                name,
                case.reference,
            )
        for task in Task.objects.all():
            sees = sees_case(user, task.case_id)
            opens = client.get(reverse("task_detail", args=[task.pk])).status_code
            assert (task.pk in shown["task"], opens) == (sees, 200 if sees else 404), name
        for fr in FamilyRequest.objects.all():
            sees = sees_request(user, fr.pk)
            opens = client.get(reverse("family_request", args=[fr.pk])).status_code
            if sees and fr.stage == FamilyRequest.Stage.CLOSED:
                # A closed request is on no list (triage is for open ones); it opens.
                assert opens == 200, (name, fr.reference)
                continue
            assert (fr.pk in shown["request"], opens) == (sees, 200 if sees else 404), (
                name,
                fr.reference,
                fr.stage,
            )


def test_the_demo_people_see_what_their_work_needs(demo):
    """The answers the two tests above agree on, pinned for the demo personas."""
    triage_team = Team.objects.get(family_triage=True)
    coordinator = demo["coordinator"]
    assert triage_team.coordinators.filter(pk=coordinator.pk).exists()
    unmatched = [
        fr
        for fr in FamilyRequest.objects.exclude(stage=FamilyRequest.Stage.CLOSED)
        if not fr.candidates.exists()
    ]
    assert unmatched  # the demo has a request that matched nobody
    for fr in unmatched:
        assert sees_request(coordinator, fr.pk)
        for name in ("lonely", "stranger", "reader", "caseworker", "admin", "auditor", "root"):
            assert not sees_request(demo[name], fr.pk), name
    for name in ("admin", "auditor", "root", "stranger", "lonely"):
        assert not access.cases_for_user(demo[name]).exists(), name
    assert list(access.cases_for_user(demo["reader"])) == [
        Case.objects.order_by("reference").first()
    ]
