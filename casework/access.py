"""Who may see which case. Every case-scoped view and every case list comes through here.

- Caseworkers see the cases granted to them (guardian object permissions).
- Coordinators see their teams' cases, sealed ones excepted, and a case they opened
  with break-glass, for an hour.
- A sealed case shows only to the users named on it.
- Whereabouts need their own grant, whoever you are.
- Administrators and auditors see no case; the superuser flag widens nothing.
"No such case" and "no access" are the same 404.
"""

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from .models import BreakGlass, Case, Role, Team

VIEW, CHANGE, WHEREABOUTS = "view_case", "change_case", "view_whereabouts"


def works_on_cases(user) -> bool:
    return (
        user.is_authenticated
        and user.is_active
        and (user.has_role(Role.CASEWORKER) or user.has_role(Role.COORDINATOR))
    )


def granted_cases(user, perm: str):
    """Cases with an explicit grant of `perm` to this user: never global or superuser rights."""
    return get_objects_for_user(
        user,
        f"casework.{perm}",
        klass=Case,
        use_groups=False,
        accept_global_perms=False,
        with_superuser=False,
    )


def cases_for_user(user, perm: str = VIEW):
    """The one list of cases a user may see (or work on, or see the whereabouts of)."""
    if not works_on_cases(user):
        return Case.objects.none()
    if perm == WHEREABOUTS:
        # Whereabouts are a second key on top of seeing the case, never instead of it.
        return cases_for_user(user, VIEW).filter(pk__in=granted_cases(user, perm).values("pk"))
    allowed = Q(pk__in=granted_cases(user, perm).values("pk"))
    if perm in (VIEW, CHANGE) and user.has_role(Role.COORDINATOR):
        led = Team.objects.filter(coordinators=user).values("pk")
        allowed |= Q(team__in=led, sealed=False)
    if perm == VIEW and user.has_role(Role.COORDINATOR):
        glass = BreakGlass.objects.filter(user=user, expires_at__gt=timezone.now())
        allowed |= Q(pk__in=glass.values("case_id"))
    return Case.objects.filter(allowed)


def get_case_for_user(request, pk, perm: str = VIEW) -> Case:
    try:
        return cases_for_user(request.user, perm).select_related("data_key", "team").get(pk=pk)
    except (Case.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None


def can(user, perm: str, case) -> bool:
    return cases_for_user(user, perm).filter(pk=case.pk).exists()


def is_coordinator_of(user, case) -> bool:
    return user.has_role(Role.COORDINATOR) and case.team.coordinators.filter(pk=user.pk).exists()


def can_manage_access(user, case) -> bool:
    """Coordinators of the case's team decide who sees it (for a sealed case: only if named)."""
    return is_coordinator_of(user, case) and can(user, VIEW, case)


def sees_restricted_notes(user, case) -> bool:
    """Restricted notes: the case's own caseworkers and its team's coordinators."""
    return is_coordinator_of(user, case) or granted_cases(user, CHANGE).filter(pk=case.pk).exists()


def case_workers(case):
    """Users with an explicit grant to work on the case (its caseworkers)."""
    from guardian.shortcuts import get_users_with_perms

    users = get_users_with_perms(
        case, only_with_perms_in=[CHANGE], with_superusers=False, with_group_users=False
    )
    return users.filter(groups__name=Role.CASEWORKER, is_active=True).distinct()


def get_task_for_user(request, task_pk, perm: str = VIEW):
    """A task, through its case: the same 404 for no such task and no access."""
    from .models import Task

    case_id = Task.objects.filter(pk=task_pk).values_list("case_id", flat=True).first()
    if case_id is None:
        raise Http404
    case = get_case_for_user(request, case_id, perm)
    task = Task.objects.select_related("assignee", "team").get(pk=task_pk)
    task.case = case  # the checked case, with its data key loaded
    return task
