"""The family request flow (see ../shared/DESIGN.md, "Family contact request").

Public side: submit, check status, follow up, withdraw: every answer the same whatever
the request matched. Staff side: triage, hand to the case's caseworker, record the
person's answer in the consent ledger, relay messages, release shared details after a
second person's approval and a cooling-off period.

Exactly one effect under races: every transition starts by locking the request's row
(`_lock`) and decides on the row as it is then, not as the page saw it. Locks are taken
in one order, so no two transitions can wait on each other: the request, then its
disclosures, then rows of its case; the access log last (`audit.record` takes the log's
lock, so no row is locked after a transition's first event).
"""

import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from casework import access, audit, queues, vault, versions
from casework.models import DataKey, Priority, TaskAim
from casework.versions import use_once
from contacts import services as contact_services
from contacts.consent import ConsentRequired, consent_state, notice_read, require_consent
from contacts.models import ConsentEvent, Message, NoticeText, Purpose, Thread

from . import access as family_access
from .models import (
    Disclosure,
    FamilyMessage,
    FamilyRequest,
    MatchCandidate,
    ScreeningFlag,
    new_secret,
    secret_digest,
)

REQUESTER_FIELDS = [
    "requester_name",
    "relationship",
    "requester_country",
    "requester_email",
    "requester_phone",
]
SOUGHT_FIELDS = [
    "sought_names",
    "sought_birth_year",
    "last_place",
    "last_year",
    "other_details",
    "message",
]


@transaction.atomic
def request_submit(*, data: dict, language: str, notice_sha256: str) -> tuple[FamilyRequest, str]:
    """Save a request and queue its screening and matching for after the commit.
    Returns the request and its secret (shown once, kept only as a MAC)."""
    secret = new_secret()
    family_request = FamilyRequest(
        language=language,
        notice_sha256=notice_sha256,
        secret_digest=secret_digest(secret),
        **{k: data.get(k) for k in REQUESTER_FIELDS + SOUGHT_FIELDS},
    )
    family_request.save()
    audit.record(None, "family.request.received", obj=family_request)
    from casework.background import enqueue

    from .tasks import process_request

    enqueue(process_request, str(family_request.pk))
    return family_request, secret


def process(family_request: FamilyRequest) -> None:
    """Screening, then matching; idempotent, marks the request processed.

    1. Compute, outside any transaction: screening and matching read and decrypt (their
       work is bounded, families/limits.py) and write nothing, so they hold no lock
       while they run; on SQLite, nobody else waits for them.
    2. Write, in one short transaction: a conditional update marks the request
       processed only if nobody did meanwhile (a second delivery of the task) and the
       family has not withdrawn it; only then are the flags, the candidates and the
       event saved.
    """
    from . import matching, screening

    if family_request.processed_at is not None or family_request.is_shredded:
        return
    flags = screening.screen(family_request)
    candidates = matching.match(family_request)
    if settings.PASSAGE_FAULT_DELAY_SECONDS:
        import time

        time.sleep(settings.PASSAGE_FAULT_DELAY_SECONDS)
    with transaction.atomic():
        marked = FamilyRequest.objects.filter(
            pk=family_request.pk,
            processed_at__isnull=True,
            data_key__shredded_at__isnull=True,
        ).update(
            processed_at=timezone.now(),
            stage=models.Case(
                models.When(
                    stage=FamilyRequest.Stage.NEW, then=models.Value(FamilyRequest.Stage.TRIAGE)
                ),
                default=models.F("stage"),
            ),
        )
        if not marked:
            return  # processed by another run meanwhile, or withdrawn: nothing to write
        # One INSERT each, however many. The conditional update above already makes this
        # the only run that writes; a candidate is also unique per request and case
        # (one_candidate), so a run repeated by hand skips those it finds.
        ScreeningFlag.objects.bulk_create(flags)
        MatchCandidate.objects.bulk_create(candidates, ignore_conflicts=True)
        audit.record(
            None,
            "family.request.processed",
            obj=family_request,
            detail={"flags": len(flags), "candidates": len(candidates)},
        )


