import secrets
import uuid

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AbstractUser, Group
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from . import vault
from .versions import Versioned


class Role(models.TextChoices):
    """The four staff roles; each is a Group created by a data migration."""

    CASEWORKER = "caseworker", _("Caseworker")
    COORDINATOR = "coordinator", _("Coordinator")
    AUDITOR = "auditor", _("Auditor")
    ADMINISTRATOR = "administrator", _("Administrator")

    @staticmethod
    def group(role: str) -> Group:
        # get_or_create: a database flushed by transactional tests has lost the
        # migration-made groups.
        return Group.objects.get_or_create(name=role)[0]


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ["username"]

    @property
    def roles(self) -> set[str]:
        # Cached per request object: pages ask several times. A user loaded for a request
        # (staff.StaffBackend) has them from the same query as its row.
        if not hasattr(self, "_roles"):
            self._roles = set(self.groups.values_list("name", flat=True))
        return self._roles

    @classmethod
    def with_roles(cls):
        """Users with their roles in the row's own query: one EXISTS per role, each on the
        (user, group) index, instead of a query of the groups per request."""
        from django.db.models import Exists, OuterRef

        member = cls.groups.through.objects.filter(user=OuterRef("pk"))
        return cls._default_manager.annotate(
            **{f"_in_{role}": Exists(member.filter(group__name=role)) for role in Role.values}
        )

    def take_roles(self) -> None:
        """Keep the roles a with_roles() query brought (cached as `roles` would)."""
        self._roles = {role for role in Role.values if getattr(self, f"_in_{role}", False)}

    def has_role(self, role: str) -> bool:
        return self.is_active and role in self.roles

    def role_labels(self) -> list[str]:
        return [str(label) for value, label in Role.choices if value in self.roles]


class Team(models.Model):
    """Coordinators lead teams; caseworkers belong to them. Cases belong to one team."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(_("name"), max_length=100, unique=True)
    coordinators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="led_teams",
        blank=True,
        verbose_name=_("coordinators"),
        limit_choices_to={"groups__name": Role.COORDINATOR},
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="teams",
        blank=True,
        verbose_name=_("caseworkers"),
        limit_choices_to={"groups__name": Role.CASEWORKER},
    )
    family_triage = models.BooleanField(
        _("triages family requests"),
        default=False,
        help_text=_(
            "Its coordinators read and triage family requests that matched no case "
            "(requests that matched a case go to that case's team)."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("team")
        verbose_name_plural = _("teams")

    def __str__(self):
        return self.name


# Backup codes: 10 characters from an alphabet without look-alikes (about 50 bits).
BACKUP_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
BACKUP_CODE_LENGTH = 10


def normalise_backup_code(token: str) -> str:
    return "".join(ch for ch in str(token).upper() if ch.isalnum())


class BackupCodeDevice(ThrottlingMixin, Device):
    """Single-use backup codes, stored only as password hashes.

    django-otp's StaticDevice keeps its tokens in plain text; anyone reading a
    database dump could log in with them. Here a code is shown once and kept as an
    Argon2 hash, like a password.
    """

    class Meta(Device.Meta):
        verbose_name = _("backup code set")

    def generate_codes(self, count: int | None = None) -> list[str]:
        count = count or settings.BACKUP_CODE_COUNT
        codes = [
            "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
            for _ in range(count)
        ]
        with transaction.atomic():
            self.codes.all().delete()
            BackupCode.objects.bulk_create(
                BackupCode(device=self, code_hash=make_password(code)) for code in codes
            )
        return [f"{code[:5]}-{code[5:]}" for code in codes]

    def remaining(self) -> int:
        return self.codes.filter(used_at__isnull=True).count()

    def verify_token(self, token) -> bool:
        allowed, _details = self.verify_is_allowed()
        if not allowed:
            return False
        token = normalise_backup_code(token)
        if len(token) != BACKUP_CODE_LENGTH:
            return False
        for code in self.codes.filter(used_at__isnull=True):
            if check_password(token, code.code_hash):
                # Conditional update: two logins racing with one code, one wins.
                used = BackupCode.objects.filter(pk=code.pk, used_at__isnull=True).update(
                    used_at=timezone.now()
                )
                if used:
                    self.throttle_reset()
                    return True
        self.throttle_increment()
        return False

    def get_throttle_factor(self):
        return 1


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=256)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"backup code ({'used' if self.used_at else 'unused'})"


class DataKeyManager(models.Manager):
    def create_for(self, purpose: str, owner_id) -> "DataKey":
        """A fresh random DEK for one owner, wrapped by the active KEK."""
        key_id = uuid.uuid4()
        kek_id, wrapped = vault.wrap_dek(
            secrets.token_bytes(vault.KEY_BYTES), purpose=purpose, owner_id=owner_id
        )
        return self.create(
            id=key_id, purpose=purpose, owner_id=owner_id, kek_id=kek_id, wrapped=wrapped
        )


class DataKey(models.Model):
    """One owner's data-encryption key, wrapped by a key-encryption key (KEK).

    Destroying `wrapped` (shredding) makes every value under this key unreadable.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purpose = models.CharField(max_length=40)
    owner_id = models.UUIDField()
    kek_id = models.CharField(max_length=64, db_index=True)
    wrapped = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    shredded_at = models.DateTimeField(null=True, blank=True)

    objects = DataKeyManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["purpose", "owner_id"], name="one_data_key_per_owner")
        ]

    def __str__(self):
        return f"data key {self.id} ({self.purpose})"

    def dek(self) -> bytes:
        """The unwrapped key, kept on this object only (one request, one job batch)."""
        if self.shredded_at is not None:
            raise vault.Shredded("This record was shredded.")
        if not hasattr(self, "_dek"):
            self._dek = vault.unwrap_dek(
                self.wrapped, purpose=self.purpose, owner_id=self.owner_id, kek_id=self.kek_id
            )
        return self._dek

    def refresh_from_db(self, *args, **kwargs):
        self.__dict__.pop("_dek", None)
        super().refresh_from_db(*args, **kwargs)


