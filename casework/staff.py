"""Staff accounts: what ends sessions, what an administrator may change, and the access
event and e-mails every such change writes. The admin (casework/admin.py) and the login
steps (casework/accounts.py) call these; nothing here reads an HTTP request."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import access, audit
from .security import lockout_key

logger = logging.getLogger("passage.staff")


# --- Sessions -----------------------------------------------------------------------------------
PASSWORD_AT_KEY = "passage_password_at"  # when this session's password login happened
ENROLMENT_LINK_KEY = "passage_enrolment_link"  # the enrolment link this browser opened
DB_SESSION_ENGINES = (
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
)


def end_sessions(user, *, keep: str | None = None) -> int:
    """Delete every server-side session of `user` except `keep` (the caller's own).

    Why delete rows rather than stamp the user and compare in middleware: a stamp costs
    a query on every request (or a field on the user model); a reset is rare, and the
    session table holds only the last hours' sessions, so finding them by decoding is
    cheap where it happens. Deleted rows are gone at once, whatever the next request.
    """
    if settings.SESSION_ENGINE not in DB_SESSION_ENGINES:
        raise ImproperlyConfigured("end_sessions needs database-backed sessions.")
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.models import Session

    store = import_module(settings.SESSION_ENGINE).SessionStore
    live = Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep)
    keys = [
        key
        for key, data in live.values_list("session_key", "session_data")
        if store().decode(data).get(SESSION_KEY) == str(user.pk)
    ]
    for key in keys:
        store(session_key=key).delete()
    return len(keys)


# --- Staff accounts: the rules --------------------------------------------------------------------
class AccountActionRefused(PermissionDenied):
    """An account change this administrator may not make; the message says why."""


CASE_ROLES = frozenset({"caseworker", "coordinator"})
WATCHING_ROLES = frozenset({"administrator", "auditor"})
# Any two of these on one account by one administrator, within the window, need a
# second administrator: together they hand the account to whoever receives the mail.
RESET_ACTIONS = ("staff.password_reset_sent", "staff.second_factor_reset", "staff.email_changed")
SECOND_ADMINISTRATOR = gettext_lazy(
    "A second administrator must do this: you recently reset this account's password, "
    "second factor or e-mail address, and one person may not do two of these."
)


def reset_window() -> timedelta:
    return timedelta(days=settings.PASSAGE_RESET_PAIR_DAYS)


def enrolment_link_lifetime() -> timedelta:
    return timedelta(minutes=settings.PASSAGE_ENROLMENT_LINK_MINUTES)


def role_conflict(roles) -> str | None:
    """Why this set of roles cannot go on one account, or None.

    Administrators and auditors watch the people who read cases; an account that does
    both could read what it watches (casework/access.py refuses it case rights too).
    """
    roles = set(roles)
    watching, reading = sorted(roles & WATCHING_ROLES), sorted(roles & CASE_ROLES)
    if watching and reading:
        return _(
            "An account with the %(watching)s role cannot also have a case role "
            "(%(reading)s). Use a separate account for each."
        ) % {"watching": ", ".join(watching), "reading": ", ".join(reading)}
    return None


def needs_second_administrator(actor, user, action: str) -> bool:
    """Has `actor` done another of RESET_ACTIONS to `user` within the window?"""
    from .models import AccessEvent

    return AccessEvent.objects.filter(
        actor=actor,
        object_type="user",
        object_id=str(user.pk),
        action__in=[a for a in RESET_ACTIONS if a != action],
        at__gte=timezone.now() - reset_window(),
    ).exists()


def _refuse_self_and_pairs(actor, user, action: str) -> None:
    if actor.pk == user.pk:
        raise AccountActionRefused(_("Another administrator must do this for your own account."))
    if needs_second_administrator(actor, user, action):
        raise AccountActionRefused(str(SECOND_ADMINISTRATOR))


def last_second_factor_reset(user):
    from .models import AccessEvent

    return (
        AccessEvent.objects.filter(
            action="staff.second_factor_reset", object_type="user", object_id=str(user.pk)
        )
        .order_by("-seq")
        .values_list("at", flat=True)
        .first()
    )


# --- Staff accounts: telling people ----------------------------------------------------------------
def _tell_holder(user, actor, *changes: str) -> None:
    from .outbox import notification_queue

    notification_queue(kind="account_changed", about=str(user.pk), actor=actor, codes=changes)


def _tell_team(team, actor, user) -> None:
    """The team's other coordinators hear that who sees its cases has widened."""
    from .outbox import notification_queue

    notification_queue(kind="access_widened", about=str(team.pk), actor=actor, codes=[user.pk])


def _tell_old_address(address: str) -> None:
    """The address an account had hears that it changed. The account no longer has it,
    so the outbox row keeps it sealed until it is sent (casework/outbox.py): task
    arguments stay ids, and a failed send is retried like any other."""
    if not address:
        return
    from .outbox import notification_queue

    notification_queue(kind="old_address", address=address)


CHANGE_LABELS = {
    "roles": gettext_lazy("your roles"),
    "teams": gettext_lazy("the teams you belong to"),
    "activated": gettext_lazy("your account was activated"),
    "deactivated": gettext_lazy("your account was deactivated"),
    "email": gettext_lazy("the e-mail address of your account"),
    "password": gettext_lazy("your password"),
    "second_factor": gettext_lazy("your second factor was reset"),
    "second_factor_enrolled": gettext_lazy("a new second factor was set up"),
    "passkey_added": gettext_lazy("a passkey was added to your account"),
    "passkey_removed": gettext_lazy("a passkey was removed from your account"),
    "authenticator_removed": gettext_lazy("your authenticator app was removed"),
    "lockout": gettext_lazy("a login lockout was cleared"),
}


def _render(template: str, context: dict) -> tuple[str, str]:
    from django.template.loader import render_to_string

    context = {"url": _absolute(reverse("login")), **context}
    subject = render_to_string(f"emails/{template}_subject.txt", context).strip()
    return subject, render_to_string(f"emails/{template}.txt", context)


def _absolute(path: str) -> str:
    return settings.PASSAGE_BASE_URL.rstrip("/") + path


# Each account notice: who is told (in the transaction of the change), and what the
# e-mail says (when it is sent, in the default language: accounts hold no preference).
def _the_account(*, about, actor, codes):
    from .models import User

    return User.objects.filter(pk=about).exclude(email="")


def _the_link_holder(*, about, actor, codes):
    from .models import EnrolmentLink, User

    holder = EnrolmentLink.objects.filter(pk=about).values("user_id")
    return User.objects.filter(pk__in=holder).exclude(email="")


def _other_coordinators(*, about, actor, codes):
    """The team's coordinators; neither the one who made the change nor the one it
    concerns (its code) are "others"."""
    from .models import Role, Team

    team = Team.objects.filter(pk=about).first()
    if team is None:
        return []
    others = team.coordinators.filter(is_active=True, groups__name=Role.COORDINATOR)
    others = others.exclude(pk__in=[pk for pk in (getattr(actor, "pk", None), *codes) if pk])
    return others.exclude(email="").distinct()


def _account_changed_message(row):
    labels = [CHANGE_LABELS[c] for c in row.codes if c in CHANGE_LABELS]
    return _render("account_changed", {"changes": labels}) if labels else None


def _old_address_message(row):
    return _render("account_changed", {"changes": [CHANGE_LABELS["email"]]})


def _password_reset_message(row):
    return _render("password_reset", {"url": password_reset_url(row.recipient)})


def _enrolment_link_message(row):
    """Nothing once the link is used or has expired (a late retry sends no dead link)."""
    from .models import EnrolmentLink

    link = EnrolmentLink.objects.filter(pk=row.about, user=row.recipient).first()
    if link is None or link.used_at is not None or link.expires_at <= timezone.now():
        return None
    return _render("enrolment_link", {"url": enrolment_link_url(link), "minutes": _minutes(link)})


def _access_widened_message(row):
    return _render("access_widened", {"url": _absolute(reverse("home"))})


def _declare_account_notices() -> None:
    from .outbox import register

    register("account_changed", render=_account_changed_message, recipients=_the_account)
    register("old_address", render=_old_address_message)
    register("password_reset", render=_password_reset_message, recipients=_the_account)
    register("enrolment_link", render=_enrolment_link_message, recipients=_the_link_holder)
    register("access_widened", render=_access_widened_message, recipients=_other_coordinators)


_declare_account_notices()


def _minutes(link) -> int:
    return max(1, round((link.expires_at - link.issued_at).total_seconds() / 60))


def password_reset_url(user) -> str:
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return _absolute(reverse("admin:account_password_set", args=[uid, token]))


def enrolment_link_token(link) -> str:
    return salted_hmac("passage.enrolment-link", str(link.pk), algorithm="sha256").hexdigest()


def enrolment_link_url(link) -> str:
    return _absolute(
        reverse("admin:account_enrolment_link", args=[link.pk, enrolment_link_token(link)])
    )


# --- Staff accounts: what changed, as access events -------------------------------------------------
@dataclass(frozen=True)
class AccountState:
    """What an account change is compared on (read from the database, not a cache)."""

    roles: frozenset
    is_active: bool
    email: str
    names: dict

    NAME_FIELDS = ("username", "first_name", "last_name")

    @classmethod
    def of(cls, user) -> "AccountState":
        from .models import User

        row = User.objects.filter(pk=user.pk).values("is_active", "email", *cls.NAME_FIELDS).get()
        roles = frozenset(User.objects.get(pk=user.pk).groups.values_list("name", flat=True))
        return cls(
            roles=roles,
            is_active=row.pop("is_active"),
            email=row.pop("email"),
            names=row,
        )


def account_recorded(*, actor, user, before: AccountState | None) -> None:
    """Write the events of an account change made in the admin, and tell people.

    1. A new account: `staff.created`, flagged if it holds a case role.
    2. Roles added or removed: `staff.roles_changed`; flagged if a case role was added
       to an active account (who can see cases widened).
    3. Active flag: `staff.deactivated` ends every session; `staff.activated` is flagged
       if the account holds a case role.
    4. E-mail address: `staff.email_changed`, and the old address is told.
    5. The holder is told of 2-4; a widening is told to the coordinators of the
       account's teams.
    """
    after = AccountState.of(user)
    if before is None:
        widened = bool(after.roles & CASE_ROLES)
        audit.record(
            actor,
            "staff.created",
            obj=user,
            fields=["username", "email", "groups"],
            detail={"roles": sorted(after.roles)},
            flagged=widened,
        )
        return
    changes, widened = [], False
    added, removed = after.roles - before.roles, before.roles - after.roles
    if added or removed:
        widened = bool(added & CASE_ROLES) and after.is_active
        audit.record(
            actor,
            "staff.roles_changed",
            obj=user,
            fields=["groups"],
            detail={"added": sorted(added), "removed": sorted(removed)},
            flagged=widened,
        )
        changes.append("roles")
    if before.is_active and not after.is_active:
        ended = end_sessions(user)
        audit.record(
            actor,
            "staff.deactivated",
            obj=user,
            fields=["is_active"],
            detail={"sessions_ended": ended},
        )
        changes.append("deactivated")
    elif after.is_active and not before.is_active:
        reactivated = bool(after.roles & CASE_ROLES)
        audit.record(actor, "staff.activated", obj=user, fields=["is_active"], flagged=reactivated)
        widened = widened or reactivated
        changes.append("activated")
    if before.email != after.email:
        audit.record(actor, "staff.email_changed", obj=user, fields=["email"])
        _tell_old_address(before.email)
        changes.append("email")
    renamed = [name for name, value in after.names.items() if before.names.get(name) != value]
    if renamed:
        audit.record(actor, "staff.updated", obj=user, fields=renamed)
    if changes:
        _tell_holder(user, actor, *changes)
    if widened:
        for team in access.memberships(user):
            _tell_team(team, actor, user)


TEAM_PLACES = {"coordinators": "coordinator", "members": "caseworker"}
TEAM_PLACES_FIELD = {place: field for field, place in TEAM_PLACES.items()}


def team_places(team) -> dict[str, set[str]]:
    """{user id: {"coordinator", "caseworker"}} of one team, from the database."""
    places: dict[str, set[str]] = {}
    if team.pk is None:
        return places
    for field, place in TEAM_PLACES.items():
        for pk in getattr(team, field).values_list("pk", flat=True):
            places.setdefault(str(pk), set()).add(place)
    return places


def team_recorded(*, actor, team, before: dict | None, changed_fields=()) -> None:
    """Write the events of a team change made in the admin, and tell people.

    Each person whose place in the team changed gets `staff.team_membership_changed`
    (flagged when they joined as coordinator or caseworker: who sees the team's cases
    widened), is told, and a joining is told to the team's other coordinators.
    """
    from .models import User

    other = [f for f in changed_fields if f not in TEAM_PLACES]
    if before is None or other:
        action = "team.created" if before is None else "team.updated"
        audit.record(actor, action, obj=team, fields=other)
    before = before or {}
    after = team_places(team)
    for pk in sorted(before.keys() | after.keys()):
        added = after.get(pk, set()) - before.get(pk, set())
        removed = before.get(pk, set()) - after.get(pk, set())
        if not (added or removed):
            continue
        user = User.objects.get(pk=pk)
        places = {TEAM_PLACES_FIELD[p] for p in added | removed}
        audit.record(
            actor,
            "staff.team_membership_changed",
            obj=user,
            fields=sorted(places),
            detail={"team": str(team.pk), "added": sorted(added), "removed": sorted(removed)},
            flagged=bool(added),
        )
        _tell_holder(user, actor, "teams")
        if added:
            _tell_team(team, actor, user)


def team_deleted(*, actor, team) -> None:
    audit.record(actor, "team.deleted", obj=team, detail={"people": len(team_places(team))})


# --- Staff accounts: what an administrator does ---------------------------------------------------
@transaction.atomic
def password_reset_send(*, actor, user, reason: str = "reset") -> None:
    """E-mail the holder a link to set a new password; only they can complete it.

    The current password keeps working until they do. A new account gets the same link
    (reason "new_account"): administrators never choose anyone's password.
    """
    if reason != "new_account":
        _refuse_self_and_pairs(actor, user, "staff.password_reset_sent")
    if not user.email:
        raise AccountActionRefused(_("This account has no e-mail address to send the link to."))
    audit.record(actor, "staff.password_reset_sent", obj=user, detail={"reason": reason})
    from .outbox import notification_queue

    notification_queue(kind="password_reset", about=str(user.pk), actor=actor)


@transaction.atomic
def password_set(*, actor, user, password: str, keep_session: str | None = None) -> None:
    """Set a password (by its holder: a completed reset, or a change of their own) and
    end every other session of the account."""
    # On the object given (it may be request.user, whose session hash must follow).
    user.set_password(password)
    user.save(update_fields=["password"])
    ended = end_sessions(user, keep=keep_session)
    audit.record(
        actor,
        "staff.password_changed",
        obj=user,
        fields=["password"],
        detail={"sessions_ended": ended},
    )
    _tell_holder(user, actor, "password")


@transaction.atomic
def second_factor_reset(*, actor, user) -> None:
    """Remove every device of the account (authenticator, backup codes, any other) and
    end all its sessions. A new device needs an enrolment link and a fresh login."""
    from django_otp import devices_for_user

    from .models import EnrolmentLink

    _refuse_self_and_pairs(actor, user, "staff.second_factor_reset")
    for device in list(devices_for_user(user, confirmed=None)):
        device.delete()
    now = timezone.now()
    EnrolmentLink.objects.filter(user=user, used_at__isnull=True, expires_at__gt=now).update(
        expires_at=now
    )
    ended = end_sessions(user)
    audit.record(
        actor,
        "staff.second_factor_reset",
        obj=user,
        fields=["second_factor"],
        detail={"sessions_ended": ended},
    )
    _tell_holder(user, actor, "second_factor")


@transaction.atomic
def enrolment_link_issue(*, actor, user):
    """A one-time enrolment link, e-mailed to the holder (never shown to the issuer);
    it replaces any earlier unused one."""
    from django_otp import user_has_device

    from .models import EnrolmentLink

    if actor.pk == user.pk:
        raise AccountActionRefused(_("Another administrator must do this for your own account."))
    if user_has_device(user):
        raise AccountActionRefused(
            _("This account has a second factor. Reset it first if it is lost.")
        )
    if not user.email:
        raise AccountActionRefused(_("This account has no e-mail address to send the link to."))
    now = timezone.now()
    EnrolmentLink.objects.filter(user=user, used_at__isnull=True, expires_at__gt=now).update(
        expires_at=now
    )
    link = EnrolmentLink.objects.create(
        user=user, issued_by=actor, issued_at=now, expires_at=now + enrolment_link_lifetime()
    )
    audit.record(actor, "staff.enrolment_link_issued", obj=user, detail={"link": str(link.pk)})
    from .outbox import notification_queue

    notification_queue(kind="enrolment_link", about=str(link.pk), actor=actor)
    return link


def enrolment_link_valid(link_id, token: str):
    """The unused, unexpired link these say, of an active account, or None."""
    from .models import EnrolmentLink

    link = (
        EnrolmentLink.objects.filter(
            pk=link_id, used_at__isnull=True, expires_at__gt=timezone.now(), user__is_active=True
        )
        .select_related("user")
        .first()
    )
    if link is None or not constant_time_compare(str(token), enrolment_link_token(link)):
        return None
    return link


def enrolment_refusal(user, session) -> str | None:
    """Why this session may not enrol a second factor now, or None.

    1. The session must come from a password login (not a session carried over).
    2. After a second-factor reset, it must hold an enrolment link issued after the
       reset, and its password login must be later than the link.
    """
    from .models import EnrolmentLink

    again = _("Log in again with your password to set up your second factor.")
    password_at = session.get(PASSWORD_AT_KEY)
    if not password_at:
        return again
    reset_at = last_second_factor_reset(user)
    if reset_at is None:
        return None
    link = EnrolmentLink.objects.filter(
        pk=_uuid_or_none(session.get(ENROLMENT_LINK_KEY)),
        user=user,
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
        issued_at__gte=reset_at,
    ).first()
    if link is None:
        return _(
            "Your second factor was reset. Ask an administrator for an enrolment link: it "
            "comes by e-mail, works once and for a short time. Open it, then log in."
        )
    if password_at < link.issued_at.timestamp():
        return again
    return None


def _uuid_or_none(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


class EnrolmentRefused(Exception):
    pass


@transaction.atomic
def second_factor_enrolled(*, user, device, link_id=None) -> None:
    """Confirm a new device; after a reset the enrolment link is used up here (a
    conditional update: two browsers racing with one link, one wins)."""
    from .models import EnrolmentLink, VaultTOTPDevice
    from .passkeys import kind

    link_pk = _uuid_or_none(link_id)
    if link_pk is not None or last_second_factor_reset(user) is not None:
        used = EnrolmentLink.objects.filter(
            pk=link_pk, user=user, used_at__isnull=True, expires_at__gt=timezone.now()
        ).update(used_at=timezone.now())
        if not used:
            raise EnrolmentRefused
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # A half-done pairing of an app (the enrol page makes one) is not kept beside it.
    VaultTOTPDevice.objects.filter(user=user, confirmed=False).delete()
    detail = {"kind": kind(device)}
    if link_pk:
        detail["link"] = str(link_pk)
    audit.record(
        user, "staff.second_factor_enrolled", obj=user, fields=["second_factor"], detail=detail
    )
    _tell_holder(user, user, "second_factor_enrolled")


@transaction.atomic
def passkey_added(*, user, device, link_id=None, verified_by: str | None = None) -> None:
    """Record a passkey just registered by its holder.

    1. The account's first second factor is an enrolment (second_factor_enrolled: the
       enrolment link, if a reset asked for one, is used up, or nothing is kept).
    2. Otherwise `staff.passkey_added`, flagged for the auditors when the session that
       added it was verified by an app's code or a backup code (a phished code could be
       used to plant a key), and the holder is told either way.
    """
    _lock_account(user)
    others = [d for d in _devices(user) if d.pk != device.pk or type(d) is not type(device)]
    if not others:
        second_factor_enrolled(user=user, device=device, link_id=link_id)
        return
    audit.record(
        user,
        "staff.passkey_added",
        obj=user,
        fields=["second_factor"],
        detail={"device": device.pk, "verified_by": verified_by or ""},
        flagged=verified_by != "passkey",
    )
    _tell_holder(user, user, "passkey_added")


@transaction.atomic
def passkey_renamed(*, user, device, name: str) -> None:
    device.name = name
    device.save(update_fields=["name"])
    audit.record(
        user, "staff.passkey_renamed", obj=user, fields=["name"], detail={"device": device.pk}
    )


def removal_refusal(user, device) -> str | None:
    """Why the holder may not remove this device of theirs now, or None: never the last
    second factor, and never the last passkey of a person who must use one."""
    from .models import BackupCodeDevice
    from .passkeys import is_passkey, required

    rest = [d for d in _devices(user) if not (d.pk == device.pk and type(d) is type(device))]
    usable = [d for d in rest if not isinstance(d, BackupCodeDevice)]
    if not usable:
        return _(
            "This is your only way to log in besides backup codes. Add another passkey or "
            "ask an administrator to reset your second factor instead."
        )
    if required(user) and is_passkey(device) and not any(is_passkey(d) for d in rest):
        return _("Your role needs a passkey: add another one before you remove this one.")
    return None


@transaction.atomic
def second_factor_removed(*, user, device) -> None:
    """The holder removes one of their own passkeys or their authenticator app.

    The account row is locked first, so two removals at once cannot both pass the
    "not the last one" check.
    """
    from .passkeys import is_passkey

    _lock_account(user)
    device = type(device).objects.filter(pk=device.pk, user=user).first()
    if device is None:
        return  # already removed (a double submit)
    refusal = removal_refusal(user, device)
    if refusal:
        raise AccountActionRefused(refusal)
    passkey = is_passkey(device)
    device_id = device.pk
    device.delete()
    audit.record(
        user,
        "staff.passkey_removed" if passkey else "staff.authenticator_removed",
        obj=user,
        fields=["second_factor"],
        detail={"device": device_id},
    )
    _tell_holder(user, user, "passkey_removed" if passkey else "authenticator_removed")


def _lock_account(user) -> None:
    from .models import User

    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def _devices(user) -> list:
    from django_otp import devices_for_user

    return list(devices_for_user(user, confirmed=True))


@transaction.atomic
def lockout_clear(*, actor, user) -> int:
    """Lift the login lockout of one account (its records in django-axes' table)."""
    from axes.models import AccessAttempt

    if actor.pk == user.pk:
        raise AccountActionRefused(_("Another administrator must do this for your own account."))
    _total, deleted = AccessAttempt.objects.filter(username=lockout_key(user)).delete()
    count = deleted.get(AccessAttempt._meta.label, 0)
    audit.record(actor, "staff.lockout_reset", obj=user, detail={"records": count})
    _tell_holder(user, actor, "lockout")
    return count


@transaction.atomic
def lockout_records_delete(*, actor, queryset) -> int:
    """Delete lockout records picked in the admin (an address locked across usernames).
    Records name no account (usernames are hashed), so the event names none."""
    from axes.models import AccessAttempt

    _total, deleted = queryset.delete()
    count = deleted.get(AccessAttempt._meta.label, 0)
    audit.record(actor, "staff.lockout_reset", detail={"records": count})
    return count


class StaffBackend(ModelBackend):
    """Django's password backend, which loads the user of each request together with
    their roles (User.with_roles): one query, not two, on every staff page."""

    def get_user(self, user_id):
        from .models import User

        try:
            user = User.with_roles().get(pk=user_id)
        except (User.DoesNotExist, ValidationError, ValueError):
            return None
        if not self.user_can_authenticate(user):
            return None
        user.take_roles()
        return user