def find_for_family(reference: str, secret: str) -> FamilyRequest | None:
    """The request for this reference and secret, or None: the same work either way."""
    family_request = (
        FamilyRequest.objects.select_related("data_key")
        .filter(reference=str(reference).strip().upper())
        .first()
    )
    digest = secret_digest(secret)
    if family_request is None:
        import hmac

        hmac.compare_digest(digest, "0" * 64)  # the same comparison as for a real one
        return None
    if not family_request.check_secret(secret) or family_request.is_shredded:
        return None
    return family_request


def shown_to_family(family_request: FamilyRequest, now=None) -> tuple[str, list, list]:
    """What the family's status page shows now: (state, replies, shared details).

    1. The state comes from the clock alone (FamilyRequest.family_state): the same
       for every request at the same age, matched or not.
    2. "A reply is waiting" only with something to read: a delivered reply, or details
       released after approval and cooling-off, each shown only while the request is
       open and the person's consent for it still holds, checked now
       (require_consent), not only when it was released.
    3. Until "closed", every request runs the same two queries (its delivered replies,
       its released details), whether or not it ever reached anyone.
    """
    state = family_request.family_state(now)
    if state == "closed":  # closed reads the same, whatever happened before
        return state, [], []
    # Through the request's own id (not its contact, which only a matched request has):
    # the same SQL for every request.
    delivered = list(
        Message.objects.filter(
            thread__contact__family_requests=family_request.pk,
            direction=Message.Direction.TO_CONTACT,
            status=Message.Status.DELIVERED,
        ).select_related("thread__case__data_key")
    )
    released = list(
        family_request.disclosures.filter(
            released_at__isnull=False, cancelled_at__isnull=True
        ).order_by("released_at")
    )
    replies, shared = [], []
    if (delivered or released) and family_request.stage != FamilyRequest.Stage.CLOSED:
        case, contact = family_request.case, family_request.contact
        if case is not None and contact is not None and not case.is_shredded:
            holds = {}

            def allowed(purpose):
                if purpose not in holds:
                    holds[purpose] = consent_state(case, purpose, contact).allows
                return holds[purpose]

            replies = delivered if delivered and allowed(Purpose.RELAY) else []
            shared = [d for d in released if allowed(d.kind)]
    for disclosure in shared:
        disclosure.request = family_request  # its data key, already loaded
    return ("reply" if replies or shared else state), replies, shared


@transaction.atomic
def family_follow_up(*, family_request: FamilyRequest, body: str) -> None:
    """A message from the family: into the relay thread for review while the person's
    consent to relaying holds, else kept on the request for the caseworker. A request
    closed before the family is shown "closed" takes it like any open one (kept with
    the request and shredded with it), so the answer never tells an early closing."""
    family_request = _lock(family_request)
    if family_request.family_state() == "closed":
        raise ValidationError(_("This request is closed."))
    relaying = (
        family_request.stage == FamilyRequest.Stage.RELAY
        and family_request.contact_id
        and consent_state(family_request.case, Purpose.RELAY, family_request.contact).allows
    )
    if relaying:
        thread, _created = Thread.objects.get_or_create(
            case=family_request.case, contact=family_request.contact
        )
        Message(thread=thread, direction=Message.Direction.FROM_CONTACT, body=body).save()
    else:
        FamilyMessage(request=family_request, body=body).save()
    audit.record(None, "family.request.follow_up", case=family_request.case, obj=family_request)