class BlindIndexEntry(models.Model):
    """One truncated HMAC of a normalised value (kind "w": whole, "t": token)."""

    index = models.CharField(max_length=60)
    kind = models.CharField(max_length=1)
    value = models.BigIntegerField()
    row_id = models.UUIDField()
    data_key = models.ForeignKey(DataKey, on_delete=models.CASCADE, related_name="+")

    class Meta:
        indexes = [
            # With the row: a lookup (search, matching) reads the index alone, never the
            # table, and groups the rows of each value in order.
            models.Index(fields=["index", "kind", "value", "row_id"], name="blind_index_offer"),
            models.Index(fields=["index", "row_id"], name="blind_index_row"),
        ]

    def __str__(self):
        return f"{self.index}/{self.kind}"


class Job(models.Model):
    """A long-running job (key rotation, exports) whose progress the interface polls."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    # Codes only, never personal data (e.g. "kek-20261128-ab12cd").
    detail = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.kind} {self.status} {self.done}/{self.total}"

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, round(100 * self.done / self.total))


# --- Cases ----------------------------------------------------------------------------------------
class Stage(models.TextChoices):
    INTAKE = "intake", _("Intake")
    REFUGE = "refuge", _("Refuge")
    RESETTLEMENT = "resettlement", _("Resettlement")
    REUNIFICATION = "reunification", _("Reunification")
    CLOSED = "closed", _("Closed")


class Aim(models.TextChoices):
    REFUGE = "refuge", _("Refuge")
    RESETTLEMENT = "resettlement", _("Resettlement")
    REUNIFICATION = "reunification", _("Family reunification")
    SUPPORT = "support", _("Counselling and support")


class Risk(models.TextChoices):
    LOW = "low", _("Low")
    MEDIUM = "medium", _("Medium")
    HIGH = "high", _("High")
    CRITICAL = "critical", _("Critical")


class CaseCounter(models.Model):
    """The last reference number handed out in a year (P-2026-0042)."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.year}: {self.last}"

    @classmethod
    def next_reference(cls, year: int) -> str:
        with transaction.atomic():
            cls.objects.get_or_create(year=year)
            cls.objects.filter(year=year).update(last=models.F("last") + 1)
            last = cls.objects.select_for_update().get(year=year).last
        return f"P-{year}-{last:04d}"


