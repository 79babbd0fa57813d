"""Family contact requests: what a family asked, how it was screened and matched, and
what the person who left decided. Everything a family wrote is encrypted under the
request's own data key; the blind indexes stay as tombstones after shredding."""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from casework import audit, vault
from casework.models import Case, Task
from contacts.models import Contact

from . import limits

# Crockford's alphabet without I, L, O, U: easy to read out over the phone.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _code(n: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(n))


def new_reference() -> str:
    return f"FR-{_code(4)}-{_code(4)}"


def new_secret() -> str:
    """20 characters of a 32-letter alphabet: 100 bits, shown once, kept only as a MAC."""
    raw = _code(20)
    return "-".join(raw[i : i + 5] for i in range(0, 20, 5))


def secret_digest(secret: str) -> str:
    cleaned = "".join(ch for ch in str(secret).upper() if ch.isalnum())
    key = hashlib.sha256(b"passage:family-secret|" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, cleaned.encode(), hashlib.sha256).hexdigest()


class FamilyRequest(vault.DataKeyOwner, vault.VaultModel):
    vault_purpose = "family_request"

    class Stage(models.TextChoices):
        NEW = "new", _("New: screening and matching pending")
        TRIAGE = "triage", _("Waiting for a coordinator")
        HANDED = "handed", _("With the case's caseworker")
        RELAY = "relay", _("Messages relayed")
        CLOSED = "closed", _("Closed")

    class Outcome(models.TextChoices):
        NO_MATCH = "no_match", _("No match")
        DECLINED = "declined", _("The person declined")
        SCREENED_OUT = "screened_out", _("Screened out")
        WITHDRAWN = "withdrawn", _("Withdrawn by the family")
        COMPLETED = "completed", _("Completed")

    reference = models.CharField(max_length=14, unique=True, default=new_reference, editable=False)
    secret_digest = models.CharField(max_length=64, editable=False)
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.NEW, db_index=True)
    outcome = models.CharField(max_length=15, choices=Outcome.choices, blank=True)
    language = models.CharField(max_length=10, default="en")
    notice_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="family_requests"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="family_requests"
    )
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # The requester.
    requester_name = vault.EncryptedCharField(_("Your name"), max_length=200)
    relationship = vault.EncryptedCharField(_("Your relationship"), max_length=100)
    requester_country = vault.EncryptedCharField(_("Your country"), max_length=100)
    requester_email = vault.EncryptedCharField(_("E-mail"), max_length=254)
    requester_phone = vault.EncryptedCharField(_("Phone"), max_length=60)
    # The person sought.
    sought_names = vault.EncryptedJSONField()
    sought_birth_year = vault.EncryptedJSONField()
    last_place = vault.EncryptedCharField(max_length=200)
    last_year = vault.EncryptedJSONField()
    other_details = vault.EncryptedTextField()
    message = vault.EncryptedTextField()

    blind_indexes = [
        vault.BlindIndex("family.sought_names", ("sought_names",), rows=1_000_000),
        vault.BlindIndex("family.requester_names", ("requester_name",), rows=1_000_000),
        vault.BlindIndex(
            "family.requester_phones", ("requester_phone",), rows=1_000_000, kind="phone"
        ),
        vault.BlindIndex(
            "family.requester_emails", ("requester_email",), rows=1_000_000, kind="email"
        ),
    ]

    class Meta:
        default_permissions = ()
        indexes = [
            # Triage, oldest first, by key: only the open requests, however many closed
            # ones accumulate (families/staff_views.py TRIAGE_ORDER).
            models.Index(
                fields=["created_at", "reference"],
                condition=models.Q(stage__in=["new", "triage"]),
                name="family_triage_order",
            ),
        ]

    def __str__(self):
        return self.reference

    def check_secret(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_digest, secret_digest(secret))

    def family_closed_at(self):
        """When the family is shown "closed": never earlier than the configured minimum
        after submission, so a request that matched nothing and closed within minutes
        reads like one the person declined weeks later. None while it is open."""
        if self.stage != self.Stage.CLOSED:
            return None
        closed = self.closed_at or self.created_at
        return max(closed, self.created_at + limits.closed_no_earlier_than())

    def family_state(self, now=None) -> str:
        """What the family sees, by the clock alone: "received" for a fixed time after
        submission, then "in progress", then "closed" from family_closed_at. Nothing
        here depends on a match, a hand-over or an answer; "a reply is waiting" is
        added only when there is something to read (services.shown_to_family)."""
        now = now or timezone.now()
        shown_closed = self.family_closed_at()
        if shown_closed is not None and now >= shown_closed:
            return "closed"
        if now >= self.created_at + limits.received_for():
            return "in_progress"
        return "received"


class ScreeningFlag(models.Model):
    """A reason for a coordinator to look twice. Codes only; never shown to the family."""

    class Kind(models.TextChoices):
        REQUESTER_ON_DND = "requester_on_dnd", _("The requester is on a do-not-disclose list")
        SOUGHT_REPEATEDLY = (
            "sought_repeatedly",
            _("The same person is sought by several requesters"),
        )

    request = models.ForeignKey(FamilyRequest, on_delete=models.CASCADE, related_name="flags")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    other_request = models.ForeignKey(
        FamilyRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["request", "kind", "case", "other_request"], name="one_flag"
            )
        ]

    def __str__(self):
        return self.kind


class MatchCandidate(models.Model):
    """A case that may be the person sought (among cases that agreed to family tracing)."""

    request = models.ForeignKey(FamilyRequest, on_delete=models.CASCADE, related_name="candidates")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    reasons = models.JSONField(default=list)  # codes: names, birth_year, place

    class Meta:
        default_permissions = ()
        ordering = ["-score"]
        constraints = [models.UniqueConstraint(fields=["request", "case"], name="one_candidate")]

    def __str__(self):
        return f"{self.score:.2f}"


class FamilyMessage(vault.VaultModel):
    """A follow-up the family sent before any relay exists (kept for the caseworker)."""

    vault_owner = "request"

    request = models.ForeignKey(FamilyRequest, on_delete=models.CASCADE, related_name="followups")
    body = vault.EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()
        ordering = ["created_at"]

    def __str__(self):
        return "follow-up"


class Disclosure(vault.VaultModel):
    """Contact details to share or a meeting to arrange: released only after a second
    person approved it and the cooling-off period passed, with consent still holding."""

    # Once decided (approved or cancelled) it only moves forward: an approved one is
    # released or cancelled, once. Database triggers refuse any other change and every
    # delete; who proposed it and what it is never change (casework/audit.py).
    append_only = audit.History(
        open_while={"approved_at": None, "cancelled_at": None},
        keep=("request", "kind", "proposed_by", "proposed_at", "released_at"),
        steps=(
            audit.Step(
                when={"approved_at": audit.SET, "released_at": None, "cancelled_at": None},
                to={"released_at": audit.SET},
            ),
            audit.Step(
                when={"released_at": None, "cancelled_at": None}, to={"cancelled_at": audit.SET}
            ),
        ),
    )

    vault_owner = "request"

    class Kind(models.TextChoices):
        SHARE_CONTACT = "share_contact", _("Share contact details")
        MEET = "meet", _("Meet")

    request = models.ForeignKey(FamilyRequest, on_delete=models.CASCADE, related_name="disclosures")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    details = vault.EncryptedTextField()
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    release_after = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return self.kind