@transaction.atomic
def family_withdraw(*, family_request: FamilyRequest) -> None:
    """The family withdraws: the request is shredded now; its index stays as a
    tombstone for screening. A request closed already keeps its outcome."""
    family_request = _lock(family_request)
    FamilyRequest.objects.filter(pk=family_request.pk).exclude(
        stage=FamilyRequest.Stage.CLOSED
    ).update(
        stage=FamilyRequest.Stage.CLOSED,
        outcome=FamilyRequest.Outcome.WITHDRAWN,
        closed_at=timezone.now(),
    )
    vault.shred(family_request, keep_index=True)
    audit.record(None, "family.request.withdrawn", case=family_request.case, obj=family_request)


@transaction.atomic
def request_shred(*, family_request: FamilyRequest, actor=None, reason: str = "retention") -> None:
    """Crypto-shred a request at the end of its retention, with its access event; its
    blind indexes stay as tombstones for screening. Safe to repeat."""
    family_request = _lock(family_request)
    live = DataKey.objects.select_for_update().filter(
        pk=family_request.data_key_id, shredded_at__isnull=True
    )
    if not live.exists():
        return
    vault.shred(family_request, keep_index=True)
    audit.record(
        actor,
        "family.request.shredded",
        case=family_request.case,
        obj=family_request,
        detail={"reason": reason},
    )


# --- Staff ---------------------------------------------------------------------------------
def _require(actor, family_request, right: str) -> None:
    if not getattr(family_access.rights_of(actor, family_request), right):
        raise PermissionDenied


def _lock(family_request: FamilyRequest) -> FamilyRequest:
    """The request's row, locked for the rest of the transaction and read again into
    the caller's object (what was loaded with it stays: the same queries for every
    request, whatever it matched): the first lock of every transition (see the module's
    lock order)."""
    return versions.lock(family_request)


@transaction.atomic
def triage_close(*, actor, family_request: FamilyRequest, outcome: str = "no_match") -> None:
    family_request = _lock(family_request)
    _require(actor, family_request, "triage")
    if family_request.stage not in (FamilyRequest.Stage.NEW, FamilyRequest.Stage.TRIAGE):
        raise ValidationError(_("This request has left triage already."))
    if outcome not in (FamilyRequest.Outcome.NO_MATCH, FamilyRequest.Outcome.SCREENED_OUT):
        raise ValidationError(_("Choose “no match” or “screened out”."))
    _close(family_request, outcome)
    audit.record(actor, "family.request.triaged", obj=family_request, detail={"decision": outcome})


def _close(family_request, outcome):
    family_request.stage, family_request.outcome, family_request.closed_at = (
        FamilyRequest.Stage.CLOSED,
        outcome,
        timezone.now(),
    )
    family_request.save(update_fields=["stage", "outcome", "closed_at"])


@transaction.atomic
def triage_hand_over(*, actor, family_request: FamilyRequest, case):
    """Hand the request to the case's caseworker: a task on the case, assigned to one
    of its caseworkers if it has any (else it waits in the team queue). Racing a close
    (a "screened out" one above all), one of the two wins and the other is refused."""
    family_request = _lock(family_request)
    _require(actor, family_request, "triage")
    if not access.rights_of(actor, case).coordinates:
        raise PermissionDenied
    if family_request.stage != FamilyRequest.Stage.TRIAGE:
        raise ValidationError(_("This request has left triage already."))
    if not family_request.candidates.filter(case=case).exists():
        raise ValidationError(_("That case is not among this request's candidates."))
    if case.is_shredded:
        raise ValidationError(_("That case is not among this request's candidates."))
    # Handing over tells the caseworker, and through them the person, that a family is
    # looking: only while the person's consent to family tracing holds, checked now.
    require_consent(case, Purpose.TRACING)
    task = queues.task_create(
        actor=actor,
        case=case,
        aim=TaskAim.REUNIFICATION,
        priority=Priority.HIGH,
        title=_("Ask the person about family request %(ref)s") % {"ref": family_request.reference},
        details=_("Open the request in Passage, ask the person, and record their answer."),
        due_on=timezone.localdate() + datetime.timedelta(days=7),
        assignee=access.case_workers(case).first(),
    )
    family_request.stage, family_request.case, family_request.task = (
        FamilyRequest.Stage.HANDED,
        case,
        task,
    )
    family_request.save(update_fields=["stage", "case", "task"])
    audit.record(
        actor,
        "family.request.triaged",
        case=case,
        obj=family_request,
        detail={"decision": "hand_over", "task": str(task.pk)},
    )
    return task


