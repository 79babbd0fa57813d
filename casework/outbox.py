"""The notification outbox: every e-mail Passage sends is a row first (issue 13, item 5).

1. Queue. The code that causes a notice (a break-glass, a sealed case opened, an account
   change, a daily digest) calls `notification_queue(...)` in its own transaction: one
   row per recipient, naming the recipient by account id and the subject by ids and
   codes only. A rolled-back event leaves no row and sends nothing. A unique constraint
   on (key, recipient) makes a second run of a digest find its row taken and queue
   nothing: one e-mail per person per digest and day, however many runs or beats.
2. Hand over. After commit each new row's id goes to the `deliver` task; nothing else
   travels through the broker.
3. Send. `notification_deliver` claims the row with a conditional update (a lease), so
   two deliveries of one message, a retry and a sweeper's re-send never send twice
   while the lease holds. It renders the e-mail then, from the ids (a secret link is
   made in the worker, never passed along), resolves the address then (an address is
   personal data: it is not copied into the outbox), sends, and marks the row sent under
   its lease.
4. Retry. A failure (SMTP refused, timed out) records the error class and the time of the
   next try, doubling from PASSAGE_OUTBOX_RETRY_SECONDS up to an hour apart; the worker
   schedules that try, and the sweeper re-sends any row whose try is overdue (the message
   was lost with a broker restart, the worker died). A row is given up (logged) once its
   kind's lifetime has passed.

One exception to "ids only": the old address of an account whose e-mail changed must be
told, and the account no longer has it. That row keeps the address sealed under a data key
of its own (the vault's AES-GCM, bound to the row) and shreds the key once the row is done.

What cannot be promised: an SMTP server that accepts a message, and a worker that dies
before marking it sent, send it again after the lease (the Message-ID stays the same, so
many mail systems drop the copy).
"""

import datetime
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone, translation

__all__ = [
    "Notification",
    "notification_queue",
    "notification_deliver",
    "notifications_due",
    "register",
]

logger = logging.getLogger("passage.outbox")

LEASE = datetime.timedelta(minutes=5)  # far longer than one SMTP exchange (EMAIL_TIMEOUT)
SWEEP_GRACE = datetime.timedelta(minutes=1)  # a try this late lost its message
CLOCK_SLACK = datetime.timedelta(seconds=5)  # workers' clocks differ a little
RETRY_CAP_SECONDS = 3600
ADDRESS_PURPOSE = "outbox-address"
ADDRESS_TABLE = "casework_notification"


