"""The rights matrix: one expected answer per persona per staff URL (SECURITY.md cases
10-13), the sealed case, and list <=> rights <=> detail for every object of one world.

The world is built once for the module, through the services, inside a transaction that
is rolled back at the end; every test runs in a savepoint inside it (pytest-django's
`db`), so the GETs here (which write access events and sessions) leave nothing behind.

Where the table and the rules disagree on something that is a security defect, the cell
is a strict xfail naming the defect (none at the time of writing): fix the code, then
drop the mark.
"""

import datetime

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.http import Http404
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.utils import timezone
from django_otp_webauthn.models import WebAuthnCredential

from casework import access, queues, services
from casework.models import AccessEvent, Attachment, BreakGlass, Case, Task, TaskTemplate
from contacts import services as contact_services
from families import access as family_access
from families import services as family_services
from families.models import Disclosure, FamilyRequest
from tests.base import (
    Personas,
    consent_to_relay,
    login_verified,
    make_case,
    url_params,
    url_patterns,
)
from tests.families.test_staff import consenting_case, submit

pytestmark = pytest.mark.django_db

NAME_A = "Quetzalcoatl Vandersnoot"  # the person of the open Team A case
NAME_S = "Zebulon Farquharson"  # the person of the sealed Team A case
NAME_B = "Ottilie Brandvold"  # the person of the Team B case
NAME_NOBODY = "Wilhelmina Nobodyknows"  # sought by the request that matches no case

PERSONAS = [
    "anonymous",
    "coordinator",
    "other_coordinator",
    "caseworker",
    "reader",
    "other_caseworker",
    "auditor",
    "administrator",
    "superuser",
]
STAFF = PERSONAS[1:]


# --- The world ------------------------------------------------------------------------------
def _furnish(case, actor, tag):
    """One object of every kind a case-scoped URL names, made by the case's caseworker."""
    note = services.note_add(
        actor=actor,
        case=case,
        body=f"{tag}: first contact",
        restricted=False,
        upload=SimpleUploadedFile("scan.pdf", b"%PDF-1.4 data", content_type="application/pdf"),
    )
    contact = contact_services.contact_save(
        actor=actor,
        case=case,
        data={"kind": "family", "name": f"Sister {tag}", "relationship": "sister"},
    )
    event = consent_to_relay(
        case, actor, contact, scan=SimpleUploadedFile("consent.pdf", b"%PDF signed")
    )
    entry = contact_services.do_not_disclose_add(
        actor=actor,
        case=case,
        data={"name": f"Elder {tag}", "phone": "", "email": "", "note": ""},
    )
    message = contact_services.message_submit(
        actor=actor, case=case, contact=contact, direction="to_contact", body="hello"
    )
    # Unassigned: it waits in the team queue.
    task = queues.task_create(actor=actor, case=case, title=f"{tag}: call back", aim="support")
    return {
        "case": case,
        "note": note,
        "attachment": Attachment.objects.get(note=note),
        "contact": contact,
        "event": event,
        "entry": entry,
        "message": message,
        "task": task,
    }


def _hand_over_with_disclosure(p, case, name):
    """A request matched to `case`, handed to it by the coordinator, answered "share
    contact details" by the caseworker: a disclosure waits for the second person."""
    fr, _secret = submit(names=(name,))
    assert list(fr.candidates.values_list("case_id", flat=True)) == [case.pk]
    task = family_services.triage_hand_over(actor=p.coordinator, family_request=fr, case=case)
    fr = FamilyRequest.objects.select_related("data_key", "case__data_key").get(pk=fr.pk)
    family_services.record_answer(
        actor=p.caseworker,
        family_request=fr,
        answer="share_contact",
        method="in_person",
        details="An e-mail address agreed with the person.",
    )
    fr = FamilyRequest.objects.get(pk=fr.pk)
    assert fr.stage == FamilyRequest.Stage.HANDED and fr.case_id == case.pk
    assert task.assignee == p.caseworker
    return fr, Disclosure.objects.get(request=fr), task