# The notice read with the person for each answer (a decline is recorded against relay).
ANSWER_PURPOSES = {
    "decline": Purpose.RELAY,
    "relay": Purpose.RELAY,
    "share_contact": Purpose.SHARE_CONTACT,
    "meet": Purpose.MEET,
}


@transaction.atomic
def record_answer(
    *,
    actor,
    family_request: FamilyRequest,
    answer: str,
    method: str,
    witness=None,
    details: str = "",
    notice_shown=None,
    once: str | None = None,
):
    """The person's answer, recorded in the consent ledger towards the requester (a new
    contact on the case). Decline closes neutrally; relay opens a reviewed thread;
    sharing details or meeting waits for a coordinator's approval and a cooling-off.
    `once` is the form's one-time token: the same form sent twice records once."""
    use_once(actor=actor, token=once)
    family_request = _lock(family_request)
    case = family_request.case
    _require(actor, family_request, "answer")
    if family_request.stage not in (FamilyRequest.Stage.HANDED, FamilyRequest.Stage.RELAY):
        raise ValidationError(_("This request is not waiting for an answer."))
    if answer not in ANSWER_PURPOSES:
        raise ValidationError(_("Choose one of the answers."))
    if answer in ("share_contact", "meet") and not details.strip():
        raise ValidationError(
            _("Write exactly what will be shared, or how the meeting is arranged.")
        )
    if method == ConsentEvent.Method.SIGNED_PAPER:
        raise ValidationError(_("Record a signed paper on the case's consent page, with its scan."))
    # The same answer twice (two caseworkers, or one page sent again): one effect.
    if answer == "relay" and family_request.stage == FamilyRequest.Stage.RELAY:
        raise ValidationError(_("This answer is recorded already: messages are relayed."))
    if (
        answer in ("share_contact", "meet")
        and family_request.disclosures.filter(
            kind=answer, released_at__isnull=True, cancelled_at__isnull=True
        ).exists()
    ):
        raise ValidationError(
            _("This answer is recorded already and waits for a coordinator's approval.")
        )
    # Every row this answer may change is locked before its first event (the lock order).
    pending = list(
        family_request.disclosures.select_for_update().filter(
            released_at__isnull=True, cancelled_at__isnull=True
        )
    )
    contact = family_request.contact or contact_services.contact_save(
        actor=actor,
        case=case,
        data={
            "kind": "family",
            "name": (family_request.requester_name or "")[:200],
            "relationship": (family_request.relationship or "")[:100],
            "email": family_request.requester_email or "",
            "phone": family_request.requester_phone or "",
            "notes": _("From family request %(ref)s.") % {"ref": family_request.reference},
        },
    )
    purpose = ANSWER_PURPOSES[answer]
    # The notice read with the person must still be the current text (None: the
    # current text, for callers that show none, such as the demo data).
    notice = (
        NoticeText.current(purpose, family_request.language)
        if notice_shown is None
        else notice_read(purpose, family_request.language, notice_shown)
    )
    decision = (
        ConsentEvent.Decision.DECLINED if answer == "decline" else ConsentEvent.Decision.GRANTED
    )
    contact_services.consent_record(
        actor=actor,
        case=case,
        purpose=purpose,
        decision=decision,
        method=method,
        counterpart=contact,
        witness=witness,
        notice=notice,
    )
    family_request.contact = contact
    if answer == "decline":
        family_request.stage, family_request.outcome, family_request.closed_at = (
            FamilyRequest.Stage.CLOSED,
            FamilyRequest.Outcome.DECLINED,
            timezone.now(),
        )
        # Nothing proposed earlier may still go out (approved or not: an approval that
        # waits on this request's lock finds it closed).
        for disclosure in pending:
            disclosure.cancelled_at = timezone.now()
            disclosure.save(update_fields=["cancelled_at"])
            contact_services.consent_record(
                actor=actor,
                case=case,
                purpose=disclosure.kind,
                decision=ConsentEvent.Decision.WITHDRAWN,
                method=method,
                counterpart=contact,
                witness=witness,
            )
    elif answer == "relay":
        first_time = family_request.stage != FamilyRequest.Stage.RELAY
        family_request.stage = FamilyRequest.Stage.RELAY
        thread, _created = Thread.objects.get_or_create(case=case, contact=contact)
        for followup in family_request.followups.all() if first_time else []:
            Message(
                thread=thread, direction=Message.Direction.FROM_CONTACT, body=followup.body
            ).save()
    else:
        Disclosure(request=family_request, kind=answer, details=details, proposed_by=actor).save()
    family_request.save(update_fields=["contact", "stage", "outcome", "closed_at"])
    audit.record(
        actor,
        "family.request.answered",
        case=case,
        obj=family_request,
        detail={"answer": answer},
    )
    return contact


