import io

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.db.models import Max
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casework import access, services
from casework.models import AccessEvent, Attachment, Case, Note, Stage, Whereabouts
from tests.base import (
    PASSWORD,
    consent_to_relay,
    form_state,
    grant,
    login_verified,
    make_case,
    make_user,
    url_params,
)

pytestmark = pytest.mark.django_db

CANARY_NAME = "Quetzalcoatl Vandersnoot"
CANARY_CITY = "Xylotown-Canary"


@pytest.fixture
def world(personas, settings, tmp_path):
    """A Team A case with a note, an attachment and whereabouts; only `caseworker` is named."""
    settings.MEDIA_ROOT = tmp_path
    case = make_case(personas.team, actor=personas.coordinator, name=CANARY_NAME)
    grant(case, personas.caseworker, "work")
    grant(case, personas.caseworker, "whereabouts")
    note = services.note_add(
        actor=personas.caseworker,
        case=case,
        body="first contact",
        restricted=False,
        upload=SimpleUploadedFile("scan.pdf", b"%PDF-1.4 data", content_type="application/pdf"),
    )
    services.whereabouts_save(
        actor=personas.caseworker,
        case=case,
        data={
            "country": "Norway",
            "city": CANARY_CITY,
            "address": "",
            "phone": "",
            "email": "",
            "safe_contact": "",
            "code_word": "",
        },
    )
    from casework import queues
    from contacts import services as contact_services

    task = queues.task_create(
        actor=personas.coordinator,
        case=case,
        title="Call back",
        aim="support",
        assignee=personas.caseworker,
    )
    contact = contact_services.contact_save(
        actor=personas.caseworker,
        case=case,
        data={"kind": "family", "name": "Sister Canary", "relationship": "sister"},
    )
    event = consent_to_relay(
        case, personas.caseworker, contact, scan=SimpleUploadedFile("consent.pdf", b"%PDF signed")
    )
    entry = contact_services.do_not_disclose_add(
        actor=personas.caseworker,
        case=case,
        data={"name": "Elder Canary", "phone": "", "email": "", "note": ""},
    )
    message = contact_services.message_submit(
        actor=personas.caseworker, case=case, contact=contact, direction="to_contact", body="hi"
    )
    from families import services as family_services
    from families.models import Disclosure, FamilyRequest

    family, _secret = family_services.request_submit(
        data={"requester_name": "Parent Canary", "sought_names": [CANARY_NAME], "message": "m"},
        language="en",
        notice_sha256="x",
    )
    FamilyRequest.objects.filter(pk=family.pk).update(stage="handed", case=case, contact=contact)
    disclosure = Disclosure(
        request=FamilyRequest.objects.get(pk=family.pk),
        kind="meet",
        details="Library, Monday",
        proposed_by=personas.caseworker,
    )
    disclosure.save()
    return {
        "case": case,
        "note": note,
        "attachment": Attachment.objects.get(note=note),
        "task": task,
        "contact": contact,
        "event": event,
        "entry": entry,
        "message": message,
        "family": family,
        "disclosure": disclosure,
    }


def object_params(world):
    """URL parameters that name a case or something inside one."""
    names = {
        "pk": "case",
        "attachment_pk": "attachment",
        "task_pk": "task",
        "contact_pk": "contact",
        "event_pk": "event",
        "entry_pk": "entry",
        "message_pk": "message",
        "request_pk": "family",
        "disclosure_pk": "disclosure",
    }
    return {param: world[key].pk for param, key in names.items()}


def case_urls(world):
    """Every URL pattern that takes a case id or the id of something inside a case
    (found from the URL configuration, so a new case-scoped page is covered by the
    matrix without anyone adding it here)."""
    values = object_params(world)
    urls = []
    for name, params in url_params().items():
        if params and set(params) <= set(values):
            urls.append((name, reverse(name, kwargs={p: values[p] for p in params})))
        else:
            # Any other id-taking pattern must be added to object_params() deliberately.
            # Not about a case: checklists (coordinators') and one's own passkeys
            # (tests/test_rights_matrix.py has their rows).
            not_case = ("template_pk", "device_pk")
            assert not any(p.endswith("pk") and p not in not_case for p in params), (name, params)
    assert len(urls) >= 29, urls
    return urls


