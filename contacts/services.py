"""Contacts, consent and messages: each change writes its access event in the same
transaction; every disclosure goes through require_consent()."""

import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from casework import access, audit, vault, versions
from casework.models import Whereabouts
from casework.versions import use_once

from .consent import require_consent
from .models import (
    NAMED_PURPOSES,
    ConsentEvent,
    Contact,
    DoNotDisclose,
    Message,
    NoticeText,
    Purpose,
    Thread,
)


@transaction.atomic
def contact_save(
    *, actor, case, data: dict, contact: Contact | None = None, version: int | None = None
) -> Contact:
    """Add a contact, or change one: its row read again under a lock, and with `version`
    (the edit form's) a contact changed meanwhile raises versions.StaleEdit."""
    adding = contact is None
    if adding:
        contact = Contact(case=case, created_by=actor)
    else:
        contact = versions.lock(contact, version)
    changed = [
        k
        for k, v in data.items()
        if adding and v not in (None, "") or not adding and (getattr(contact, k) or "") != (v or "")
    ]
    if not adding and not changed:
        return contact
    for name, value in data.items():
        setattr(contact, name, value)
    if not adding:
        versions.bump(contact)
    contact.save()
    audit.record(
        actor,
        "contact.created" if adding else "contact.updated",
        case=case,
        obj=contact,
        fields=changed,
        detail={"version": contact.version},
    )
    return contact


@transaction.atomic
def do_not_disclose_add(*, actor, case, data: dict) -> DoNotDisclose:
    if not any(data.get(k) for k in ("name", "phone", "email")):
        raise ValidationError(_("Enter at least a name, a phone number or an e-mail address."))
    entry = DoNotDisclose(case=case, created_by=actor, **data)
    entry.save()
    audit.record(
        actor,
        "do_not_disclose.added",
        case=case,
        obj=entry,
        fields=[k for k, v in data.items() if v],
    )
    return entry


@transaction.atomic
def do_not_disclose_remove(*, actor, case, entry: DoNotDisclose) -> None:
    from casework.models import BlindIndexEntry

    BlindIndexEntry.objects.filter(row_id=entry.pk).delete()
    audit.record(actor, "do_not_disclose.removed", case=case, obj=entry)
    entry.delete()


def _stop_waiting_messages(*, case, counterpart=None, actor=None) -> int:
    messages = Message.objects.filter(thread__case=case, status__in=Message.WAITING)
    if counterpart is not None:
        messages = messages.filter(thread__contact=counterpart)
    stopped = messages.update(status=Message.Status.STOPPED)
    if stopped:
        audit.record(actor, "message.stopped", case=case, detail={"messages": stopped})
    return stopped


@transaction.atomic
def consent_record(
    *,
    actor,
    case,
    purpose: str,
    decision: str,
    method: str,
    subject: Contact | None = None,
    counterpart: Contact | None = None,
    notice: NoticeText | None = None,
    witness=None,
    expires_on=None,
    scan=None,
    remarks: str = "",
    once: str | None = None,
) -> ConsentEvent:
    """Append a consent event, after checking that it can stand as evidence.

    A grant or decline needs the notice that was shown; verbal consent needs a second
    staff member as witness; signed paper needs its scan; a named purpose needs its
    contact. A withdrawal or decline of message relay stops messages still waiting.
    `once` is the form's one-time token: the same form sent twice records one event.
    """
    use_once(actor=actor, token=once)
    if purpose in NAMED_PURPOSES and counterpart is None:
        raise ValidationError(_("Choose the contact this consent is about."))
    for contact in (subject, counterpart):
        if contact is not None and contact.case_id != case.pk:
            raise ValidationError(_("That contact belongs to another case."))
    if (
        decision in (ConsentEvent.Decision.GRANTED, ConsentEvent.Decision.DECLINED)
        and notice is None
    ):
        raise ValidationError(_("Show the notice text and record which one was shown."))
    if method == ConsentEvent.Method.VERBAL and (witness is None or witness == actor):
        raise ValidationError(_("Verbal consent needs a second staff member as witness."))
    if method == ConsentEvent.Method.SIGNED_PAPER and scan is None and decision == "granted":
        raise ValidationError(_("Attach the scan of the signed paper."))
    blob = vault.save_file(case.data_key, scan.read()) if scan is not None else ""
    try:
        event = ConsentEvent(
            case=case,
            subject=subject,
            purpose=purpose,
            counterpart=counterpart if purpose in NAMED_PURPOSES else None,
            decision=decision,
            notice=notice,
            notice_sha256=notice.sha256 if notice else "",
            method=method,
            scan_blob=blob,
            recorded_by=actor,
            witness=witness,
            expires_on=expires_on if decision == ConsentEvent.Decision.GRANTED else None,
            remarks=remarks,
        )
        event.save()
        audit.record(
            actor,
            "consent.recorded",
            case=case,
            obj=event,
            detail={
                "purpose": purpose,
                "decision": decision,
                "method": method,
                "notice": event.notice_sha256[:12],
            },
        )
    except BaseException:
        if blob:  # a scan written for an event that is not saved goes again: no orphan
            vault.delete_file(blob)
        raise
    if decision != ConsentEvent.Decision.GRANTED and purpose in (Purpose.RELAY, Purpose.PROCESSING):
        _stop_waiting_messages(case=case, counterpart=event.counterpart, actor=actor)
    return event


