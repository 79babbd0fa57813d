"""Canary sweep: seed unique strings through every form, open every page, run every job,
then look for them everywhere they must never be: logs, cache/Redis, task messages,
e-mails, the database file or dump, the access log and every URL."""

import io
import json
import logging
import time

import pytest
import redis
from celery.app.task import Task as CeleryTask
from django.conf import settings
from django.core import mail, signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from casework.logs import JsonFormatter, RedactRequestFilter, RequestIdFilter
from casework.models import AccessEvent, Case, Task
from contacts.models import ConsentEvent, Contact, Message, NoticeText
from families.forms import SIGNER_SALT
from families.models import FamilyRequest
from tests.base import Personas, login_verified, url_params
from tests.casework.test_vault import database_bytes

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CANARIES = [
    "Zebulon Canarysmith",
    "زبولون قناری",
    "Quokkaville",
    "Canary Lane 77",
    "+47 555 01 99",
    "canary.mail@example.org",
    "Brother Canarylight",
]


class Recorder:
    def __init__(self):
        self.urls, self.task_calls = [], []

    def get(self, client, url, **kw):
        self.urls.append(url)
        response = client.get(url, **kw)
        self.urls.append(response.get("Location", ""))
        return response

    def post(self, client, url, data=None, **kw):
        self.urls.append(url)
        response = client.post(url, data or {}, **kw)
        self.urls.append(response.get("Location", ""))
        assert response.status_code in (200, 302), (url, response.status_code)
        return response


@pytest.fixture
def log_capture():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactRequestFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture
def task_messages(monkeypatch):
    sent = []
    original = CeleryTask.apply_async

    def recording(self, args=None, kwargs=None, *rest, **options):
        sent.append(
            json.dumps({"task": self.name, "args": list(args or ()), "kwargs": kwargs or {}})
        )
        return original(self, args, kwargs, *rest, **options)

    monkeypatch.setattr(CeleryTask, "apply_async", recording)
    return sent


