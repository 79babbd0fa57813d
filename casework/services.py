"""Case workflows that span models. Each writes its access event in the same transaction."""

import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, remove_perm

from . import access, audit, vault, versions
from .models import Attachment, BreakGlass, Case, Note, Role, Stage, StageChange, User, Whereabouts


def _changed(instance, data: dict) -> list[str]:
    """Names of fields whose value changes (an empty value is empty, whatever its type)."""

    def norm(value):
        return None if value in (None, "", []) else value

    return [name for name, value in data.items() if norm(getattr(instance, name)) != norm(value)]


@transaction.atomic
def case_open(*, actor: User, team, person: dict, aims: list, risk: str) -> Case:
    if not (actor.has_role(Role.COORDINATOR) or actor.has_role(Role.CASEWORKER)):
        raise PermissionDenied
    if not (
        team.members.filter(pk=actor.pk).exists() or team.coordinators.filter(pk=actor.pk).exists()
    ):
        raise PermissionDenied  # cases are opened only in one's own teams
    case = Case(team=team, aims=aims, risk=risk, created_by=actor, **person)
    case.save()
    StageChange.objects.create(case=case, to_stage=case.stage, changed_by=actor)
    if actor.has_role(Role.CASEWORKER):
        for perm in access.GRANTS["work"]:
            assign_perm(perm, actor, case)
    audit.record(
        actor,
        "case.created",
        case=case,
        fields=[k for k, v in person.items() if v not in (None, "", [])],
    )
    return case


@transaction.atomic
def case_update(*, actor: User, case: Case, data: dict, version: int | None = None) -> list[str]:
    """Change a case's fields. The row is read again under a lock: with `version` (the
    one the edit form was loaded from), a case someone changed meanwhile raises
    versions.StaleEdit and nothing is written (casework/versions.py)."""
    case = versions.lock(case, version)
    changed = _changed(case, data)
    if not changed:
        return []
    for name in changed:
        setattr(case, name, data[name])
    versions.bump(case)
    case.save()
    audit.record(
        actor, "case.updated", case=case, obj=case, fields=changed, detail={"version": case.version}
    )
    return changed


@transaction.atomic
def case_change_stage(*, actor: User, case: Case, stage: str) -> None:
    case = versions.lock(case)  # two changes at once: each history row has the true "from"
    if stage == case.stage:
        return
    old = case.stage
    case.stage = stage
    fields = ["stage"]
    if stage == Stage.CLOSED:
        case.closed_on = timezone.localdate()
        case.retention_until = case.closed_on + datetime.timedelta(
            days=settings.PASSAGE_CASE_RETENTION_DAYS
        )
        fields += ["closed_on", "retention_until"]
    elif old == Stage.CLOSED:
        case.closed_on = case.retention_until = None
        fields += ["closed_on", "retention_until"]
    case.save(update_fields=[*fields, "updated_at"])
    StageChange.objects.create(case=case, from_stage=old, to_stage=stage, changed_by=actor)
    action = {Stage.CLOSED: "case.closed"}.get(
        stage, "case.reopened" if old == Stage.CLOSED else "case.stage_changed"
    )
    audit.record(actor, action, case=case, fields=fields, detail={"from": old, "to": stage})


def grantable_users(case: Case):
    """Who may be given access: active caseworkers of the case's team (and, for a
    sealed case, its team's coordinators, who are otherwise kept out)."""
    return access.team_people(case.team, coordinators=case.sealed)


@transaction.atomic
def access_grant(*, actor: User, case: Case, user: User, level: str) -> None:
    if not access.rights_of(actor, case).manage:
        raise PermissionDenied
    if not grantable_users(case).filter(pk=user.pk).exists():
        raise ValidationError(_("Only caseworkers of the case's team can be given access."))
    for perm in access.GRANTS[level]:
        assign_perm(perm, user, case)
    audit.record(
        actor,
        "access.granted",
        case=case,
        detail={"user": str(user.pk), "level": level},
    )


@transaction.atomic
def access_revoke(*, actor: User, case: Case, user: User, level: str) -> None:
    if not access.rights_of(actor, case).manage:
        raise PermissionDenied
    for perm in access.REVOKES[level]:
        remove_perm(perm, user, case)
    audit.record(
        actor,
        "access.revoked",
        case=case,
        detail={"user": str(user.pk), "level": level},
    )


