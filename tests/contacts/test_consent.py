import datetime
import logging

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import Error, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from casework import services as case_services
from casework.models import AccessEvent
from contacts import services
from contacts.consent import ConsentRequired, consent_state, require_consent
from contacts.models import ConsentEvent, Message, NoticeText
from contacts.tasks import consent_daily
from tests.base import grant, login_verified, make_case

pytestmark = pytest.mark.django_db
CANARY = "Ophelia Canaryfield"
TODAY = timezone.localdate()


def live_at(case, actor, *, address=""):
    """Whereabouts in Norway, in the city of Xylotown (the places review warns about)."""
    fields = {"phone": "", "email": "", "safe_contact": "", "code_word": ""}
    data = {"country": "Norway", "city": "Xylotown", "address": address, **fields}
    case_services.whereabouts_save(actor=actor, case=case, data=data)


@pytest.fixture
def case(personas):
    c = make_case(personas.team, actor=personas.coordinator, name=CANARY)
    grant(c, personas.caseworker, "work")
    return c


@pytest.fixture
def mother(case, personas):
    return services.contact_save(
        actor=personas.caseworker,
        case=case,
        data={
            "kind": "family",
            "name": "Mother " + CANARY,
            "relationship": "mother",
            "phone": "+98 912 345 6789",
            "email": "mother@example.org",
        },
    )


@pytest.fixture
def brother(case, personas):
    return services.contact_save(
        actor=personas.caseworker,
        case=case,
        data={"kind": "family", "name": "Brother", "relationship": "brother"},
    )


def record(case, actor, purpose, decision="granted", counterpart=None, **kw):
    kw.setdefault("method", "in_person")
    return services.consent_record(
        actor=actor,
        case=case,
        purpose=purpose,
        decision=decision,
        counterpart=counterpart,
        notice=NoticeText.current(purpose, "en") if decision in ("granted", "declined") else None,
        **kw,
    )


def test_update_and_delete_of_a_consent_event_fail_at_the_database(case, personas, mother):
    event = record(case, personas.caseworker, "relay", counterpart=mother)
    table = ConsentEvent._meta.db_table
    pk = event.pk.hex if connection.vendor == "sqlite" else event.pk
    for sql in (
        f"UPDATE {table} SET decision = 'declined' WHERE id = %s",
        f"DELETE FROM {table} WHERE id = %s",
    ):
        with pytest.raises(Error), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [pk])
    assert ConsentEvent.objects.get(pk=event.pk).decision == "granted"


def test_state_through_grant_withdraw_grant(case, personas, mother):
    assert consent_state(case, "relay", mother).state == "missing"
    first = record(case, personas.caseworker, "relay", counterpart=mother)
    assert consent_state(case, "relay", mother).allows
    services.consent_withdraw(actor=personas.caseworker, case=case, event=first, method="in_person")
    assert consent_state(case, "relay", mother).state == "withdrawn"
    record(case, personas.caseworker, "relay", counterpart=mother)
    assert consent_state(case, "relay", mother).allows
    assert ConsentEvent.objects.filter(case=case).count() == 3  # nothing overwritten


def test_expired_and_other_counterpart_states(case, personas, mother, brother):
    record(
        case,
        personas.caseworker,
        "meet",
        counterpart=mother,
        expires_on=TODAY - datetime.timedelta(days=1),
    )
    assert consent_state(case, "meet", mother).state == "expired"
    record(case, personas.caseworker, "share_contact", counterpart=brother)
    with pytest.raises(ConsentRequired, match="another contact"):
        require_consent(case, "share_contact", mother)
    assert require_consent(case, "share_contact", brother)