def test_access_matrix_outsiders_get_404_on_every_case_url(world, personas):
    for user in personas.outsiders():
        client = login_verified(Client(), user)
        for name, url in case_urls(world):
            for method in (client.get, client.post):
                response = method(url)
                assert response.status_code == 404, (
                    user.username,
                    name,
                    method.__name__,
                    response.status_code,
                )


def test_access_matrix_no_such_case_looks_the_same(world, personas):
    client = login_verified(Client(), personas.caseworker)
    ghost = {
        p: f"00000000-0000-4000-8000-00000000000{i}" for i, p in enumerate(object_params(world))
    }
    for name, params in url_params().items():
        if params and set(params) <= set(ghost):
            url = reverse(name, kwargs={p: ghost[p] for p in params})
            assert client.get(url).status_code == 404, name
            assert client.post(url).status_code == 404, name


def test_coordinator_needs_a_grant_for_whereabouts(world, personas):
    # The coordinator sees the case, so 403 (not the outsider's 404) tells nothing new.
    client = login_verified(Client(), personas.coordinator)
    assert client.get(reverse("whereabouts", args=[world["case"].pk])).status_code == 403


def test_case_list_shows_only_visible_cases_and_never_whereabouts(world, personas):
    other = make_case(personas.other_team, actor=personas.other_coordinator, name="Other Person")
    html = login_verified(Client(), personas.caseworker).get(reverse("case_list")).content.decode()
    assert CANARY_NAME in html and other.reference not in html
    assert CANARY_CITY not in html and "Norway" not in html
    for user in (personas.auditor, personas.administrator):
        assert login_verified(Client(), user).get(reverse("case_list")).status_code == 403


def test_superuser_flag_and_model_permissions_widen_nothing(world, personas):
    from django.contrib.auth.models import Permission

    personas.other_caseworker.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="casework", codename__in=["view_case", "change_case"]
        )
    )
    assert not access.cases_for_user(personas.superuser).exists()
    assert not access.cases_for_user(personas.other_caseworker).exists()


def test_revocation_takes_effect_on_the_next_request(world, personas):
    client = login_verified(Client(), personas.caseworker)
    url = reverse("case_detail", args=[world["case"].pk])
    assert client.get(url).status_code == 200
    coordinator = login_verified(Client(), personas.coordinator)
    coordinator.post(
        reverse("case_revoke", args=[world["case"].pk]),
        {"user": personas.caseworker.pk, "level": "view"},
    )
    assert client.get(url).status_code == 404
    assert AccessEvent.objects.filter(action="access.revoked").count() == 1


def test_grant_only_to_caseworkers_of_the_case_team(world, personas):
    client = login_verified(Client(), personas.coordinator)
    url = reverse("case_access", args=[world["case"].pk])
    response = client.post(url, {"user": personas.other_caseworker.pk, "level": "work"})
    assert response.status_code == 200  # form error, nothing granted
    assert not access.rights_of(personas.other_caseworker, world["case"]).view
    newcomer = make_user("newcomer", "caseworker")
    personas.team.members.add(newcomer)
    response = client.post(url, {"user": newcomer.pk, "level": "work"})
    assert response.status_code == 302
    assert access.rights_of(newcomer, world["case"]).work
    event = AccessEvent.objects.get(action="access.granted")
    assert event.detail == {"user": str(newcomer.pk), "level": "work"}


def test_each_action_writes_exactly_one_event(world, personas):
    case = world["case"]
    client = login_verified(Client(), personas.caseworker)
    actions = [
        ("get", reverse("case_detail", args=[case.pk]), {}, 200, "case.viewed"),
        (
            "post",
            reverse("case_stage", args=[case.pk]),
            {"stage": "refuge"},
            302,
            "case.stage_changed",
        ),
        ("post", reverse("note_add", args=[case.pk]), {"body": "called"}, 302, "note.created"),
        (
            "post",
            reverse("whereabouts", args=[case.pk]),
            {"reason": "safety"},
            200,
            "whereabouts.viewed",
        ),
        (
            "get",
            reverse("attachment_download", args=[case.pk, world["attachment"].pk]),
            {},
            200,
            "attachment.viewed",
        ),
        ("post", reverse("case_close", args=[case.pk]), {}, 302, "case.closed"),
        ("post", reverse("case_reopen", args=[case.pk]), {}, 302, "case.reopened"),
        ("post", reverse("case_search"), {"q": "Vandersnoot"}, 302, "case.searched"),
    ]
    for method, url, data, status, action in actions:
        # The newest position, not the count: a sequence skips the numbers of rolled-back
        # writes (PostgreSQL), so positions and counts part.
        before = AccessEvent.objects.aggregate(newest=Max("seq"))["newest"] or 0
        response = getattr(client, method)(url, data)
        assert response.status_code == status, (url, response.status_code)
        new = list(AccessEvent.objects.filter(seq__gt=before).values_list("action", flat=True))
        assert new == [action], (url, new)


