"""Who may do what with which case: the one home of every case rule.

The rules are stated once, as query conditions (`case_rules(user)`: {right: Q}), and
used two ways:

1. as filters for every list (`cases_for_user`, and on related rows with a prefix:
   a task's case is `case__`, a message's `thread__case__`);
2. annotated onto one object, so that `get_case_for_user(request, pk, perm)` returns
   the case *with its rights* (`case.rights`) in one query, and views, services and
   templates ask that object instead of asking the permission tables again.

The rules:
- Only active caseworkers and coordinators work on cases; an administrator or auditor
  role takes every case right away, and the superuser flag gives none.
- Caseworkers see the cases granted to them (guardian object permissions, explicit
  grants only: never model-wide or superuser rights).
- Coordinators see and work on their teams' cases, sealed ones excepted, and see a case
  they opened with break-glass, for an hour.
- A sealed case shows only to the users named on it (granted).
- Whereabouts need their own grant on top of seeing the case.
- Managing access (grants, sealing) and assigning with a grant: a coordinator of the
  case's team who can see the case. Restricted notes: the case's own caseworkers and
  its team's coordinators who can see it.
"No such case" and "no access" are the same 404.
"""

from dataclasses import dataclass, fields

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import BooleanField, Q, Value, When
from django.db.models import Case as SqlCase
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import BreakGlass, Case, CaseUserObjectPermission, Role, Task, Team, User

VIEW, CHANGE, WHEREABOUTS = "view_case", "change_case", "view_whereabouts"
NOTHING = Q(pk__in=[])

# The access levels a coordinator grants and revokes, as sets of object permissions.
LEVEL_CHOICES = [
    ("work", _("Work on the case (read and update)")),
    ("view", _("Read only")),
    ("whereabouts", _("See the whereabouts")),
]
GRANTS = {"view": [VIEW], "work": [VIEW, CHANGE], "whereabouts": [WHEREABOUTS]}
# Revoking "view" takes everything: there is no working on a case one cannot see.
REVOKES = {"view": [VIEW, CHANGE, WHEREABOUTS], "work": [CHANGE], "whereabouts": [WHEREABOUTS]}


@dataclass(frozen=True)
class CaseRights:
    """What one user may do with one case."""

    view: bool = False
    work: bool = False  # change the case, its notes, tasks, contacts, consent
    whereabouts: bool = False
    coordinates: bool = False  # coordinator of the case's team who can see the case
    manage: bool = False  # grant and revoke access, seal
    restricted_notes: bool = False
    assign: bool = False  # assign its tasks (to someone who can already see it)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# Which right a permission code asks for.
PERM_RIGHT = {VIEW: "view", CHANGE: "work", WHEREABOUTS: "whereabouts"}


# --- Who ------------------------------------------------------------------------------------
def works_on_cases(user) -> bool:
    return (
        user.is_authenticated
        and user.is_active
        and (user.has_role(Role.CASEWORKER) or user.has_role(Role.COORDINATOR))
        and not (user.has_role(Role.ADMINISTRATOR) or user.has_role(Role.AUDITOR))
    )


def coordinates_teams(user) -> bool:
    return works_on_cases(user) and user.has_role(Role.COORDINATOR)


def led_teams(user):
    """The teams a user coordinates (none unless they hold the coordinator role)."""
    if not coordinates_teams(user):
        return Team.objects.none()
    return Team.objects.filter(coordinators=user)


def memberships(user):
    """The teams a user is written into, as member or coordinator, whatever their roles
    now (who to tell when that changes)."""
    return Team.objects.filter(Q(members=user) | Q(coordinators=user)).distinct()


def teams_of(user):
    """The teams a user belongs to or leads, as far as their roles let them work there."""
    if not works_on_cases(user):
        return Team.objects.none()
    led = Q(coordinators=user) if user.has_role(Role.COORDINATOR) else NOTHING
    return Team.objects.filter(Q(members=user) | led).distinct()