@transaction.atomic
def disclosure_approve(*, actor, disclosure: Disclosure) -> None:
    """The second person: a coordinator of the case's team, not the one who proposed it.
    Release is possible only after the cooling-off period. Two approving at once, or an
    approval racing a decline: the request's lock orders them, and the state is read
    again inside it (one approval, by one person; none after a decline)."""
    family_request = _lock(disclosure.request)
    versions.lock(disclosure)
    _require(actor, family_request, "approve")
    if actor.pk == disclosure.proposed_by_id:
        raise ValidationError(_("A second person must approve: you proposed this disclosure."))
    if disclosure.approved_at or disclosure.cancelled_at:
        raise ValidationError(_("This disclosure was decided already."))
    if family_request.stage == FamilyRequest.Stage.CLOSED:
        raise ValidationError(_("This request is closed."))
    require_consent(family_request.case, disclosure.kind, family_request.contact)
    now = timezone.now()
    disclosure.approved_by, disclosure.approved_at = actor, now
    disclosure.release_after = now + datetime.timedelta(hours=settings.PASSAGE_COOLING_OFF_HOURS)
    disclosure.save()
    audit.record(
        actor,
        "family.disclosure.approved",
        case=family_request.case,
        obj=disclosure,
        detail={"kind": disclosure.kind},
    )


@transaction.atomic
def disclosure_release(*, disclosure: Disclosure, actor=None) -> bool:
    """Release if approved, cooled off and the consent still holds; else cancel it when
    the consent is gone. Idempotent (the daily job and a button both call it)."""
    family_request = _lock(disclosure.request)
    versions.lock(disclosure)
    if disclosure.released_at or disclosure.cancelled_at or not disclosure.approved_at:
        return False
    if timezone.now() < disclosure.release_after:
        return False
    try:
        if family_request.stage == FamilyRequest.Stage.CLOSED:
            raise ConsentRequired("the request is closed")
        require_consent(family_request.case, disclosure.kind, family_request.contact)
    except ConsentRequired:
        disclosure.cancelled_at = timezone.now()
        disclosure.save(update_fields=["cancelled_at"])
        audit.record(actor, "family.disclosure.cancelled", case=family_request.case, obj=disclosure)
        return False
    released = Disclosure.objects.filter(
        pk=disclosure.pk, released_at__isnull=True, cancelled_at__isnull=True
    ).update(released_at=timezone.now())
    if not released:
        return False  # another run released it a moment ago
    disclosure.refresh_from_db(fields=["released_at"])
    audit.record(
        actor,
        "family.disclosure.released",
        case=family_request.case,
        obj=disclosure,
        detail={"kind": disclosure.kind},
    )
    return True