class Case(Versioned, vault.DataKeyOwner, vault.VaultModel):
    """A person who left, and the organisation's work with them.

    Everything about the person is encrypted under the case's own data key. Who may
    see the case is decided in casework/access.py, never here.
    """

    vault_purpose = "case"

    reference = models.CharField(_("reference"), max_length=20, unique=True, editable=False)
    team = models.ForeignKey(
        Team, on_delete=models.PROTECT, related_name="cases", verbose_name=_("team")
    )
    # Indexed with the case list's order (Meta.indexes), not alone.
    stage = models.CharField(_("stage"), max_length=20, choices=Stage.choices, default=Stage.INTAKE)
    aims = models.JSONField(_("aims"), default=list, blank=True)
    risk = models.CharField(
        _("risk level"), max_length=10, choices=Risk.choices, default=Risk.MEDIUM
    )
    sealed = models.BooleanField(_("sealed"), default=False)
    opened_on = models.DateField(_("opened"), default=timezone.localdate)
    closed_on = models.DateField(_("closed"), null=True, blank=True)
    retention_until = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    # The person, encrypted.
    legal_name = vault.EncryptedCharField(_("legal name"), max_length=200)
    other_names = vault.EncryptedJSONField(
        _("other names and aliases"),
        help_text=_(
            "One per line: names used inside the group, earlier names, spellings in other scripts."
        ),
    )
    birth_date = vault.EncryptedDateField(_("date of birth"))
    birth_year = vault.EncryptedJSONField(_("approximate year of birth"))
    gender = vault.EncryptedCharField(_("gender"), max_length=60)
    nationalities = vault.EncryptedCharField(_("nationalities"), max_length=200)
    languages = vault.EncryptedCharField(_("languages"), max_length=200)
    left_on = vault.EncryptedDateField(_("date they left the group"))
    circumstances = vault.EncryptedTextField(_("circumstances"))
    needs = vault.EncryptedTextField(_("needs"))
    safety_notes = vault.EncryptedTextField(_("safety notes"))

    blind_indexes = [vault.BlindIndex("case.names", ("legal_name", "other_names"), rows=1_000_000)]

    PERSON_FIELDS = [
        "legal_name",
        "other_names",
        "birth_date",
        "birth_year",
        "gender",
        "nationalities",
        "languages",
        "left_on",
        "circumstances",
        "needs",
        "safety_notes",
    ]

    class Meta:
        default_permissions = ()  # no model-wide rights: access is per case only
        permissions = [
            ("view_case", "View the case"),
            ("change_case", "Work on the case"),
            ("view_whereabouts", "View the case's whereabouts"),
        ]
        indexes = [
            models.Index(fields=["team", "stage"], name="case_team_stage"),
            # The case list: its order (newest first, then reference), and each filter
            # followed by that order, so a page is a short walk of one index
            # (casework/lists.py CASE_ORDER; caseworker: guardian's own index).
            models.Index(fields=["-opened_on", "-reference"], name="case_list_order"),
            models.Index(fields=["stage", "-opened_on", "-reference"], name="case_list_stage"),
            models.Index(fields=["risk", "-opened_on", "-reference"], name="case_list_risk"),
            models.Index(fields=["team", "-opened_on", "-reference"], name="case_list_team"),
        ]

    def __str__(self):
        return self.reference

    def save(self, *args, **kwargs):
        if not self.reference:
            self.reference = CaseCounter.next_reference(self.opened_on.year)
        super().save(*args, **kwargs)

    @property
    def year_of_birth(self):
        return self.birth_date.year if self.birth_date else self.birth_year

    def aim_labels(self) -> list[str]:
        return [str(label) for value, label in Aim.choices if value in (self.aims or [])]