def team_people(teams, *, coordinators: bool = False):
    """The people of a team (or of several): its active caseworkers, and with
    `coordinators` its coordinators too. The one answer to "who is on this case's team",
    for assigning work, granting access and witnessing."""
    teams = [teams] if isinstance(teams, Team) else teams
    people = Q(teams__in=teams, groups__name=Role.CASEWORKER)
    if coordinators:
        people |= Q(led_teams__in=teams, groups__name=Role.COORDINATOR)
    return User.objects.filter(people, is_active=True).distinct().order_by("username")


def case_workers(case):
    """The caseworkers named on a case (an explicit grant to work on it)."""
    grants = CaseUserObjectPermission.objects.filter(
        content_object=case, permission__codename=CHANGE
    )
    return (
        User.objects.filter(
            is_active=True, groups__name=Role.CASEWORKER, pk__in=grants.values("user_id")
        )
        .distinct()
        .order_by("username")
    )


def people_lists(**lists) -> dict[str, list]:
    """Several lists of people, each a queryset of users from its own rule (case_workers,
    team_people...), read in one query (UNION ALL): {name: [its users, by username]}.
    The case page needs the caseworkers named on the case and the people a task can go
    to, at once."""
    parts = [users.order_by().annotate(_list=Value(name)) for name, users in lists.items()]
    if not parts:
        return {}
    out = {name: [] for name in lists}
    for user in parts[0].union(*parts[1:], all=True):
        out[user._list].append(user)
    for people in out.values():
        people.sort(key=lambda user: user.username)
    return out


# --- The rules ------------------------------------------------------------------------------
def granted_cases(user, *perms: str):
    """Cases with an explicit grant of `perm` (of any of `perms`) to this user (the
    grants granted_ids reads)."""
    return Case.objects.filter(pk__in=granted_ids(user, *perms))


def granted_ids(user, *perms: str):
    """The ids of the cases with an explicit grant of `perm` (of any of `perms`) to this
    user, as a subquery: the user's own grants only, never groups, global rights or the
    superuser flag (what guardian's get_objects_for_user gives with use_groups,
    accept_global_perms and with_superuser off), read straight from the per-case grant
    table. Guardian's form wraps them in a second read of the case
    table, which in a rule repeated for every right doubled the time PostgreSQL spent
    planning a rights query (7.0 ms against 3.9 at 100,000 cases)."""
    from django.contrib.contenttypes.models import ContentType

    return CaseUserObjectPermission.objects.filter(
        user=user,
        permission__content_type=ContentType.objects.get_for_model(Case),
        permission__codename__in=perms,
    ).values("content_object_id")


def case_rules(user, prefix: str = "") -> dict[str, Q]:
    """{right: condition} on Case, or on a model reaching a case through `prefix`."""
    if not works_on_cases(user):
        return {name: NOTHING for name in CaseRights.names()}

    def on(**lookups) -> Q:
        return Q(**{f"{prefix}{key}": value for key, value in lookups.items()})

    def granted(*perms):
        return on(pk__in=granted_ids(user, *perms))

    work = granted(CHANGE)
    # Whoever may work on a case may see it. A grant to read or to work is one
    # condition (one IN over the user's grants), so a caseworker's lists are a join
    # from their grants, not a scan of every case.
    view = granted(VIEW, CHANGE)
    coordinates = NOTHING
    if user.has_role(Role.COORDINATOR):
        led = Team.objects.filter(coordinators=user).values("pk")
        teams_open = on(team__in=led, sealed=False)
        work |= teams_open
        glass = BreakGlass.objects.filter(user=user, expires_at__gt=timezone.now())
        view |= teams_open | on(pk__in=glass.values("case_id"))
        # Of the case's team and able to see it without break-glass (which opens a
        # case for reading only): for a sealed case, only if named on it.
        coordinates = on(team__in=led) & (work | granted(VIEW))
    return {
        "view": view,
        "work": work,
        "whereabouts": view & granted(WHEREABOUTS),
        "coordinates": coordinates,
        "manage": coordinates,
        "restricted_notes": coordinates | granted(CHANGE),
        "assign": coordinates | work,
    }


