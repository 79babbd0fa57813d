"""The consent ledger's answers: what holds now, and the one check every disclosure calls.

The current state of a consent is the latest event for (case, subject, purpose,
counterpart); a grant past its expiry date counts as expired. A consent given towards
one contact says nothing about another.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import NAMED_PURPOSES, ConsentEvent, NoticeText, Purpose


class ConsentRequired(Exception):
    """A disclosure was refused: the message says which consent is missing, and why."""


class NoticeChanged(ValidationError):
    def __init__(self):
        super().__init__(_("The notice text changed meanwhile. Read the new text with the person."))


def notice_read(purpose: str, language: str, shown_id) -> NoticeText:
    """The notice that was read with the person, if it is still the current text for
    this purpose and language; a consent recorded against an older text would not say
    what the person agreed to, so a changed notice refuses (NoticeChanged)."""
    notice = NoticeText.current(purpose, language)
    if notice is None or str(notice.pk) != str(shown_id or ""):
        raise NoticeChanged()
    return notice


@dataclass(frozen=True)
class ConsentState:
    state: str  # granted, declined, withdrawn, lapsed, expired, missing
    event: ConsentEvent | None = None

    @property
    def allows(self) -> bool:
        return self.state == "granted"


def _events(case, purpose, subject=None):
    return ConsentEvent.objects.filter(case=case, purpose=purpose, subject=subject)


def consent_state(case, purpose: str, counterpart=None, subject=None) -> ConsentState:
    events = _events(case, purpose, subject)
    if purpose in NAMED_PURPOSES:
        events = events.filter(counterpart=counterpart)
    latest = events.order_by("-recorded_at", "-id").first()
    if latest is None:
        return ConsentState("missing")
    if latest.decision == ConsentEvent.Decision.GRANTED:
        if latest.expires_on and latest.expires_on < timezone.localdate():
            return ConsentState("expired", latest)
        return ConsentState("granted", latest)
    return ConsentState(latest.decision, latest)


def require_consent(case, purpose: str, counterpart=None, subject=None) -> ConsentEvent:
    """Return the grant that allows this disclosure, or refuse with a clear reason."""
    if purpose in NAMED_PURPOSES and counterpart is None:
        raise ValueError(f"{purpose} needs a named counterpart")
    state = consent_state(case, purpose, counterpart, subject)
    if state.allows:
        return state.event
    label = Purpose(purpose).label
    if state.state == "missing" and purpose in NAMED_PURPOSES:
        elsewhere = _events(case, purpose, subject).exclude(counterpart=counterpart)
        if elsewhere.filter(decision=ConsentEvent.Decision.GRANTED).exists():
            raise ConsentRequired(
                _("Consent for “%(purpose)s” was given for another contact, not this one.")
                % {"purpose": label}
            )
    reasons = {
        "missing": _("No consent for “%(purpose)s” is recorded."),
        "declined": _("The person declined “%(purpose)s”."),
        "withdrawn": _("Consent for “%(purpose)s” was withdrawn."),
        "lapsed": _("Consent for “%(purpose)s” has lapsed."),
        "expired": _("Consent for “%(purpose)s” has expired."),
    }
    raise ConsentRequired(
        reasons[state.state] % {"purpose": label} + " " + _("Record a new consent before going on.")
    )


def timeline(case):
    return (
        ConsentEvent.objects.filter(case=case)
        .select_related("subject", "counterpart", "recorded_by", "witness", "notice")
        .order_by("-recorded_at", "-id")
    )


def current_grants(case, events=None):
    """The consents that hold now (one per subject, purpose and counterpart), from one
    read of the timeline: the first event of each key in it is the latest."""
    today = timezone.localdate()
    seen, out = set(), []
    for event in events if events is not None else timeline(case):
        key = (
            event.subject_id,
            event.purpose,
            event.counterpart_id if event.purpose in NAMED_PURPOSES else None,
        )
        if key in seen:
            continue
        seen.add(key)
        if event.decision == ConsentEvent.Decision.GRANTED and not (
            event.expires_on and event.expires_on < today
        ):
            out.append(event)
    return out