class Notification(models.Model):
    """One e-mail to one person: ids and codes only, rendered and addressed when sent."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        SKIPPED = "skipped"  # nothing to say any more (no address, link used, account gone)
        FAILED = "failed"  # given up after its lifetime

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=40)
    about = models.CharField(max_length=64, blank=True)  # a case's, account's, team's or link's id
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    codes = models.JSONField(default=list, blank=True)  # what changed, a day, a count
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    key = models.CharField(max_length=100)  # the event, or "digest_caseworker:2026-12-05"
    created_at = models.DateTimeField(default=timezone.now)
    give_up_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease = models.UUIDField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=60, blank=True)  # an exception's class name only
    # Only for an address the account no longer has (see the module): sealed, then shredded.
    data_key = models.OneToOneField(
        "casework.DataKey",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        editable=False,
        related_name="+",
    )
    address = models.BinaryField(null=True, blank=True, editable=False)

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["key", "recipient"], name="one_notification_per_recipient"
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self):
        return f"notification {self.id} ({self.kind}, {self.status})"


# --- Kinds: who is told, and what the e-mail says ------------------------------------------------
@dataclass(frozen=True)
class Kind:
    # (row) -> (subject, body), or None when there is nothing to say any more
    render: Callable
    # (about=, actor=, codes=) -> users, for callers that do not name the recipients
    recipients: Callable | None = None
    fallback: str = ""  # the kind to use when `recipients` finds nobody
    lifetime: datetime.timedelta | None = None  # default: PASSAGE_OUTBOX_GIVE_UP_HOURS


KINDS: dict[str, Kind] = {}


def register(name: str, *, render, recipients=None, fallback: str = "", lifetime=None) -> None:
    """Declare a kind of notice (apps do it in their tasks module, which workers import)."""
    KINDS[name] = Kind(render=render, recipients=recipients, fallback=fallback, lifetime=lifetime)


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("tasks")
    return KINDS[name]


# --- 1. Queue ---------------------------------------------------------------------------------------
def notification_queue(
    *,
    kind: str,
    about: str = "",
    actor=None,
    codes: Iterable[str] = (),
    recipients: Iterable | None = None,
    key: str = "",
    address: str = "",
    send_now: bool = False,
) -> list[str]:
    """Queue `kind` in the current transaction; returns the ids of the rows made.

    `recipients`: accounts; by default the kind's own rule picks them (and its fallback
    kind's, when nobody). `key`: rows of one key go once to each recipient (a digest's
    kind and day); by default every call is an event of its own. `address`: an address
    the account no longer has (kept sealed). Each row's id goes to the worker after the
    commit; `send_now` is for a periodic job outside any transaction, whose rows are
    saved already: it hands each over at once (in line when tasks run eagerly).
    """
    from .background import enqueue, send
    from .tasks import deliver

    codes = [str(c) for c in codes]
    spec = kind_of(kind)
    if recipients is None and spec.recipients is not None:
        recipients = list(spec.recipients(about=about, actor=actor, codes=codes))
        if not recipients and spec.fallback:
            kind, spec = spec.fallback, kind_of(spec.fallback)
            recipients = list(spec.recipients(about=about, actor=actor, codes=codes))
    recipients = list(recipients if recipients is not None else [None])
    key = key or f"{kind}:{uuid.uuid4()}"
    lifetime = spec.lifetime or datetime.timedelta(hours=settings.PASSAGE_OUTBOX_GIVE_UP_HOURS)
    made = []
    with transaction.atomic():
        for user in recipients:
            row = Notification(
                kind=kind,
                about=str(about),
                actor=actor if actor is not None and actor.pk else None,
                codes=codes,
                recipient=user,
                key=key,
                give_up_at=timezone.now() + lifetime,
            )
            try:
                with transaction.atomic():
                    if address:
                        _seal(row, address)
                    row.save(force_insert=True)
            except IntegrityError:  # this key reached this person already (another run)
                continue
            made.append(str(row.pk))
        if not send_now:
            for pk in made:
                enqueue(deliver, pk)
    if send_now:
        for pk in made:
            send(deliver, pk)
    return made


def _address_aad(row_id) -> bytes:
    from . import vault

    return vault.field_aad(ADDRESS_TABLE, "address", row_id)


def _seal(row: Notification, address: str) -> None:
    from . import vault
    from .models import DataKey

    row.data_key = DataKey.objects.create_for(ADDRESS_PURPOSE, row.id)
    row.address = vault.encrypt(row.data_key.dek(), address.encode(), _address_aad(row.id))


def _unseal(row: Notification) -> str:
    from . import vault

    return vault.decrypt(row.data_key.dek(), row.address, _address_aad(row.id)).decode()


# --- 3. Send, 4. retry ------------------------------------------------------------------------------
def notification_deliver(*, notification_id: str) -> float | None:
    """Send one row if it is due and nobody holds it; the seconds until its next try if
    this try failed, else None.

    1. Claim: a conditional update takes a lease (a new lease id, `attempts` + 1); a
       row that is sent, skipped, given up, held by another worker or not yet due is
       left alone.
    2. Past its lifetime: given up (logged), its sealed address shredded.
    3. Render and address it now; nothing to say (no address, a used link, a deleted
       case) marks it skipped.
    4. Send; mark it sent, only under this lease. A failure frees the lease and sets
       the next try; the caller schedules it, the sweeper catches it if that is lost.
    """
    now = timezone.now()
    lease = uuid.uuid4()
    claimed = (
        Notification.objects.filter(
            pk=notification_id,
            status=Notification.Status.PENDING,
            next_attempt_at__lte=now + CLOCK_SLACK,
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(lease=lease, leased_until=now + LEASE, attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    row = Notification.objects.select_related("recipient", "actor", "data_key").get(
        pk=notification_id
    )
    if now >= row.give_up_at:
        logger.error("notification %s (%s) given up after %d tries", row.pk, row.kind, row.attempts)
        _finish(row, lease, Notification.Status.FAILED)
        return None
    try:
        message = _message(row)
        if message is None:
            _finish(row, lease, Notification.Status.SKIPPED)
            return None
        message.send()
    except Exception as exc:  # SMTP refused or silent, a rendering fault: try again later
        return _failed(row, lease, exc)
    _finish(row, lease, Notification.Status.SENT)
    return None


def _message(row: Notification):
    from django.core.mail import EmailMessage
    from django.core.mail.utils import DNS_NAME

    if row.address is not None:
        address = _unseal(row)
    else:
        address = row.recipient.email if row.recipient is not None else ""
    if not address:
        return None
    with translation.override(settings.LANGUAGE_CODE):
        rendered = kind_of(row.kind).render(row)
    if rendered is None:
        return None
    subject, body = rendered
    return EmailMessage(
        subject,
        body,
        None,
        [address],
        # One id per row, the same on every try: a copy sent again after a crash is
        # recognisable (and dropped by many mail systems).
        headers={"Message-ID": f"<{row.pk}@{DNS_NAME}>"},
    )


def _finish(row: Notification, lease, status: str) -> None:
    done = Notification.objects.filter(pk=row.pk, lease=lease).update(
        status=status,
        sent_at=timezone.now() if status == Notification.Status.SENT else None,
        lease=None,
        leased_until=None,
        last_error="",
    )
    if not done:  # the lease ran out and another worker took the row: it is theirs now
        logger.warning("notification %s finished after its lease ran out", row.pk)
    elif row.data_key_id is not None:
        _forget_address(row)


def _failed(row: Notification, lease, exc: Exception) -> float:
    delay = min(
        RETRY_CAP_SECONDS, settings.PASSAGE_OUTBOX_RETRY_SECONDS * 2 ** max(0, row.attempts - 1)
    )
    delay *= random.uniform(0.9, 1.1)  # spread the retries of a burst
    Notification.objects.filter(pk=row.pk, lease=lease).update(
        lease=None,
        leased_until=None,
        next_attempt_at=timezone.now() + datetime.timedelta(seconds=delay),
        last_error=type(exc).__name__[:60],
    )
    # The class only: an SMTP error's text can hold the address.
    logger.warning(
        "notification %s (%s) not sent (%s), try %d; next in %ds",
        row.pk,
        row.kind,
        type(exc).__name__,
        row.attempts,
        delay,
    )
    return delay


def _forget_address(row: Notification) -> None:
    """Shred the sealed address: the row keeps no way back to it."""
    from .models import DataKey

    with transaction.atomic():
        Notification.objects.filter(pk=row.pk).update(address=None, data_key=None)
        DataKey.objects.filter(pk=row.data_key_id, purpose=ADDRESS_PURPOSE).delete()


def notifications_due(limit: int = 500) -> list[str]:
    """Rows whose try is overdue and unheld: their message was lost (a broker restart
    without persistence, a dead worker, a send that never reached the broker)."""
    now = timezone.now()
    rows = (
        Notification.objects.filter(
            status=Notification.Status.PENDING, next_attempt_at__lte=now - SWEEP_GRACE
        )
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in rows]