class StageChange(models.Model):
    """History of a case's stage (codes only; any reason goes into a note)."""

    append_only = True  # database triggers refuse UPDATE and DELETE (casework/audit.py)

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(max_length=20, choices=Stage.choices, blank=True)
    to_stage = models.CharField(max_length=20, choices=Stage.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()
        ordering = ["changed_at", "id"]

    def __str__(self):
        return f"{self.from_stage or '-'} -> {self.to_stage}"


class Whereabouts(Versioned, vault.VaultModel):
    """Where the person is and how to reach them: behind its own permission."""

    vault_owner = "case"

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="whereabouts")
    country = vault.EncryptedCharField(_("country"), max_length=100)
    city = vault.EncryptedCharField(_("city"), max_length=100)
    address = vault.EncryptedTextField(_("address"))
    phone = vault.EncryptedCharField(_("phone"), max_length=60)
    email = vault.EncryptedCharField(_("e-mail"), max_length=254)
    safe_contact = vault.EncryptedTextField(_("safe-contact instructions"))
    code_word = vault.EncryptedCharField(_("code word for call-backs"), max_length=100)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    FIELDS = ["country", "city", "address", "phone", "email", "safe_contact", "code_word"]

    class Meta:
        default_permissions = ()  # rights are per case (casework.view_whereabouts on Case)

    def __str__(self):
        return "whereabouts"

    def places(self) -> list[str]:
        """Place names to watch for in outgoing messages."""
        return [v for v in (self.country, self.city, self.address) if v]


class Note(vault.VaultModel):
    """Append-only case note. A restricted note shows only to the case's caseworkers
    and its team's coordinators."""

    append_only = True  # database triggers refuse UPDATE and DELETE (casework/audit.py)

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    restricted = models.BooleanField(_("restricted"), default=False)
    body = vault.EncryptedTextField(_("note"))

    class Meta:
        default_permissions = ()
        ordering = ["-created_at"]

    def __str__(self):
        return "note"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Notes are append-only: add a new note instead.")
        super().save(*args, **kwargs)


class Attachment(vault.VaultModel):
    """An encrypted file attached to a note, served only by a permission-checked view."""

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="attachments")
    note = models.ForeignKey(Note, on_delete=models.CASCADE, related_name="attachments")
    blob_name = models.CharField(max_length=32, editable=False)
    size = models.PositiveIntegerField()
    filename = vault.EncryptedCharField(max_length=255)
    content_type = vault.EncryptedCharField(max_length=100)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return "attachment"


class BreakGlass(vault.VaultModel):
    """A coordinator's emergency access to a case outside their teams, with a reason."""

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="break_glass")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    justification = vault.EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        default_permissions = ()

    def __str__(self):
        return "break-glass"


class CaseUserObjectPermission(UserObjectPermissionBase):
    """Per-case grants (guardian, direct foreign key: fast joins, real constraints)."""

    content_object = models.ForeignKey(Case, on_delete=models.CASCADE)


class CaseGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Case, on_delete=models.CASCADE)