@transaction.atomic
def case_seal(*, actor: User, case: Case, sealed: bool) -> None:
    """Sealing keeps the case to named users: the sealing coordinator is named at once."""
    if not access.rights_of(actor, case).manage:
        raise PermissionDenied
    case = versions.lock(case)
    if sealed:
        for perm in access.GRANTS["work"]:
            assign_perm(perm, actor, case)
    case.sealed = sealed
    case.save(update_fields=["sealed", "updated_at"])
    audit.record(
        actor,
        "case.sealed" if sealed else "case.unsealed",
        case=case,
        fields=["sealed"],
    )


def note_add(
    *, actor: User, case: Case, body: str, restricted: bool, upload=None, once=None
) -> Note:
    """Add a note (and its attachment) to a case.

    1. The file first, outside the transaction: written whole or not at all
       (vault.files raises FileNotStored, e.g. on a full disk, and leaves nothing).
    2. Then one transaction: the form's one-time token (a double submit adds one note:
       versions.AlreadyDone), the note, the attachment row and their events.
    3. If that transaction fails, the file is removed again: no orphan.
    """
    blob = None
    if upload is not None:
        data = upload.read()
        blob = vault.save_file(case.data_key, data)
    try:
        with transaction.atomic():
            versions.use_once(actor=actor, token=once)
            note = Note(case=case, author=actor, body=body, restricted=restricted)
            note.save()
            audit.record(
                actor,
                "note.created",
                case=case,
                obj=note,
                fields=["body"],
                detail={"restricted": restricted},
            )
            if blob is not None:
                attachment = Attachment.objects.create(
                    case=case,
                    note=note,
                    blob_name=blob,
                    size=len(data),
                    filename=upload.name[:255],
                    content_type=(upload.content_type or "application/octet-stream")[:100],
                    uploaded_by=actor,
                )
                audit.record(actor, "attachment.created", case=case, obj=attachment)
    except BaseException:
        if blob is not None:
            vault.delete_file(blob)
        raise
    return note


@transaction.atomic
def whereabouts_save(
    *, actor: User, case: Case, data: dict, version: int | None = None
) -> list[str]:
    """Save a case's whereabouts. The case row is locked first (two first saves at once
    make one row), then the whereabouts row: with `version`, a stale form raises
    versions.StaleEdit (a phone number is never silently put back)."""
    versions.lock(case)
    place = Whereabouts.objects.filter(case=case).first()
    if place is None:
        if version not in (None, 0):  # 0: the form was loaded when there were none
            raise versions.StaleEdit(None, [])
        place = Whereabouts(case=case)
        changed = [name for name, value in data.items() if value not in (None, "")]
    else:
        place = versions.lock(place, version)
        changed = _changed(place, data)
        if not changed:
            return []
        versions.bump(place)
    for name, value in data.items():
        setattr(place, name, value)
    place.updated_by = actor
    place.save()
    audit.record(
        actor,
        "whereabouts.updated",
        case=case,
        obj=place,
        fields=changed,
        detail={"version": place.version},
    )
    return changed


def whereabouts_view(*, actor: User, case: Case, reason: str):
    place = Whereabouts.objects.filter(case=case).first()
    audit.record(
        actor,
        "whereabouts.viewed",
        case=case,
        obj=place,
        detail={"reason": reason},
    )
    return place


@transaction.atomic
def break_glass(*, actor: User, case: Case, justification: str) -> BreakGlass:
    if not actor.has_role(Role.COORDINATOR):
        raise PermissionDenied
    glass = BreakGlass(
        case=case,
        user=actor,
        justification=justification,
        expires_at=timezone.now() + datetime.timedelta(hours=1),
    )
    glass.save()
    audit.record(actor, "case.break_glass", case=case, obj=glass, flagged=True)
    from .outbox import notification_queue

    notification_queue(kind="break_glass", about=str(case.pk), actor=actor)
    return glass


@transaction.atomic
def case_shred(*, case: Case, actor: User | None = None, reason: str = "retention") -> None:
    """Destroy the case's data key: its rows stay, unreadable for good (the history
    tables refuse deletes). Its attachment files go once that has committed: a shred
    that rolls back must leave the case whole. (A file left behind by a crash after the
    commit is ciphertext under a destroyed key.)"""
    blobs = list(Attachment.objects.filter(case=case).values_list("blob_name", flat=True))
    vault.shred(case)
    audit.record(actor, "case.shredded", case=case, detail={"reason": reason})
    transaction.on_commit(lambda: _delete_files(blobs), robust=True)


def _delete_files(blobs: list[str]) -> None:
    for blob in blobs:
        vault.delete_file(blob)