def test_edit_logs_changed_field_names_never_values(world, personas):
    case = world["case"]
    client = login_verified(Client(), personas.caseworker)
    data = {
        "legal_name": CANARY_NAME,
        "other_names": "Brother Light\nبرادر نور",
        "team": personas.team.pk,
        "risk": "high",
        "aims": ["refuge"],
        "gender": "",
        "needs": "housing",
    }
    data |= form_state(client.get(reverse("case_edit", args=[case.pk])))
    assert client.post(reverse("case_edit", args=[case.pk]), data).status_code == 302
    event = AccessEvent.objects.filter(action="case.updated").get()
    assert set(event.fields) == {"other_names", "risk", "needs"}
    raw = str(event.detail) + str(event.fields)
    assert "Brother" not in raw and "housing" not in raw
    case = Case.objects.get(pk=case.pk)
    assert case.other_names == ["Brother Light", "برادر نور"] and case.risk == "high"


def test_search_by_name_finds_persian_variants_and_logs_no_words(personas):
    case = make_case(
        personas.team, actor=personas.coordinator, name="محمد کریمی", other_names=["Brother Light"]
    )
    client = login_verified(Client(), personas.coordinator)
    response = client.post(reverse("case_search"), {"q": "مُحَمَّد كريمي"})
    assert response.status_code == 302 and "كريمي" not in response["Location"]
    assert "کریمی" not in response["Location"]
    page = client.get(response["Location"])
    assert case.reference in page.content.decode()
    event = AccessEvent.objects.get(action="case.searched")
    assert "کریمی" not in str(event.detail) and "كريمي" not in str(event.detail)
    assert event.detail["results"] == 1


def test_search_outside_ones_caseload_is_flagged(world, personas):
    client = login_verified(Client(), personas.other_caseworker)
    client.post(reverse("case_search"), {"q": CANARY_NAME})
    event = AccessEvent.objects.get(action="case.searched")
    assert event.detail["results"] == 0 and event.detail["outside_caseload"] == 1
    assert event.flagged


def test_case_list_queries_stay_flat(personas):
    client = login_verified(Client(), personas.coordinator)
    client.get(reverse("case_list"))  # warm caches (content types) once
    counts = []
    for n in (5, 50):
        while Case.objects.count() < n:
            make_case(
                personas.team, actor=personas.coordinator, name=f"Person {Case.objects.count()}"
            )
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("case_list")).status_code == 200
        counts.append(len(ctx.captured_queries))
    # session, user, roles, teams (filters), count, page of cases with keys and teams,
    # caseworkers of the page, plus the access event's lock/last/insert: none per row.
    assert counts[0] == counts[1], counts


def test_sealed_case_shows_only_to_named_users_and_tells_its_caseworkers(
    world, personas, django_capture_on_commit_callbacks
):
    case = world["case"]
    personas.caseworker.email = "cw@example.org"
    personas.caseworker.save()
    coordinator = login_verified(Client(), personas.coordinator)
    coordinator.post(reverse("case_seal", args=[case.pk]), {"sealed": "1"})
    assert Case.objects.get(pk=case.pk).sealed
    # The sealing coordinator is named; a second coordinator of the team is not.
    second = make_user("coordinator3", "coordinator")
    personas.team.coordinators.add(second)
    assert (
        login_verified(Client(), second).get(reverse("case_detail", args=[case.pk])).status_code
        == 404
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert coordinator.get(reverse("case_detail", args=[case.pk])).status_code == 200
    event = AccessEvent.objects.filter(action="case.sealed_opened").get()
    assert event.flagged
    assert [m.to for m in mail.outbox] == [["cw@example.org"]]
    body = mail.outbox[0].subject + mail.outbox[0].body
    assert CANARY_NAME not in body and CANARY_CITY not in body and case.reference in body


def test_break_glass_opens_a_case_for_an_hour_and_tells_the_team(
    world, personas, django_capture_on_commit_callbacks
):
    case = world["case"]
    personas.coordinator.email = "cora@example.org"
    personas.coordinator.save()
    client = login_verified(Client(), personas.other_coordinator)
    url = reverse("case_detail", args=[case.pk])
    assert client.get(url).status_code == 404
    short = client.post(
        reverse("break_glass"), {"reference": case.reference, "justification": "now"}
    )
    assert short.status_code == 200 and not access.rights_of(personas.other_coordinator, case).view
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("break_glass"),
            {
                "reference": case.reference.lower(),
                "justification": "Police called about an imminent risk; team unreachable.",
            },
        )
    assert response.status_code == 302
    assert client.get(url).status_code == 200
    event = AccessEvent.objects.get(action="case.break_glass")
    assert event.flagged and event.actor == personas.other_coordinator
    assert [m.to for m in mail.outbox] == [["cora@example.org"]]
    assert "imminent" not in mail.outbox[0].body and CANARY_NAME not in mail.outbox[0].body
    assert (
        login_verified(Client(), personas.other_caseworker).get(reverse("break_glass")).status_code
        == 403
    )