@pytest.mark.parametrize("purpose", ["relay", "share_contact", "meet"])
def test_require_consent_refuses_in_every_refused_state(case, personas, mother, brother, purpose):
    with pytest.raises(ConsentRequired, match="No consent"):
        require_consent(case, purpose, mother)
    declined = record(case, personas.caseworker, purpose, "declined", counterpart=mother)
    with pytest.raises(ConsentRequired, match="declined"):
        require_consent(case, purpose, mother)
    granted = record(case, personas.caseworker, purpose, counterpart=mother)
    assert require_consent(case, purpose, mother) == granted
    services.consent_withdraw(
        actor=personas.caseworker, case=case, event=granted, method="in_person"
    )
    with pytest.raises(ConsentRequired, match="withdrawn"):
        require_consent(case, purpose, mother)
    record(
        case,
        personas.caseworker,
        purpose,
        counterpart=mother,
        expires_on=TODAY - datetime.timedelta(days=2),
    )
    with pytest.raises(ConsentRequired, match="expired"):
        require_consent(case, purpose, mother)
    with pytest.raises(ConsentRequired):
        require_consent(case, purpose, brother)
    assert declined


def test_verbal_consent_needs_a_witness_and_paper_needs_its_scan(case, personas, mother):
    with pytest.raises(ValidationError, match="witness"):
        record(case, personas.caseworker, "relay", counterpart=mother, method="verbal")
    with pytest.raises(ValidationError, match="witness"):
        record(
            case,
            personas.caseworker,
            "relay",
            counterpart=mother,
            method="verbal",
            witness=personas.caseworker,
        )
    record(
        case,
        personas.caseworker,
        "relay",
        counterpart=mother,
        method="verbal",
        witness=personas.coordinator,
    )
    with pytest.raises(ValidationError, match="scan"):
        record(case, personas.caseworker, "photographs", method="signed_paper")
    event = record(
        case,
        personas.caseworker,
        "photographs",
        method="signed_paper",
        scan=SimpleUploadedFile("s.pdf", b"%PDF " + CANARY.encode()),
    )
    assert event.scan_blob
    client = login_verified(Client(), personas.caseworker)
    scan = client.get(reverse("consent_scan", args=[case.pk, event.pk]))
    assert scan.content == b"%PDF " + CANARY.encode()


def test_withdrawal_stops_a_waiting_message_and_delivery_rechecks(case, personas, mother):
    grant_event = record(case, personas.caseworker, "relay", counterpart=mother)
    waiting = services.message_submit(
        actor=personas.caseworker,
        case=case,
        contact=mother,
        direction="to_contact",
        body="Hello, I am well.",
    )
    approved = services.message_submit(
        actor=personas.caseworker, case=case, contact=mother, direction="to_contact", body="Second"
    )
    services.message_review(
        actor=personas.coordinator, case=case, message=approved, decision="approve"
    )
    services.consent_withdraw(
        actor=personas.caseworker, case=case, event=grant_event, method="in_person"
    )
    assert set(Message.objects.values_list("status", flat=True)) == {"stopped"}
    assert Message.objects.get(pk=waiting.pk).status == "stopped"
    with pytest.raises(ValidationError):
        services.message_deliver(
            actor=personas.caseworker, case=case, message=Message.objects.get(pk=approved.pk)
        )
    with pytest.raises(ConsentRequired):
        services.message_submit(
            actor=personas.caseworker,
            case=case,
            contact=mother,
            direction="to_contact",
            body="again",
        )


def test_nothing_is_approved_or_delivered_without_relay_consent(case, personas, mother):
    grant_event = record(case, personas.caseworker, "relay", counterpart=mother)
    message = services.message_submit(
        actor=personas.caseworker,
        case=case,
        contact=mother,
        direction="from_contact",
        body="We miss you",
    )
    services.message_review(
        actor=personas.coordinator, case=case, message=message, decision="approve"
    )
    # The person changes their mind between approval and delivery: nothing goes out.
    assert grant_event.decision == "granted"
    services.consent_record(
        actor=personas.caseworker,
        case=case,
        purpose="relay",
        decision="declined",
        counterpart=mother,
        method="in_person",
        notice=NoticeText.current("relay", "en"),
    )
    message = Message.objects.get(pk=message.pk)
    assert message.status == "stopped"