def test_no_canary_leaks_anywhere(
    log_capture, task_messages, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    p = Personas()
    for user in (p.coordinator, p.caseworker, p.auditor):
        user.email = f"{user.username}@example.org"
        user.save()
    rec = Recorder()
    name, persian, city, address, phone, email, alias = CANARIES
    coord, worker = login_verified(Client(), p.coordinator), login_verified(Client(), p.caseworker)

    # 1. A case, through the intake form, with everything a caseworker types.
    with django_capture_on_commit_callbacks(execute=True):
        rec.post(
            worker,
            reverse("case_new"),
            {
                "legal_name": name,
                "other_names": f"{persian}\n{alias}",
                "team": p.team.pk,
                "risk": "high",
                "aims": ["refuge", "reunification"],
                "circumstances": f"Left near {city}",
                "needs": "housing",
            },
        )
    case = Case.objects.get()
    rec.post(
        coord,
        reverse("case_access", args=[case.pk]),
        {"user": p.caseworker.pk, "level": "whereabouts"},
    )
    rec.post(
        worker,
        reverse("whereabouts_edit", args=[case.pk]),
        {
            "country": "Norway",
            "city": city,
            "address": address,
            "phone": phone,
            "email": email,
            "safe_contact": f"Call {phone}",
            "code_word": "lighthouse",
            "version": 0,  # none recorded yet
        },
    )
    rec.post(
        worker,
        reverse("note_add", args=[case.pk]),
        {
            "body": f"{name} met us",
            "attachment": SimpleUploadedFile(f"{name}.pdf", f"%PDF {name}".encode()),
        },
    )
    rec.post(
        worker,
        reverse("case_contacts", args=[case.pk]),
        {"kind": "family", "name": f"Mother of {name}", "phone": phone, "email": email},
    )
    contact = Contact.objects.get()
    rec.post(
        worker,
        reverse("do_not_disclose", args=[case.pk]),
        {"name": alias, "phone": phone, "email": email},
    )
    for purpose in ("tracing", "relay"):
        params = {
            "purpose": purpose,
            "language": "en",
            "subject": "",
            "counterpart": contact.pk if purpose == "relay" else "",
        }
        rec.get(
            worker,
            reverse("consent_record", args=[case.pk])
            + "?"
            + "&".join(f"{k}={v}" for k, v in params.items()),
        )
        rec.post(
            worker,
            reverse("consent_record", args=[case.pk]),
            {
                **params,
                "notice": NoticeText.current(purpose, "en").pk,
                "decision": "granted",
                "method": "in_person",
            },
        )
    assert ConsentEvent.objects.count() == 2
    rec.post(
        worker,
        reverse("thread", args=[case.pk, contact.pk]),
        {"direction": "to_contact", "body": f"I am in {city}, call {phone}"},
    )
    message = Message.objects.get()
    rec.get(coord, reverse("review", args=[case.pk, message.pk]))  # a second person
    rec.post(
        coord,
        reverse("review", args=[case.pk, message.pk]),
        {"decision": "block", "reason": f"names {city}"},
    )
    assert Message.objects.get().status == Message.Status.BLOCKED
    rec.post(
        worker,
        reverse("case_task_new", args=[case.pk]),
        {
            "title": f"Call {name}",
            "details": address,
            "aim": "support",
            "priority": 0,
            "due_on": "2020-01-01",
            "assignee": p.caseworker.pk,
        },
    )
    task = Task.objects.get()
    rec.post(worker, reverse("task_comment", args=[task.pk]), {"comment": f"spoke to {name}"})
    rec.post(worker, reverse("case_search"), {"q": name})
    rec.post(coord, reverse("case_search"), {"q": persian})
    with django_capture_on_commit_callbacks(execute=True):
        rec.post(coord, reverse("case_seal", args=[case.pk]), {"sealed": "1"})
        rec.get(coord, reverse("case_detail", args=[case.pk]))
    rec.post(worker, reverse("whereabouts", args=[case.pk]), {"reason": "safety"})

    # 2. A family writes in, checks the status, follows up; staff triage and relay.
    family = Client(REMOTE_ADDR="198.51.100.50")
    rec.get(family, "/contact/")
    with django_capture_on_commit_callbacks(execute=True):
        thanks = rec.post(
            family,
            "/contact/",
            {
                "requester_name": alias,
                "relationship": "brother",
                "requester_country": city,
                "requester_email": email,
                "requester_phone": phone,
                "sought_names": f"{name}\n{persian}",
                "sought_birth_year": "1990",
                "last_place": city,
                "message": f"Dear {name}",
                "consent_processing": "on",
                "consent_nothing_shared": "on",
                "consent_retention": "on",
                "website": "",
                "started": signing.dumps(time.time() - 60, salt=SIGNER_SALT),
            },
        )
    html = thanks.content.decode()
    import re

    reference = re.search(r"FR-[0-9A-Z]{4}-[0-9A-Z]{4}", html).group()
    secret = re.search(r"([0-9A-Z]{5}-){3}[0-9A-Z]{5}", html).group()
    rec.post(family, "/contact/status/", {"reference": reference, "secret": secret})
    rec.get(family, "/contact/status/")
    rec.post(family, "/contact/status/message/", {"body": f"Also {address}"})
    request = FamilyRequest.objects.get(reference=reference)
    assert request.processed_at is not None  # ran after commit (eagerly in tests)
    rec.get(coord, reverse("family_triage"))
    rec.get(coord, reverse("family_request", args=[request.pk]))

    # 3. Every page with an id, as the people who may see it; the auditor's pages.
    ids = {
        "pk": case.pk,
        "contact_pk": contact.pk,
        "message_pk": message.pk,
        "task_pk": task.pk,
        "request_pk": request.pk,
        "event_pk": ConsentEvent.objects.first().pk,
        "attachment_pk": case.attachments.first().pk,
        "entry_pk": case.do_not_disclose.first().pk,
    }
    for url_name, params in url_params().items():
        if params and set(params) <= set(ids):
            for client in (worker, coord):
                rec.get(client, reverse(url_name, kwargs={k: ids[k] for k in params}))
        elif not params:
            for client in (worker, coord):
                rec.get(client, reverse(url_name))
    auditor = login_verified(Client(), p.auditor)
    for url in ("/audit/", "/audit/unusual/", "/audit/export.csv"):
        response = rec.get(auditor, url)
        csv_text = b"".join(response.streaming_content) if response.streaming else response.content
        assert all(c.encode() not in csv_text for c in CANARIES)
    rec.get(worker, f"/cases/{name}/")  # a visitor puts a name in a URL: 404, and no log of it

    # 4. Every job.
    from casework import tasks as casework_tasks
    from contacts.tasks import consent_daily
    from families.tasks import families_daily

    casework_tasks.send_daily_reminders()
    consent_daily()
    families_daily()
    casework_tasks.sweep()
    casework_tasks.shred_expired_cases()

    # 5. Look everywhere.
    places = {
        "logs": log_capture.getvalue(),
        "task messages": "\n".join(task_messages),
        "e-mails": "\n".join(m.subject + m.body + " ".join(m.to) for m in mail.outbox),
        "access log": json.dumps(
            list(
                AccessEvent.objects.values("action", "fields", "detail", "object_type", "object_id")
            ),
            ensure_ascii=False,
        ),
        "urls": "\n".join(u for u in rec.urls if u != f"/cases/{name}/"),
    }
    assert mail.outbox and task_messages and rec.urls
    assert "GET unresolved 404" in places["logs"]  # the name-in-URL 404 was logged, redacted
    from casework.models import Whereabouts

    assert Whereabouts.objects.get(case=case).city == city  # the canaries really went in
    cache_dump = _cache_contents()
    for label, text in places.items():
        for canary in CANARIES:
            for form in {canary, canary.lower(), canary.upper()}:
                assert form not in text, (label, canary)
    for canary in CANARIES:
        assert canary.encode() not in cache_dump, ("cache", canary)
    dump = database_bytes(tmp_path)
    for canary in CANARIES:
        assert canary.encode() not in dump, ("database", canary)
        assert canary.encode("utf-16-le") not in dump
    files = b"".join(f.read_bytes() for f in (tmp_path / "media").rglob("*") if f.is_file())
    assert files and name.encode() not in files


def _cache_contents() -> bytes:
    """Every key and value of the cache: Redis when configured, else local memory."""
    if getattr(settings, "REDIS_URL", None):
        client = redis.Redis.from_url(settings.REDIS_URL)
        out = b""
        for key in client.scan_iter():
            out += key + (client.dump(key) or b"")
        return out
    from django.core.cache import cache

    return b"".join(
        str(k).encode() + (v if isinstance(v, bytes) else str(v).encode())
        for k, v in getattr(cache, "_cache", {}).items()
    )