# --- The access log --------------------------------------------------------------------------
class AccessEvent(models.Model):
    """One row of the tamper-evident access log (see casework/audit.py).

    Append-only: database triggers refuse UPDATE and DELETE. `seq` is an identity
    column: writers take no lock, so numbers can have gaps (a rolled-back transaction)
    and commit out of order; the order that counts is the event's position in the
    Merkle tree, given by the sequencer (casework/transparency.py).
    """

    append_only = True  # database triggers refuse UPDATE and DELETE (casework/audit.py)

    seq = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    action = models.CharField(max_length=60, db_index=True)
    case = models.ForeignKey(
        Case,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    # Names of changed fields and codes only: never decrypted content.
    fields = models.JSONField(default=list, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    flagged = models.BooleanField(default=False, db_index=True)
    request_id = models.CharField(max_length=32, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    mac = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        default_permissions = ()
        indexes = [
            models.Index(fields=["actor", "at"], name="event_actor_at"),
            models.Index(fields=["case", "at"], name="event_case_at"),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action}"


# --- Task queues -------------------------------------------------------------------------------
class TaskAim(models.TextChoices):
    REFUGE = "refuge", _("Refuge")
    RESETTLEMENT = "resettlement", _("Resettlement")
    REUNIFICATION = "reunification", _("Reunification")
    SUPPORT = "support", _("Support")
    ADMINISTRATION = "administration", _("Administration")


class Priority(models.IntegerChoices):
    URGENT = 0, _("Urgent")
    HIGH = 1, _("High")
    NORMAL = 2, _("Normal")
    LOW = 3, _("Low")


class TaskStatus(models.TextChoices):
    OPEN = "open", _("Open")
    IN_PROGRESS = "in_progress", _("In progress")
    WAITING = "waiting", _("Waiting")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


ACTIVE_STATUSES = [TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.WAITING]


class Task(Versioned, vault.VaultModel):
    """A piece of work on a case. Title and details are encrypted under the case's key:
    they often name people."""

    vault_owner = "case"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="tasks")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="tasks")
    title = vault.EncryptedCharField(_("title"), max_length=200)
    details = vault.EncryptedTextField(_("details"))
    aim = models.CharField(
        _("aim"), max_length=20, choices=TaskAim.choices, default=TaskAim.SUPPORT
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"), choices=Priority.choices, default=Priority.NORMAL
    )
    due_on = models.DateField(_("due"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=TaskStatus.choices, default=TaskStatus.OPEN
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        verbose_name=_("assigned to"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()
        indexes = [
            models.Index(fields=["assignee", "status", "due_on"], name="task_queue"),
            models.Index(fields=["team", "status"], name="task_team"),
        ]

    def __str__(self):
        return f"task on {self.case_id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_overdue(self) -> bool:
        return self.is_active and self.due_on is not None and self.due_on < timezone.localdate()


class TaskEvent(vault.VaultModel):
    """The history of a task: created, assigned, claimed, status changed, commented."""

    append_only = True  # database triggers refuse UPDATE and DELETE (casework/audit.py)

    vault_owner = "task.case"

    class Kind(models.TextChoices):
        CREATED = "created", _("created")
        ASSIGNED = "assigned", _("assigned")
        CLAIMED = "claimed", _("claimed")
        STATUS = "status", _("status changed")
        COMMENTED = "commented", _("commented")

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Codes and ids only (statuses, the assignee's id); a comment goes encrypted below.
    detail = models.JSONField(default=dict, blank=True)
    comment = vault.EncryptedTextField()

    class Meta:
        ordering = ["at", "id"]
        default_permissions = ()

    def __str__(self):
        return self.kind


class TaskTemplate(Versioned, models.Model):
    """A checklist per aim that creates a set of tasks due relative to today."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    aim = models.CharField(_("aim"), max_length=20, choices=TaskAim.choices)
    active = models.BooleanField(_("in use"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["aim", "name"]

    def __str__(self):
        return self.name


class TaskTemplateItem(models.Model):
    template = models.ForeignKey(TaskTemplate, on_delete=models.CASCADE, related_name="items")
    title = models.CharField(_("title"), max_length=200)
    priority = models.PositiveSmallIntegerField(
        _("priority"), choices=Priority.choices, default=Priority.NORMAL
    )
    due_in_days = models.PositiveSmallIntegerField(_("due in days"), default=7)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.title


class ReminderLog(models.Model):
    """One digest per person per day: the row is made before sending, so a second run
    of the daily job finds it and sends nothing."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    kind = models.CharField(max_length=20)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "kind"], name="one_digest_per_day")
        ]

    def __str__(self):
        return f"{self.kind} {self.day}"


class DailyRun(models.Model):
    """Marks that a daily job ran today, so the sweeper can tell a missed one."""

    name = models.CharField(max_length=60)
    day = models.DateField()
    finished_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "day"], name="one_run_per_day")]

    def __str__(self):
        return f"{self.name} {self.day}"


# --- Staff security: one-time enrolment links (casework/staff.py) ---------------------------
class EnrolmentLink(models.Model):
    """A one-time link an administrator issues after a second-factor reset.

    The token is not stored: it is an HMAC of the link's id under the secret key
    (casework/staff.py), so a database dump does not hold a usable link. Single use
    (`used_at`, set by a conditional update) and short-lived (`expires_at`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()
        ordering = ["-issued_at"]

    def __str__(self):
        return "enrolment link"


from .drafts import NoteDraft  # noqa: E402, F401  (notes kept over a session timeout, casework/drafts.py)
from .otp import VaultTOTPDevice  # noqa: E402, F401  (defined by topic in casework/otp.py)
from .outbox import *  # noqa: E402, F401, F403  (the notification outbox, casework/outbox.py)
from .transparency import *  # noqa: E402, F401, F403  (the Merkle tree and checkpoints, casework/transparency.py)
from .vault.registry import *  # noqa: E402, F401, F403  (keyring state, casework/vault/registry.py)
from .versions import FormToken  # noqa: E402, F401  (one effect per submission, casework/versions.py)