def test_review_decisions_need_a_reason_to_return_or_block(case, personas, mother):
    record(case, personas.caseworker, "relay", counterpart=mother)
    message = services.message_submit(
        actor=personas.caseworker, case=case, contact=mother, direction="to_contact", body="hi"
    )
    with pytest.raises(ValidationError, match="reason"):
        services.message_review(
            actor=personas.coordinator, case=case, message=message, decision="block"
        )
    services.message_review(
        actor=personas.coordinator,
        case=case,
        message=message,
        decision="block",
        reason="mentions the town",
    )
    assert Message.objects.get(pk=message.pk).status == "blocked"


@pytest.mark.parametrize(
    "body, code",
    [
        ("Call me on +47 412 34 567 tonight", "phone"),
        ("شماره‌ام ۰۹۱۲ ۳۴۵ ۶۷۸۹ است", "phone"),
        ("رقمي ٠٩١٢٣٤٥٦٧٨٩", "phone"),
        ("Write to maryam.k@example.org", "email"),
        ("See https://example.org/profile", "url"),
        ("or www.example.net", "url"),
        ("I live in Xylotown now", "place"),
        ("من الان در تبریز زندگی می‌کنم", "place"),
    ],
)
def test_review_warnings_fire_in_latin_and_persian(case, personas, mother, body, code):
    live_at(case, personas.caseworker, address="تبریز، خیابان امام")
    record(case, personas.caseworker, "relay", counterpart=mother)
    message = services.message_submit(
        actor=personas.caseworker, case=case, contact=mother, direction="to_contact", body=body
    )
    grant(case, personas.caseworker, "whereabouts")
    warnings = services.review_warnings(actor=personas.caseworker, case=case, message=message)
    assert code in {c for c, _text in warnings}, warnings


def test_a_plain_message_raises_no_warning(case, personas, mother):
    live_at(case, personas.caseworker)
    record(case, personas.caseworker, "relay", counterpart=mother)
    message = services.message_submit(
        actor=personas.caseworker,
        case=case,
        contact=mother,
        direction="to_contact",
        body="I am well and think of you. سلام مادر",
    )
    grant(case, personas.caseworker, "whereabouts")
    assert services.review_warnings(actor=personas.caseworker, case=case, message=message) == []


def test_review_compares_with_whereabouts_only_for_a_reviewer_with_the_grant(
    case, personas, mother
):
    """A reviewer without the whereabouts grant must not be able to test a city against
    the whereabouts; with the grant, the comparison is a read, and is logged."""
    live_at(case, personas.caseworker)
    record(case, personas.caseworker, "relay", counterpart=mother)
    body = "I live in Xylotown now, call +47 412 34 567"
    message = services.message_submit(
        actor=personas.caseworker, case=case, contact=mother, direction="to_contact", body=body
    )
    client = login_verified(Client(), personas.caseworker)
    url = reverse("review", args=[case.pk, message.pk])
    reads = AccessEvent.objects.filter(action="whereabouts.viewed")

    page = client.get(url).content.decode()
    assert "A phone number" in page  # the pattern warnings stay
    assert "A place from the whereabouts" not in page
    warnings = services.review_warnings(actor=personas.caseworker, case=case, message=message)
    assert {code for code, _text in warnings} == {"phone"}
    assert reads.count() == 0

    grant(case, personas.caseworker, "whereabouts")
    page = client.get(url).content.decode()
    assert "A place from the whereabouts" in page
    assert reads.count() == 1
    event = reads.get()
    assert (event.actor, event.case_id, event.detail["purpose"]) == (
        personas.caseworker,
        case.pk,
        "message_review",
    )
    warnings = services.review_warnings(actor=personas.caseworker, case=case, message=message)
    assert ("place", "Xylotown") in warnings