def test_restricted_notes_show_only_to_caseworkers_and_coordinators(world, personas):
    case = world["case"]
    services.note_add(
        actor=personas.caseworker, case=case, body="restricted-canary", restricted=True
    )
    reader = personas.reader
    grant(case, reader, "view")
    assert (
        "restricted-canary"
        not in login_verified(Client(), reader)
        .get(reverse("case_detail", args=[case.pk]))
        .content.decode()
    )
    for user in (personas.caseworker, personas.coordinator):
        assert (
            "restricted-canary"
            in login_verified(Client(), user)
            .get(reverse("case_detail", args=[case.pk]))
            .content.decode()
        )


def test_notes_are_append_only(world):
    note = world["note"]
    note.body = "changed"
    with pytest.raises(ValueError):
        note.save()


def test_attachment_is_served_decrypted_only_through_the_view(world, personas, tmp_path):
    client = login_verified(Client(), personas.caseworker)
    url = reverse("attachment_download", args=[world["case"].pk, world["attachment"].pk])
    response = client.get(url)
    assert response.content == b"%PDF-1.4 data"
    assert response["Content-Disposition"].startswith("attachment;")
    assert not any(b"%PDF-1.4" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_oversized_attachment_gets_a_clear_error_and_loses_nothing(world, personas, settings):
    settings.PASSAGE_MAX_ATTACHMENT_BYTES = 10
    client = login_verified(Client(), personas.caseworker)
    typed = "with a big file. " * 500  # 8,500 characters someone would hate to lose
    response = client.post(
        reverse("note_add", args=[world["case"].pk]),
        {"body": typed, "attachment": SimpleUploadedFile("big.bin", b"x" * 100)},
    )
    # The case page again, with the error beside the file and the text as typed.
    assert response.status_code == 400
    assert "too large" in response.content.decode()
    assert response.context["note_form"]["body"].value() == typed
    assert Note.objects.filter(case=world["case"]).count() == 1


@pytest.mark.parametrize(
    "value, saved",
    [
        ("\x00null byte", False),  # refused with the form's message
        ("x" * 300, False),  # longer than a name may be
        ("\u202eevil", True),
        ("<script>alert(1)</script>", True),  # kept as typed, shown escaped
    ],
)
def test_hostile_input_never_500s_and_is_escaped(personas, value, saved):
    client = login_verified(Client(), personas.coordinator)
    response = client.post(
        reverse("case_new"),
        {"legal_name": value, "team": personas.team.pk, "risk": "low", "other_names": value},
    )
    assert response.status_code == (302 if saved else 200)
    assert Case.objects.exists() == saved
    if saved:
        html = client.get(response["Location"]).content.decode()
        assert "<script>alert(1)</script>" not in html
    else:
        assert response.context["form"].errors


def test_closing_sets_retention_and_the_daily_job_shreds(world, personas, settings):
    import datetime

    from casework.tasks import shred_expired_cases

    case = world["case"]
    services.case_change_stage(actor=personas.caseworker, case=case, stage=Stage.CLOSED)
    case = Case.objects.get(pk=case.pk)
    assert case.retention_until == case.closed_on + datetime.timedelta(
        days=settings.PASSAGE_CASE_RETENTION_DAYS
    )
    shred_expired_cases()
    assert not Case.objects.get(pk=case.pk).is_shredded
    Case.objects.filter(pk=case.pk).update(retention_until=datetime.date(2000, 1, 1))
    shred_expired_cases()
    case = Case.objects.get(pk=case.pk)
    assert case.is_shredded
    assert AccessEvent.objects.filter(action="case.shredded", case=case).count() == 1
    client = login_verified(Client(), personas.caseworker)
    response = client.get(reverse("case_detail", args=[case.pk]))
    assert response.status_code == 410 and "shredded" in response.content.decode()
    assert Whereabouts.objects.filter(case=case).exists()  # rows stay; nobody can read them


def _blob_paths(case):
    from casework.vault.files import _file_path

    return [_file_path(a.blob_name) for a in Attachment.objects.filter(case=case)]


def test_a_rolled_back_shred_leaves_the_attachment_files(
    world, personas, django_capture_on_commit_callbacks
):
    case = world["case"]
    paths = _blob_paths(case)
    assert paths and all(p.exists() for p in paths)

    class Interrupted(Exception):
        pass

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(Interrupted), transaction.atomic():
            services.case_shred(case=case, actor=personas.coordinator)
            raise Interrupted  # e.g. the next statement fails, or the worker dies
    assert callbacks == []
    assert all(p.exists() for p in paths)
    assert not Case.objects.get(pk=case.pk).is_shredded
    assert not AccessEvent.objects.filter(action="case.shredded").exists()


def test_a_committed_shred_deletes_the_attachment_files(
    world, personas, django_capture_on_commit_callbacks
):
    case = world["case"]
    paths = _blob_paths(case)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.case_shred(case=case, actor=personas.coordinator)
    assert all(p.exists() for p in paths)  # not before the commit
    for callback in callbacks:
        callback()
    assert paths and not any(p.exists() for p in paths)
    assert Case.objects.get(pk=case.pk).is_shredded


def test_opening_a_case_grants_the_caseworker_and_logs(personas):
    client = login_verified(Client(), personas.caseworker)
    response = client.post(
        reverse("case_new"),
        {
            "legal_name": "New Person",
            "team": personas.team.pk,
            "risk": "high",
            "aims": ["refuge", "support"],
            "other_names": "",
            "birth_year": "1990",
        },
    )
    assert response.status_code == 302
    case = Case.objects.get()
    assert case.reference.startswith("P-") and case.aims == ["refuge", "support"]
    assert access.rights_of(personas.caseworker, case).work
    assert client.get(response["Location"]).status_code == 200
    event = AccessEvent.objects.get(action="case.created")
    assert "legal_name" in event.fields and "New Person" not in str(event.detail)


def test_wrong_methods_get_405(world, personas):
    client = login_verified(Client(), personas.caseworker)
    for name in ("case_stage", "case_close", "case_reopen", "note_add"):
        assert client.get(reverse(name, args=[world["case"].pk])).status_code == 405


def test_login_and_logout_write_events(personas):
    from tests.base import totp_now

    client = Client()
    client.post(reverse("login"), {"username": "caseworker", "password": "wrong-password-1"})
    client.post(reverse("login"), {"username": "caseworker", "password": PASSWORD})
    client.post(reverse("verify"), {"otp_token": totp_now(personas.caseworker)})
    client.post(reverse("logout"))
    actions = list(AccessEvent.objects.order_by("seq").values_list("action", flat=True))
    # The second step says how it was passed (passkey, authenticator or backup code).
    assert actions == ["auth.login_failed", "auth.login", "auth.verified", "auth.logout"]
    verified = AccessEvent.objects.get(action="auth.verified")
    assert verified.detail == {"method": "authenticator"}
    assert "caseworker" not in str(AccessEvent.objects.get(action="auth.login_failed").detail)
    assert io  # keep import used for readability of upload helpers


def test_a_whereabouts_grant_alone_opens_nothing(world, personas):
    loner = make_user("loner", "caseworker")
    personas.team.members.add(loner)
    grant(world["case"], loner, "whereabouts")
    client = login_verified(Client(), loner)
    assert client.get(reverse("whereabouts", args=[world["case"].pk])).status_code == 404
    assert not access.cases_for_user(loner, access.WHEREABOUTS).exists()


def test_cases_open_only_in_ones_own_teams(personas):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.case_open(
            actor=personas.caseworker,
            team=personas.other_team,
            person={"legal_name": "X"},
            aims=[],
            risk="low",
        )