def _build():
    p = Personas()
    # Team A's open case: the caseworker works on it (with whereabouts), the reader only
    # sees it; its person consented to family tracing so requests can match it.
    case_a = consenting_case(p.team, p.coordinator, p.caseworker, name=NAME_A)
    services.access_grant(actor=p.coordinator, case=case_a, user=p.reader, level="view")
    a = _furnish(case_a, p.caseworker, "A")
    fr_a, disclosure_a, handed_task_a = _hand_over_with_disclosure(p, case_a, NAME_A)

    # Team A's sealed case: everything is made before sealing; sealing names the sealing
    # coordinator, who then takes their own name off, so only the caseworker is named.
    case_s = consenting_case(p.team, p.coordinator, p.caseworker, name=NAME_S)
    s = _furnish(case_s, p.caseworker, "S")
    fr_s, disclosure_s, handed_task_s = _hand_over_with_disclosure(p, case_s, NAME_S)
    services.case_seal(actor=p.coordinator, case=case_s, sealed=True)
    services.access_revoke(actor=p.coordinator, case=case_s, user=p.coordinator, level="view")

    # Team B's case, worked by Team B's caseworker, with a task in their own queue.
    case_b = make_case(p.other_team, actor=p.other_coordinator, name=NAME_B)
    services.access_grant(
        actor=p.other_coordinator, case=case_b, user=p.other_caseworker, level="work"
    )
    task_b = queues.task_create(
        actor=p.other_caseworker,
        case=case_b,
        title="B: documents",
        aim="support",
        assignee=p.other_caseworker,
    )

    # Family requests still in triage: one that matched nothing, one matched to case A.
    unmatched, _ = submit(names=(NAME_NOBODY,))
    assert unmatched.stage == FamilyRequest.Stage.TRIAGE and not unmatched.candidates.exists()
    matched, _ = submit(names=(NAME_A,))
    assert matched.stage == FamilyRequest.Stage.TRIAGE
    assert list(matched.candidates.values_list("case_id", flat=True)) == [case_a.pk]

    # A break-glass event for the auditor's review page. Its hour is over, so it opens
    # nothing any more (an open one would widen the other coordinator's rights).
    glass = services.break_glass(
        actor=p.other_coordinator, case=case_a, justification="Police called; team unreachable."
    )
    glass.expires_at = timezone.now() - datetime.timedelta(minutes=1)
    glass.save(update_fields=["expires_at"])
    assert not BreakGlass.objects.filter(expires_at__gt=timezone.now()).exists()
    glass_event = AccessEvent.objects.get(action="case.break_glass")
    # The caseworker's own passkey: only its holder reaches the pages about it.
    passkey = WebAuthnCredential.objects.create(
        user=p.caseworker, name="key", credential_id=b"matrix", public_key=b"-"
    )

    for case in (case_a, case_s, case_b):
        case.refresh_from_db()
    return {
        "personas": p,
        "a": a,
        "s": s,
        "case_a": case_a,
        "case_s": case_s,
        "case_b": case_b,
        "tasks": {
            "task_a": a["task"],
            "handed_task_a": handed_task_a,
            "task_s": s["task"],
            "handed_task_s": handed_task_s,
            "task_b": task_b,
        },
        "requests": {
            "unmatched": unmatched,
            "matched_a": matched,
            "handed_a": fr_a,
            "handed_s": fr_s,
        },
        "disclosure_a": disclosure_a,
        "disclosure_s": disclosure_s,
        "template": TaskTemplate.objects.order_by("pk").first(),
        "glass_event": glass_event,
        "passkey": passkey,
    }


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    """The whole world, built once; rolled back when the module is done."""
    local = override_settings(
        MEDIA_ROOT=tmp_path_factory.mktemp("rights-matrix-media"),
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    with django_db_blocker.unblock(), local:
        with transaction.atomic():
            yield _build()
            transaction.set_rollback(True)


def user_of(world, persona):
    return AnonymousUser() if persona == "anonymous" else getattr(world["personas"], persona)


def client_for(world, persona) -> Client:
    client = Client()
    if persona != "anonymous":
        login_verified(client, user_of(world, persona))
    return client


# --- 1. One expected status per persona per staff URL -------------------------------------------
def everyone(status, **cells):
    """The same answer for every staff member (anonymous: the login redirect)."""
    return {"anonymous": 302, **{p: status for p in STAFF}, **cells}


def case_workers_only(status):
    """A page for people who work on cases (caseworkers and coordinators); the roles
    that hold no case right get 403 (it is not about any one object)."""
    return everyone(403, **{p: status for p in CASE_ROLES})


def coordinators_only(status):
    return everyone(403, coordinator=status, other_coordinator=status)


def auditor_only(status):
    return everyone(403, auditor=status)


def on_object(coordinator, caseworker, reader):
    """A page about one object of case A (or a request handed to it): everyone outside
    gets 404, whatever the method; inside, the answer of the coordinator of Team A, the
    caseworker named on the case and the reader (a "view" grant)."""
    return everyone(404, coordinator=coordinator, caseworker=caseworker, reader=reader)


CASE_ROLES = ["coordinator", "other_coordinator", "caseworker", "reader", "other_caseworker"]

# GET only. POST-only views answer a GET with 405 to those who reach the object (access
# is checked before the method), 404 to outsiders. Notes on some cells:
# - reader: sees the case, so a page that needs the right to work on it answers 403
#   (get_case_for_user: 404 only for those who cannot see the case at all). Views that
#   fetch with VIEW and check a further right after the method (case_revoke, case_seal,
#   task_assign) answer a GET with 405 first.
# - whereabouts: their own grant, which the coordinator and the reader do not hold: 403.
# - family requests: a read-only grant on the case does not open the family's request
#   (families/access.py), so the reader gets 404 there.
# - case_search, board_assign, backup_codes are @require_POST before anything else:
#   405 for every staff member.
# - admin:index: the administrator role only; anyone else is sent to the admin login.
EXPECTED = {
    "home": everyone(200),
    "backup_codes": everyone(405),
    # One's own second factors: the page for everyone; a passkey's pages for its holder
    # only (POST-only, so the holder's GET is 405); the app's removal (everyone has one).
    "second_factor": everyone(200),
    "passkey_rename": everyone(404, caseworker=405),
    "passkey_remove": everyone(404, caseworker=405),
    "authenticator_remove": everyone(405),
    "admin:index": everyone(302, administrator=200),
    # Cases
    "case_list": case_workers_only(200),
    "case_search": everyone(405),
    "case_new": case_workers_only(200),
    "break_glass": coordinators_only(200),
    "case_detail": on_object(200, 200, 200),
    "case_edit": on_object(200, 200, 403),
    "case_stage": on_object(405, 405, 403),
    "case_close": on_object(405, 405, 403),
    "case_reopen": on_object(405, 405, 403),
    "note_add": on_object(405, 405, 403),
    "attachment_download": on_object(200, 200, 200),
    "whereabouts": on_object(403, 200, 403),
    "whereabouts_edit": on_object(403, 405, 403),
    "case_access": on_object(200, 403, 403),
    "case_revoke": on_object(405, 405, 405),
    "case_seal": on_object(405, 405, 405),
    "case_task_new": on_object(405, 405, 403),
    "case_task_template": on_object(405, 405, 403),
    # Tasks
    "my_queue": case_workers_only(200),
    "team_queue": case_workers_only(200),
    "board": coordinators_only(200),
    "board_assign": everyone(405),
    "task_templates": coordinators_only(200),
    "task_template_new": coordinators_only(200),
    "task_template_edit": coordinators_only(200),
    "task_detail": on_object(200, 200, 200),
    "task_claim": on_object(405, 405, 403),
    "task_status": on_object(405, 405, 403),
    "task_comment": on_object(405, 405, 403),
    "task_assign": on_object(405, 405, 405),
    # Contacts, consent, do-not-disclose, messages
    "case_contacts": on_object(200, 200, 200),
    "contact_edit": on_object(200, 200, 403),
    "thread": on_object(200, 200, 200),
    "consent": on_object(200, 200, 200),
    "consent_record": on_object(200, 200, 403),
    "consent_withdraw": on_object(405, 405, 403),
    "consent_scan": on_object(200, 200, 200),
    "do_not_disclose": on_object(200, 200, 200),
    "do_not_disclose_remove": on_object(405, 405, 403),
    "review": on_object(200, 200, 403),
    "deliver": on_object(405, 405, 403),
    "review_queue": case_workers_only(200),
    # Family requests (the one handed to case A, and its disclosure)
    "family_triage": coordinators_only(200),
    "family_request": on_object(200, 200, 404),
    "family_close": on_object(405, 405, 404),
    "family_hand": on_object(405, 405, 404),
    "family_answer": on_object(405, 405, 404),
    "family_disclosure_approve": on_object(405, 405, 404),
    "family_disclosure_release": on_object(405, 405, 404),
    # The access log
    "audit_log": auditor_only(200),
    "audit_unusual": auditor_only(200),
    "audit_break_glass": auditor_only(200),
    "audit_export": auditor_only(200),
    "audit_checkpoint": auditor_only(200),
}

# Cells that are security defects of the current code: {(url name, persona): reason}.
DEFECTS: dict[tuple[str, str], str] = {}

# Not staff pages (the public family side, the login journey, plumbing) or the admin's
# own pages, of which `admin:index` stands for all.
PUBLIC = {
    "family_contact",
    "family_status",
    "family_follow_up",
    "family_withdraw",
    "family_leave",
    "login",
    "verify",
    "enrol",
    # The passkey ceremonies (JSON, part of the login journey; tests/casework/test_passkeys.py)
    "otp_webauthn:credential-registration-begin",
    "otp_webauthn:credential-registration-complete",
    "otp_webauthn:credential-authentication-begin",
    "otp_webauthn:credential-authentication-complete",
    "otp_webauthn:js-i18n-catalog",
    "logout",
    "set_language",
    "healthz",
}

# Query strings some GETs need to show their page rather than send the user back.
QUERY = {"consent_record": "?purpose=tracing&language=en"}


def staff_url_names() -> set[str]:
    names = {name for name, _path in url_patterns()}
    return {
        n for n in names if n not in PUBLIC and (not n.startswith("admin:") or n == "admin:index")
    }


def object_ids(world, side="a") -> dict:
    """URL parameters naming the objects of case A (side "a") or the sealed case ("s")."""
    objects = world[side]
    return {
        "pk": objects["case"].pk,
        "attachment_pk": objects["attachment"].pk,
        "contact_pk": objects["contact"].pk,
        "event_pk": objects["event"].pk,
        "entry_pk": objects["entry"].pk,
        "message_pk": objects["message"].pk,
        "task_pk": objects["task"].pk,
        "request_pk": world["requests"][f"handed_{side}"].pk,
        "disclosure_pk": world[f"disclosure_{side}"].pk,
    }


def url_of(world, name, side="a") -> str:
    values = {
        **object_ids(world, side),
        "template_pk": world["template"].pk,
        "seq": world["glass_event"].seq,
        "device_pk": world["passkey"].pk,
    }
    params = url_params().get(name, [])
    assert set(params) <= set(values), (name, params)  # a new parameter needs a world object
    return reverse(name, kwargs={p: values[p] for p in params}) + QUERY.get(name, "")


def _cells():
    for name in sorted(EXPECTED):
        for persona in PERSONAS:
            marks = ()
            if (name, persona) in DEFECTS:
                marks = pytest.mark.xfail(strict=True, reason=DEFECTS[(name, persona)])
            yield pytest.param(name, persona, id=f"{name}-{persona}", marks=marks)


def test_every_staff_url_has_exactly_one_row_for_every_persona():
    assert set(EXPECTED) == staff_url_names(), (
        "rows missing: "
        f"{sorted(staff_url_names() - set(EXPECTED))}, "
        f"rows without a URL: {sorted(set(EXPECTED) - staff_url_names())}"
    )
    for name, row in EXPECTED.items():
        assert set(row) == set(PERSONAS), name
    assert set(DEFECTS) <= {(n, p) for n in EXPECTED for p in PERSONAS}


@pytest.mark.parametrize(("name", "persona"), list(_cells()))
def test_matrix(world, name, persona):
    client = client_for(world, persona)
    response = client.get(url_of(world, name))
    assert response.status_code == EXPECTED[name][persona], (name, persona)
    if persona == "anonymous":
        assert response["Location"].startswith(reverse("login")), response["Location"]
        posted = client.post(url_of(world, name))
        assert posted.status_code == 302 and posted["Location"].startswith(reverse("login"))
    elif response.status_code == 302:  # admin:index for everyone but the administrator
        assert response["Location"].startswith(reverse("admin:login")), response["Location"]
    if EXPECTED[name][persona] == 404:
        # Access is checked before the method: a POST tells an outsider nothing more.
        assert client.post(url_of(world, name)).status_code == 404, "POST"


# --- 2. The sealed case ---------------------------------------------------------------------------
def sealed_case_urls() -> list[str]:
    """Every staff URL that names the sealed case or something in it (a request handed to
    it and its disclosure included)."""
    scoped = {
        "pk",
        "attachment_pk",
        "contact_pk",
        "event_pk",
        "entry_pk",
        "message_pk",
        "task_pk",
        "request_pk",
        "disclosure_pk",
    }
    params = url_params()
    return sorted(n for n in EXPECTED if params.get(n) and set(params[n]) <= scoped)


def test_the_sealed_case_urls_are_all_the_object_urls():
    names = sealed_case_urls()
    assert len(names) == 36, names
    # Every URL an outsider gets 404 on, but the pages of one's own passkey (not a case's).
    outsiders_404 = {n for n in EXPECTED if EXPECTED[n]["other_caseworker"] == 404}
    assert outsiders_404 - {"passkey_rename", "passkey_remove"} == set(names)


def _sealed_expected(name, persona):
    """Named on it: the caseworker's answer on the open case (the same rights); anyone
    else, the coordinator of its team included: 404."""
    if persona == "anonymous":
        return 302
    return EXPECTED[name]["caseworker"] if persona == "caseworker" else 404


@pytest.mark.parametrize("name", sealed_case_urls())
def test_sealed_case_opens_only_to_the_named_caseworker(world, name):
    url = url_of(world, name, side="s")
    got = {p: client_for(world, p).get(url).status_code for p in PERSONAS}
    assert got == {p: _sealed_expected(name, p) for p in PERSONAS}
    assert got["coordinator"] == 404 and got["caseworker"] in (200, 403, 405)
    for persona in STAFF:
        if persona != "caseworker":
            assert client_for(world, persona).post(url).status_code == 404, persona


def test_sealing_left_only_the_caseworker_named(world):
    case = Case.objects.get(pk=world["case_s"].pk)
    assert case.sealed and case.team == world["personas"].team
    named = {
        p
        for p in STAFF
        if access.granted_cases(user_of(world, p), access.VIEW).filter(pk=case.pk).exists()
    }
    assert named == {"caseworker"}


# --- 3. List <=> rights <=> detail ----------------------------------------------------------------
# Who may see what in the world (the answer the three views below must agree on).
VIEWERS = {
    "case_a": {"coordinator", "caseworker", "reader"},
    "case_s": {"caseworker"},
    "case_b": {"other_coordinator", "other_caseworker"},
    "task_a": {"coordinator", "caseworker", "reader"},
    "handed_task_a": {"coordinator", "caseworker", "reader"},
    "task_s": {"caseworker"},
    "handed_task_s": {"caseworker"},
    "task_b": {"other_coordinator", "other_caseworker"},
    "unmatched": {"coordinator"},  # Team A triages requests that matched nobody
    "matched_a": {"coordinator"},  # in triage: the candidate case's coordinators only
    "handed_a": {"coordinator", "caseworker"},  # not the reader: a view grant only
    "handed_s": {"caseworker"},  # sealed: its team's coordinator is not named
}

# Viewable but on no list the persona can open, by design:
# - the reader sees every task of case A (task_detail), but a task assigned to someone
#   else is on no page of theirs: my_queue is one's own tasks, team_queue the unassigned
#   ones, the board is for coordinators. The case page lists it.
NOT_LISTED_BY_DESIGN = {("reader", "handed_task_a")}


def _page(client, name):
    response = client.get(reverse(name))
    assert response.status_code in (200, 403), (name, response.status_code)
    return response.context if response.status_code == 200 else None


def listed_cases(client) -> set:
    context = _page(client, "case_list")
    return {c.pk for c in context["rows"]} if context else set()


def listed_tasks(client) -> set:
    """Every task on a task page the persona may open."""
    found = set()
    for name in ("my_queue", "team_queue"):
        if context := _page(client, name):
            found |= {t.pk for t in context["tasks"]}
    if context := _page(client, "board"):
        found |= {t.pk for group in context["groups"] for t in group["tasks"]}
    return found


def listed_requests(client, world) -> set:
    """Family requests in triage, and on the family panel of every case page one opens."""
    found = set()
    if context := _page(client, "family_triage"):
        found |= {fr.pk for fr in context["rows"]}
    for key in ("case_a", "case_s", "case_b"):
        response = client.get(reverse("case_detail", args=[world[key].pk]))
        if response.status_code == 200:
            for panel in response.context["panels"]:
                found |= {fr.pk for fr in panel.get("requests", [])}
    return found


def _world_objects(world):
    """(key, kind, object) for every case, task and family request of the world."""
    for key in ("case_a", "case_s", "case_b"):
        yield key, "case", world[key]
    for key, task in world["tasks"].items():
        yield key, "task", task
    for key, fr in world["requests"].items():
        yield key, "request", fr


def _rights_view(user, kind, obj) -> bool:
    # Fresh rows: rights loaded on an object for one user are never reused for another.
    if kind == "case":
        return access.rights_of(user, Case.objects.get(pk=obj.pk)).view
    if kind == "task":
        return access.rights_of(user, Case.objects.get(pk=obj.case_id)).view
    return family_access.rights_of(user, FamilyRequest.objects.get(pk=obj.pk)).view


DETAIL = {"case": ("case_detail", "pk"), "task": ("task_detail", "task_pk")}
DETAIL["request"] = ("family_request", "request_pk")


@pytest.mark.parametrize("persona", STAFF)
def test_listed_iff_rights_say_view_iff_detail_opens(world, persona):
    user = user_of(world, persona)
    client = client_for(world, persona)
    listed = {
        "case": listed_cases(client),
        "task": listed_tasks(client),
        "request": listed_requests(client, world),
    }
    rows = []
    for key, kind, obj in _world_objects(world):
        view = _rights_view(user, kind, obj)
        name, param = DETAIL[kind]
        status = client.get(reverse(name, kwargs={param: obj.pk})).status_code
        rows.append((key, obj.pk in listed[kind], view, status))
    expected = []
    for key, _kind, _obj in _world_objects(world):
        view = persona in VIEWERS[key]
        shown = view and (persona, key) not in NOT_LISTED_BY_DESIGN
        expected.append((key, shown, view, 200 if view else 404))
    assert rows == expected
    # Nothing else of the world's kind appears on a list either.
    all_ids = {kind: {o.pk for _k, k, o in _world_objects(world) if k == kind} for kind in DETAIL}
    for kind in DETAIL:
        assert listed[kind] <= all_ids[kind], kind


def test_not_listed_by_design_is_still_viewable(world):
    for persona, key in NOT_LISTED_BY_DESIGN:
        assert persona in VIEWERS[key], (persona, key)


# --- 4. cases_for_user <=> get_case_for_user <=> rights_of ----------------------------------------
@pytest.mark.parametrize("persona", STAFF)
def test_case_list_rule_single_case_rule_and_rights_agree(world, persona):
    user = user_of(world, persona)
    visible = set(access.cases_for_user(user).values_list("pk", flat=True))
    for key in ("case_a", "case_s", "case_b"):
        pk = world[key].pk
        request = RequestFactory().get("/")
        request.user = user
        try:
            case = access.get_case_for_user(request, pk)
        except Http404:
            opened = False
        else:
            opened = True
            assert case.rights == access.rights_of(user, Case.objects.get(pk=pk))
        view = access.rights_of(user, Case.objects.get(pk=pk)).view
        expected = persona in VIEWERS[key]
        assert (pk in visible, opened, view) == (expected, expected, expected), key
    assert visible <= {world[k].pk for k in ("case_a", "case_s", "case_b")}


def test_the_tasks_rule_agrees_with_the_case_rule(world):
    for persona in STAFF:
        user = user_of(world, persona)
        tasks = set(access.tasks_for_user(user).values_list("pk", flat=True))
        expected = {t.pk for key, t in world["tasks"].items() if persona in VIEWERS[key]}
        assert tasks == expected, persona
        for key, task in world["tasks"].items():
            request = RequestFactory().get("/")
            request.user = user
            try:
                access.get_task_for_user(request, task.pk)
            except Http404:
                opened = False
            else:
                opened = True
            assert opened == (persona in VIEWERS[key]), (persona, key)
    assert Task.objects.count() == len(world["tasks"])