def test_recording_consent_through_the_pages_shows_the_notice(case, personas, mother):
    client = login_verified(Client(), personas.caseworker)
    params = {"purpose": "relay", "counterpart": mother.pk, "language": "fa", "subject": ""}
    page = client.get(reverse("consent_record", args=[case.pk]), params)
    fa = NoticeText.current("relay", "fa")
    assert fa.text in page.content.decode()
    response = client.post(
        reverse("consent_record", args=[case.pk]),
        {
            **params,
            "notice": fa.pk,
            "decision": "granted",
            "method": "verbal",
            "witness": personas.coordinator.pk,
        },
    )
    assert response.status_code == 302
    event = ConsentEvent.objects.get()
    assert event.notice_sha256 == fa.sha256 and event.witness == personas.coordinator
    timeline = client.get(reverse("consent", args=[case.pk])).content.decode()
    assert "Relaying messages" in timeline
    response = client.post(
        reverse("consent_withdraw", args=[case.pk, event.pk]), {"method": "in_person"}
    )
    assert response.status_code == 302
    assert consent_state(case, "relay", mother).state == "withdrawn"


def test_a_changed_notice_must_be_read_again(case, personas, mother):
    client = login_verified(Client(), personas.caseworker)
    old = NoticeText.current("relay", "en")
    NoticeText.objects.create(purpose="relay", language="en", version=2, text="New wording.")
    response = client.post(
        reverse("consent_record", args=[case.pk]),
        {
            "purpose": "relay",
            "counterpart": mother.pk,
            "language": "en",
            "notice": old.pk,
            "decision": "granted",
            "method": "in_person",
        },
        follow=True,
    )
    assert "notice text changed" in response.content.decode()
    assert not ConsentEvent.objects.exists()


def test_message_review_page_and_delivery(case, personas, mother):
    record(case, personas.caseworker, "relay", counterpart=mother)
    client = login_verified(Client(), personas.caseworker)
    client.post(
        reverse("thread", args=[case.pk, mother.pk]),
        {"direction": "to_contact", "body": "ring me at 0912 345 6789"},
    )
    message = Message.objects.get()
    reviewer = login_verified(Client(), personas.coordinator)
    queue = reviewer.get(reverse("review_queue")).content.decode()
    assert case.reference in queue and "ring me" not in queue
    page = reviewer.get(reverse("review", args=[case.pk, message.pk])).content.decode()
    assert "A phone number" in page
    reviewer.post(reverse("review", args=[case.pk, message.pk]), {"decision": "approve"})
    client.post(reverse("deliver", args=[case.pk, message.pk]))
    assert Message.objects.get().status == "delivered"
    actions = set(AccessEvent.objects.values_list("action", flat=True))
    assert {"message.submitted", "message.approved", "message.delivered"} <= actions


def test_daily_job_lapses_expired_and_warns_once_without_names(case, personas, mother, caplog):
    personas.caseworker.email = "cw@example.org"
    personas.caseworker.save()
    record(
        case,
        personas.caseworker,
        "relay",
        counterpart=mother,
        expires_on=TODAY - datetime.timedelta(days=1),
    )
    record(
        case,
        personas.caseworker,
        "meet",
        counterpart=mother,
        expires_on=TODAY + datetime.timedelta(days=10),
    )
    with caplog.at_level(logging.DEBUG):
        consent_daily()
        consent_daily()
    assert consent_state(case, "relay", mother).state == "lapsed"
    assert ConsentEvent.objects.filter(decision="lapsed").count() == 1
    assert [m.to for m in mail.outbox] == [["cw@example.org"]]
    text = mail.outbox[0].subject + mail.outbox[0].body
    assert "1 consent" in text and CANARY not in text and "Mother" not in text
    assert CANARY not in caplog.text


