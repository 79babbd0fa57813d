import secrets
import uuid

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AbstractUser, Group
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin


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