def with_rights(queryset, user, prefix: str = ""):
    """The rows annotated with the user's rights on their case (`_right_<name>`)."""
    return annotate_rules(queryset, case_rules(user, prefix))


def annotate_rules(queryset, rules: dict):
    """Each rule as a boolean column `_right_<name>` (shared with families.access)."""
    return queryset.annotate(
        **{
            f"_right_{name}": SqlCase(
                When(condition, then=Value(True)), default=Value(False), output_field=BooleanField()
            )
            for name, condition in rules.items()
        }
    )


def _rights_from(row, user=None) -> CaseRights:
    return CaseRights(**{name: bool(getattr(row, f"_right_{name}")) for name in CaseRights.names()})


def _attach(case, user, rights: CaseRights) -> None:
    case.rights = rights
    case._rights_user = user.pk


def cases_for_user(user, perm: str = VIEW):
    """The one list of cases a user may see (or work on, or see the whereabouts of)."""
    return Case.objects.filter(case_rules(user)[PERM_RIGHT[perm]])


def cases_hidden_from(user):
    """The cases a user may not see: the complement of the same condition, for asking
    whether a search also matched outside their caseload (never to list them)."""
    return Case.objects.exclude(case_rules(user)["view"])


def get_case_for_user(request, pk, perm: str = VIEW) -> Case:
    """The case with `case.rights`, in one query.

    No such case and a case the user may not see are the same 404; a case the user may
    see but not do `perm` on (a read-only grant asked to edit, whereabouts without
    their grant) is 403, which tells them nothing they do not know.
    """
    user = request.user
    rules = case_rules(user)
    try:
        case = (
            annotate_rules(Case.objects.filter(rules["view"]), rules)
            .select_related("data_key", "team")
            .get(pk=pk)
        )
    except (Case.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None
    _attach(case, user, _rights_from(case))
    if not getattr(case.rights, PERM_RIGHT[perm]):
        raise PermissionDenied
    return case


def rights_of(user, case) -> CaseRights:
    """A user's rights on a case: those loaded with it for this user (by
    get_case_for_user or a list), or else one query, not kept (an assignee, a service
    called outside a request)."""
    if user.pk is not None and getattr(case, "_rights_user", None) == user.pk:
        return case.rights
    row = with_rights(Case.objects.filter(pk=case.pk), user).first()
    return _rights_from(row) if row is not None else CaseRights()


# --- Tasks ----------------------------------------------------------------------------------
def tasks_for_user(user, perm: str = VIEW, *, with_rights: bool = False):
    """Tasks on cases the user has `perm` on; with `with_rights`, each row also carries
    its case's rights (see attach_task_rights)."""
    rules = case_rules(user, "case__")
    tasks = Task.objects.filter(rules[PERM_RIGHT[perm]])
    return annotate_rules(tasks, rules) if with_rights else tasks


def attach_task_rights(tasks, user) -> list:
    """Hand each annotated task's rights to its case (task.case.rights)."""
    tasks = list(tasks)
    for task in tasks:
        _attach(task.case, user, _rights_from(task, user))
    return tasks


def get_task_for_user(request, task_pk, perm: str = VIEW) -> Task:
    """A task with its case and the case's rights, in one query: 404 for no such task and
    no access, 403 for a task one may see but not do `perm` on."""
    try:
        task = (
            tasks_for_user(request.user, VIEW, with_rights=True)
            .select_related("case__data_key", "case__team", "assignee", "team")
            .get(pk=task_pk)
        )
    except (Task.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None
    attach_task_rights([task], request.user)
    if not getattr(task.case.rights, PERM_RIGHT[perm]):
        raise PermissionDenied
    return task
