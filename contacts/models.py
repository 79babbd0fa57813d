"""The people around a case, what they and the person agreed to, and mediated messages."""

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from casework import audit, vault
from casework.models import Case
from casework.versions import Versioned


class ContactKind(models.TextChoices):
    FAMILY = "family", _("Family member")
    FRIEND = "friend", _("Friend")
    VOLUNTEER = "volunteer", _("Volunteer")
    MENTOR = "mentor", _("Mentor from the community")
    AGENCY = "agency", _("Partner agency")


class Contact(Versioned, vault.VaultModel):
    """Someone in the person's life or work: details encrypted under the case's key."""

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="contacts")
    kind = models.CharField(_("kind"), max_length=20, choices=ContactKind.choices)
    name = vault.EncryptedCharField(_("name"), max_length=200)
    relationship = vault.EncryptedCharField(_("relationship or role"), max_length=100)
    organisation = vault.EncryptedCharField(_("organisation"), max_length=200)
    phone = vault.EncryptedCharField(_("phone"), max_length=60)
    email = vault.EncryptedCharField(_("e-mail"), max_length=254)
    notes = vault.EncryptedTextField(_("notes"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    blind_indexes = [
        vault.BlindIndex("contact.names", ("name",), rows=1_000_000),
        vault.BlindIndex("contact.phones", ("phone",), rows=1_000_000, kind="phone"),
        vault.BlindIndex("contact.emails", ("email",), rows=1_000_000, kind="email"),
    ]

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"contact {self.pk}"


class DoNotDisclose(vault.VaultModel):
    """Someone the person fears. Kept as blind indexes (for screening family requests)
    and an encrypted value for the caseworkers to read."""

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="do_not_disclose")
    name = vault.EncryptedCharField(_("name"), max_length=200)
    phone = vault.EncryptedCharField(_("phone"), max_length=60)
    email = vault.EncryptedCharField(_("e-mail"), max_length=254)
    note = vault.EncryptedTextField(_("why"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    blind_indexes = [
        vault.BlindIndex("dnd.names", ("name",), rows=1_000_000),
        vault.BlindIndex("dnd.phones", ("phone",), rows=1_000_000, kind="phone"),
        vault.BlindIndex("dnd.emails", ("email",), rows=1_000_000, kind="email"),
    ]

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"do-not-disclose {self.pk}"


class Purpose(models.TextChoices):
    PROCESSING = "processing", _("Processing of their data")
    TRACING = "tracing", _("Family tracing")
    RELAY = "relay", _("Relaying messages with a named contact")
    SHARE_CONTACT = "share_contact", _("Sharing contact details with a named contact")
    MEET = "meet", _("Meeting a named contact")
    SHARE_AGENCY = "share_agency", _("Sharing with a named agency")
    PHOTOGRAPHS = "photographs", _("Photographs")


# Purposes that are given towards one named contact (or agency).
NAMED_PURPOSES = {Purpose.RELAY, Purpose.SHARE_CONTACT, Purpose.MEET, Purpose.SHARE_AGENCY}


class NoticeText(models.Model):
    """The text shown when a consent is recorded, versioned per purpose and language.
    A consent event keeps the hash of the exact text that was shown."""

    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    language = models.CharField(max_length=10)
    version = models.PositiveIntegerField()
    text = models.TextField()
    sha256 = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "language", "version"], name="one_notice_version"
            )
        ]
        ordering = ["purpose", "language", "-version"]

    def __str__(self):
        return f"{self.purpose}/{self.language} v{self.version}"

    def save(self, *args, **kwargs):
        self.sha256 = hashlib.sha256(self.text.encode()).hexdigest()
        super().save(*args, **kwargs)

    @classmethod
    def current(cls, purpose: str, language: str) -> "NoticeText | None":
        notice = cls.objects.filter(purpose=purpose, language=language).first()
        return notice or cls.objects.filter(purpose=purpose, language="en").first()