def test_do_not_disclose_entries_are_indexed_not_stored_plain(case, personas):
    from casework import vault
    from contacts.models import DoNotDisclose

    services.do_not_disclose_add(
        actor=personas.caseworker,
        case=case,
        data={
            "name": "Brother Light",
            "phone": "۰۹۱۲ ۳۴۵ ۶۷۸۹",
            "email": "Elder@Group.example",
            "note": "",
        },
    )
    rows = DoNotDisclose.objects.all()
    assert [r.name for r in vault.search(rows, "dnd.names", "brother light")]
    assert [r.name for r in vault.search(rows, "dnd.phones", "+98 912 345 6789")]
    assert [r.name for r in vault.search(rows, "dnd.emails", "elder@group.example")]
    assert not vault.search(rows, "dnd.names", "someone else")


def test_contacts_pages_for_readers_and_workers(case, personas, mother):
    reader = personas.reader
    grant(case, reader, "view")
    html = (
        login_verified(Client(), reader)
        .get(reverse("case_contacts", args=[case.pk]))
        .content.decode()
    )
    assert "Mother" in html
    response = login_verified(Client(), reader).post(
        reverse("case_contacts", args=[case.pk]), {"kind": "friend", "name": "X"}
    )
    assert response.status_code == 403
    response = login_verified(Client(), personas.caseworker).post(
        reverse("case_contacts", args=[case.pk]),
        {"kind": "agency", "name": "Legal aid", "email": "not-an-email"},
    )
    assert response.status_code == 200 and "valid email" in response.content.decode().lower()


def test_the_author_of_a_message_never_reviews_it(case, personas, mother):
    """Found from outside: the author of a mediated message could approve and deliver
    it. A second person reviews every message; in a team with one caseworker, that is
    the team's coordinator."""
    record(case, personas.caseworker, "relay", counterpart=mother)
    author = login_verified(Client(), personas.caseworker)
    author.post(
        reverse("thread", args=[case.pk, mother.pk]),
        {"direction": "to_contact", "body": "See you at the station"},
    )
    message = Message.objects.get()
    url = reverse("review", args=[case.pk, message.pk])
    queue = author.get(reverse("review_queue"))
    assert message not in queue.context["pending"] and message in queue.context["mine"]
    page = author.get(url).content.decode()
    assert "a colleague reviews it" in page and "Save the review" not in page
    refused = author.post(url, {"decision": "approve"})
    assert refused.status_code == 200 and "a colleague reviews it" in refused.content.decode()
    assert Message.objects.get().status == "pending"
    assert author.post(reverse("deliver", args=[case.pk, message.pk])).status_code == 302
    assert Message.objects.get().status == "pending"  # nothing to deliver
    with pytest.raises(ValidationError, match="second person"):
        services.message_review(
            actor=personas.caseworker, case=case, message=message, decision="approve"
        )
    # The team's coordinator is the second person here.
    coordinator = login_verified(Client(), personas.coordinator)
    assert message in coordinator.get(reverse("review_queue")).context["pending"]
    coordinator.post(url, {"decision": "approve"})
    assert Message.objects.get().status == "approved"
    assert Message.objects.get().reviewed_by == personas.coordinator


@pytest.mark.parametrize(
    "body",
    [
        "a" * 20_000,
        "1 " * 10_000,
        "x." * 10_000,
        "-" * 20_000,
        "@" * 20_000,
        "a@" * 10_000,
        ("0" * 6 + " ") * 2_800,
        "www." + "a" * 19_990,
    ],
)
def test_review_warnings_on_long_hostile_text_stay_right(case, personas, body):
    """The patterns are linear (measured by `manage.py benchmark contacts`); here: the
    answers on long inputs are still the right ones."""
    message = Message(body=body)
    codes = {
        c
        for c, _t in services.review_warnings(actor=personas.caseworker, case=case, message=message)
    }
    expected = {
        "1 " * 10_000: {"phone"},
        ("0" * 6 + " ") * 2_800: {"phone"},
        "www." + "a" * 19_990: {"url"},
    }.get(body, set())
    assert codes == expected
