import secrets
import uuid

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AbstractUser, Group
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin

from . import vault


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
        # Cached per request object: pages ask several times.
        if not hasattr(self, "_roles"):
            self._roles = set(self.groups.values_list("name", flat=True))
        return self._roles

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
            models.Index(fields=["index", "kind", "value"], name="blind_index_lookup"),
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

    def advance(self, n: int) -> None:
        Job.objects.filter(pk=self.pk).update(done=models.F("done") + n)
        self.done += n