class ConsentEvent(vault.VaultModel):
    """One entry of the consent ledger. Append-only: database triggers refuse UPDATE and
    DELETE. The current state is computed from the ledger (contacts/consent.py)."""

    vault_owner = "case"
    append_only = True

    class Decision(models.TextChoices):
        GRANTED = "granted", _("Granted")
        DECLINED = "declined", _("Declined")
        WITHDRAWN = "withdrawn", _("Withdrawn")
        LAPSED = "lapsed", _("Lapsed (expired)")

    class Method(models.TextChoices):
        SIGNED_PAPER = "signed_paper", _("Signed paper (scanned)")
        VERBAL = "verbal", _("Verbal, with a second staff member as witness")
        IN_PERSON = "in_person", _("In person")
        ONLINE = "online", _("Online")

    case = models.ForeignKey(
        Case, on_delete=models.DO_NOTHING, db_constraint=False, related_name="consent_events"
    )
    # The subject: the case's person (no contact) or one of the case's contacts.
    subject = models.ForeignKey(
        Contact,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="consents_given",
    )
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    counterpart = models.ForeignKey(
        Contact,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="consents_towards",
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    notice = models.ForeignKey(NoticeText, null=True, blank=True, on_delete=models.PROTECT)
    notice_sha256 = models.CharField(max_length=64, blank=True)
    method = models.CharField(max_length=20, choices=Method.choices)
    scan_blob = models.CharField(max_length=32, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    witness = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    recorded_at = models.DateTimeField(default=timezone.now)
    expires_on = models.DateField(null=True, blank=True)
    # Only for SHARE_AGENCY etc. where details matter; encrypted.
    remarks = vault.EncryptedTextField()

    class Meta:
        default_permissions = ()
        ordering = ["recorded_at", "id"]
        indexes = [models.Index(fields=["case", "purpose", "recorded_at"], name="consent_lookup")]

    def __str__(self):
        return f"{self.purpose} {self.decision}"


class Thread(vault.VaultModel):
    """Messages between the case's person and one contact, relayed by the organisation."""

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="threads")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="threads")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["case", "contact"], name="one_thread")]

    def __str__(self):
        return f"thread {self.pk}"


class Message(vault.VaultModel):
    """A message waiting for review, approved, delivered, returned, blocked or stopped."""

    vault_owner = "thread.case"

    class Direction(models.TextChoices):
        TO_CONTACT = "to_contact", _("From the person to the contact")
        FROM_CONTACT = "from_contact", _("From the contact to the person")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for review")
        APPROVED = "approved", _("Approved, waiting for delivery")
        DELIVERED = "delivered", _("Delivered")
        RETURNED = "returned", _("Returned for changes")
        BLOCKED = "blocked", _("Blocked")
        STOPPED = "stopped", _("Stopped: consent withdrawn")

    WAITING = [Status.PENDING, Status.APPROVED]

    # Once reviewed, a message only moves forward (approved -> delivered or stopped);
    # database triggers refuse any other change and every delete (casework/audit.py).
    append_only = audit.History(
        open_while={"status": Status.PENDING},
        keep=("thread", "direction", "created_by", "created_at"),
        steps=(
            audit.Step(
                when={"status": Status.APPROVED},
                to={"status": Status.DELIVERED, "delivered_at": audit.SET},
            ),
            audit.Step(when={"status": Status.APPROVED}, to={"status": Status.STOPPED}),
        ),
    )

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=20, choices=Direction.choices)
    body = vault.EncryptedTextField(_("message"))
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    review_reason = vault.EncryptedTextField(_("reason"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"message {self.status}"

    def may_review(self, user) -> bool:
        """Two people: whoever wrote a message never reviews it (a family's own
        follow-up, written by nobody on the staff, goes to any colleague)."""
        return self.created_by_id is None or self.created_by_id != user.pk