@transaction.atomic
def consent_lapse(*, case, event: ConsentEvent) -> ConsentEvent:
    """The daily check's entry for a grant past its expiry date."""
    lapsed = ConsentEvent(
        case=case,
        subject=event.subject,
        purpose=event.purpose,
        counterpart=event.counterpart,
        decision=ConsentEvent.Decision.LAPSED,
        method=event.method,
        recorded_by=None,
    )
    lapsed.save()
    audit.record(None, "consent.lapsed", case=case, obj=lapsed, detail={"purpose": event.purpose})
    if event.purpose in (Purpose.RELAY, Purpose.PROCESSING):
        _stop_waiting_messages(case=case, counterpart=event.counterpart)
    return lapsed


def consent_withdraw(
    *, actor, case, event: ConsentEvent, method: str, witness=None, once: str | None = None
) -> ConsentEvent:
    """Withdrawal is a new event; it takes effect at once."""
    return consent_record(
        actor=actor,
        case=case,
        purpose=event.purpose,
        decision=ConsentEvent.Decision.WITHDRAWN,
        method=method,
        subject=event.subject,
        counterpart=event.counterpart,
        witness=witness,
        once=once,
    )


# --- Messages ---------------------------------------------------------------------------------
@transaction.atomic
def message_submit(
    *, actor, case, contact: Contact, direction: str, body: str, once: str | None = None
) -> Message:
    use_once(actor=actor, token=once)
    require_consent(case, Purpose.RELAY, contact)
    thread, _created = Thread.objects.get_or_create(case=case, contact=contact)
    message = Message(thread=thread, direction=direction, body=body, created_by=actor)
    message.save()
    audit.record(
        actor,
        "message.submitted",
        case=case,
        obj=message,
        detail={"direction": direction},
    )
    return message


@transaction.atomic
def message_review(*, actor, case, message: Message, decision: str, reason: str = "") -> None:
    # Two reviewers at once: the row's lock orders them, the second finds it reviewed.
    message = versions.lock(message)
    if message.status != Message.Status.PENDING:
        raise ValidationError(_("This message was reviewed already."))
    if not message.may_review(actor):
        raise ValidationError(
            _("A second person reviews every message: you wrote this one. Ask a colleague.")
        )
    if decision in ("return", "block") and not reason.strip():
        raise ValidationError(_("Give a reason when you return or block a message."))
    if decision == "approve":
        require_consent(case, Purpose.RELAY, message.thread.contact)
    message.status = {
        "approve": Message.Status.APPROVED,
        "return": Message.Status.RETURNED,
        "block": Message.Status.BLOCKED,
    }[decision]
    message.review_reason = reason
    message.reviewed_by, message.reviewed_at = actor, timezone.now()
    message.save()
    action = {"approve": "approved", "return": "returned", "block": "blocked"}[decision]
    audit.record(actor, f"message.{action}", case=case, obj=message)


@transaction.atomic
def message_deliver(*, actor, case, message: Message) -> None:
    """Delivery checks consent again: a withdrawal after approval still stops it."""
    if message.status != Message.Status.APPROVED:
        raise ValidationError(_("Only an approved message can be delivered."))
    require_consent(case, Purpose.RELAY, message.thread.contact)
    updated = Message.objects.filter(pk=message.pk, status=Message.Status.APPROVED).update(
        status=Message.Status.DELIVERED, delivered_at=timezone.now()
    )
    if updated:
        audit.record(actor, "message.delivered", case=case, obj=message)


# Each pattern starts only where a token starts (the lookbehind) and never backtracks
# into what it matched (possessive quantifiers), so a long hostile message costs time in
# proportion to its length, not its square.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)++", re.UNICODE)
_URL = re.compile(
    r"(?:https?://|www\.)\S++|(?<![\w-])[\w-]++\.(?:com|org|net|ir|de|info|io|me|app)\b", re.I
)
# A run of digits and the characters people write between them; the run is then cut
# back to its last digit, and counts as a phone number with seven digits or more.
_PHONE_RUN = re.compile(r"(?:\+|00)?+\d[\d\s().-]*+")
_PHONE_TAIL = " \t\r\n().-"


def review_warnings(*, actor, case, message: Message) -> list[tuple[str, str]]:
    """What a reviewer must look at before approving: (code, the text that matched).

    1. Phone numbers (Persian and Arabic digits too), e-mail addresses and web
       addresses, for every reviewer.
    2. Places of the person's whereabouts, only for a reviewer who holds the
       whereabouts grant: comparing a text with the whereabouts is a read of them, so
       it writes its `whereabouts.viewed` event. Without the grant, a reviewer could
       otherwise test candidate cities against the whereabouts.
    """
    text = message.body or ""
    digits_text = vault.normalise(text)  # Persian and Arabic digits become ASCII
    warnings = []
    for match in _PHONE_RUN.finditer(digits_text):
        run = match.group().rstrip(_PHONE_TAIL)
        if sum(ch.isdigit() for ch in run) >= 7:
            warnings.append(("phone", run.strip()))
    emails = list(_EMAIL.finditer(text))
    warnings += [("email", m.group()) for m in emails]
    warnings += [
        ("url", m.group())
        for m in _URL.finditer(text)
        if not any(e.start() <= m.start() < e.end() for e in emails)
    ]
    if not access.rights_of(actor, case).whereabouts:
        return warnings
    place = Whereabouts.objects.filter(case=case).first()
    if place is not None:
        audit.record(
            actor,
            "whereabouts.viewed",
            case=case,
            obj=place,
            detail={"purpose": "message_review", "message": str(message.pk)},
        )
        haystack = f" {vault.normalise(text)} "
        for value in place.places():
            for candidate in {value, *re.split(r"[\n,،;؛]+", value)}:
                needle = vault.normalise(candidate)
                if len(needle) >= 3 and f" {needle} " in haystack:
                    warnings.append(("place", candidate.strip()))
    return warnings
