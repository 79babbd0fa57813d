"""Task queues: create, assign, claim, move and remind. Every change leaves a task
history entry and an access event in the same transaction."""

import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case as SqlCase
from django.db.models import Count, F, IntegerField, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from . import access, audit, services
from .models import (
    ACTIVE_STATUSES,
    Case,
    Priority,
    Role,
    Task,
    TaskEvent,
    TaskStatus,
    TaskTemplate,
    TaskTemplateItem,
    User,
)
from .versions import bump
from .versions import lock as version_lock


class AccessNeeded(ValidationError):
    """The assignee cannot see the case; the coordinator may grant it in the same step."""

    def __init__(self, users):
        self.users = list(users)
        names = ", ".join(u.get_username() for u in self.users)
        super().__init__(
            _(
                "%(names)s cannot see the case yet. Tick “grant access” to give access with "
                "this assignment, or choose someone else."
            )
            % {"names": names}
        )


def queue_order(tasks, *first):
    """Urgent and overdue first, then by due date (undated last), then priority; `first`
    goes before all that (the board: by person)."""
    today = timezone.localdate()
    pressing = SqlCase(
        When(Q(priority=Priority.URGENT) | Q(due_on__lt=today), then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    return tasks.annotate(pressing=pressing).order_by(
        *first, "pressing", F("due_on").asc(nulls_last=True), "priority", "created_at", "pk"
    )


# What a queue's row shows, and no more: the case's reference and the data key that opens
# the title, never the case's own encrypted fields or the task's details.
ROW_FIELDS = (
    "version",
    "case",
    "title",
    "aim",
    "priority",
    "due_on",
    "status",
    "assignee",
    "case__reference",
    "case__data_key",
)


def my_queue(user):
    """Open tasks assigned to the user, on cases they can see."""
    return queue_order(
        access.tasks_for_user(user)
        .filter(assignee=user, status__in=ACTIVE_STATUSES)
        .select_related("case__data_key")
        .only(*ROW_FIELDS)
    )


def team_queue(user):
    """Unassigned open tasks of one's teams, on cases one can see; each carries its
    case's rights (claiming needs the right to work on the case)."""
    return queue_order(
        access.tasks_for_user(user, with_rights=True)
        .filter(team__in=access.teams_of(user), assignee__isnull=True, status__in=ACTIVE_STATUSES)
        .select_related("case__data_key")
        .only(*ROW_FIELDS)
    )


def board_selection(coordinator, *, with_rights: bool = False):
    """Every open task of the teams a coordinator leads, on cases the coordinator may
    see (a sealed case's tasks stay off the board unless the coordinator is named on
    it): unordered, for counting and for the page (board_totals, board_rows)."""
    return access.tasks_for_user(coordinator, with_rights=with_rights).filter(
        team__in=access.led_teams(coordinator), status__in=ACTIVE_STATUSES
    )


def board_tasks(coordinator):
    """The board's tasks whole, each with its case's rights, in queue order: the board
    assigns only these."""
    return queue_order(
        board_selection(coordinator, with_rights=True).select_related(
            "case__data_key", "case", "assignee", "team"
        )
    )


def board_rows(tasks):
    """The board's rows in its order (by person, unassigned first, then queue order),
    loading what a row shows and the assignee's names."""
    person = F("assignee__username").asc(nulls_first=True)
    return queue_order(
        tasks.select_related("case__data_key", "assignee").only(
            *ROW_FIELDS, "assignee__username", "assignee__first_name", "assignee__last_name"
        ),
        person,
    )


def board_totals(tasks, per_page: int) -> list[dict]:
    """Per person (unassigned first, then by username, as board_rows orders them), the
    counts open / overdue / due this week, from one grouped query; and `page`, the page
    of board_rows where that person's tasks start."""
    today = timezone.localdate()
    week_end = today + datetime.timedelta(days=7)
    names = ("assignee__username", "assignee__first_name", "assignee__last_name")
    rows = (
        tasks.values("assignee", *names)
        .annotate(
            open=Count("pk"),
            overdue=Count("pk", filter=Q(due_on__lt=today)),
            week=Count("pk", filter=Q(due_on__gte=today, due_on__lte=week_end)),
        )
        # The database's order (its collation), the same as board_rows'.
        .order_by(F("assignee__username").asc(nulls_first=True))
    )
    totals, start = [], 0
    for row in rows:
        assignee = None
        if row["assignee"] is not None:
            assignee = User(
                pk=row["assignee"],
                username=row["assignee__username"],
                first_name=row["assignee__first_name"],
                last_name=row["assignee__last_name"],
            )
        totals.append(
            {
                "assignee": assignee,
                "open": row["open"],
                "overdue": row["overdue"],
                "week": row["week"],
                "page": start // per_page + 1,
            }
        )
        start += row["open"]
    return totals


def board_page_groups(rows, totals, page: int) -> list[dict]:
    """The page's rows in sections per person, each with that person's totals (a task
    given to someone between the two queries starts a section without totals)."""
    by_person = {(t["assignee"].pk if t["assignee"] else None): t for t in totals}
    groups = []
    for task in rows:
        if not groups or groups[-1]["key"] != task.assignee_id:
            counts = by_person.get(task.assignee_id, {"open": 0, "overdue": 0, "week": 0})
            groups.append(
                {
                    "page": page,
                    **counts,
                    "key": task.assignee_id,
                    "assignee": task.assignee,  # loaded with the row
                    "tasks": [],
                }
            )
        groups[-1]["tasks"].append(task)
    return groups


def board_filter(tasks, *, aim=None, priority=None, due=None):
    """Narrow the board by aim, priority and due-date window."""
    today = timezone.localdate()
    week = today + datetime.timedelta(days=7)
    if aim:
        tasks = tasks.filter(aim=aim)
    if priority is not None:
        tasks = tasks.filter(priority=priority)
    if due == "overdue":
        tasks = tasks.filter(due_on__lt=today)
    elif due == "week":
        tasks = tasks.filter(due_on__gte=today, due_on__lte=week)
    elif due == "later":
        tasks = tasks.filter(due_on__gt=week)
    elif due == "none":
        tasks = tasks.filter(due_on__isnull=True)
    return tasks


def assignable_users(task_or_case):
    """Caseworkers of the case's team: the only people a task can go to."""
    case = task_or_case.case if isinstance(task_or_case, Task) else task_or_case
    return access.team_people(case.team)


def _event(task, actor, kind, *, detail=None, comment=None, action=None, fields=()):
    TaskEvent.objects.create(
        task=task, actor=actor, kind=kind, detail=detail or {}, comment=comment
    )
    audit.record(
        actor,
        action or f"task.{kind}",
        case=task.case,
        obj=task,
        fields=fields,
        detail=detail or {},
    )


@transaction.atomic
def task_create(
    *,
    actor,
    case: Case,
    title: str,
    details: str = "",
    aim: str,
    priority: int = Priority.NORMAL,
    due_on=None,
    assignee=None,
    grant_access: bool = False,
) -> Task:
    if not access.rights_of(actor, case).work:
        raise PermissionDenied
    task = Task(
        case=case,
        team=case.team,
        title=title,
        details=details,
        aim=aim,
        priority=priority,
        due_on=due_on,
        created_by=actor,
    )
    task.save()
    _event(
        task,
        actor,
        TaskEvent.Kind.CREATED,
        fields=["title", "details"],
        detail={"aim": aim, "priority": int(priority)},
    )
    if assignee is not None:
        task_assign(actor=actor, tasks=[task], assignee=assignee, grant_access=grant_access)
    return task


@transaction.atomic
def template_apply(*, actor, case: Case, template: TaskTemplate) -> list[Task]:
    today = timezone.localdate()
    return [
        task_create(
            actor=actor,
            case=case,
            title=item.title,
            aim=template.aim,
            priority=item.priority,
            due_on=today + datetime.timedelta(days=item.due_in_days),
        )
        for item in template.items.all()
    ]


TEMPLATE_FIELDS = ("name", "aim", "active")
TEMPLATE_ITEM_FIELDS = ("title", "priority", "due_in_days", "position")


@transaction.atomic
def template_save(
    *, actor, template: TaskTemplate | None, data: dict, items: list[dict], version=None
):
    """Create or change a checklist and its tasks; one access event says what changed
    (field names and counts: the titles stay out of the log). Nothing changed, no event.

    `data` holds the checklist's fields; each of `items` a task's fields, its "id" (a
    task of this checklist, or None for a new one) and "DELETE" (as a formset cleans them).
    With `version` (the one the page was loaded with), a checklist someone changed
    meanwhile raises StaleEdit and nothing is written.
    """
    if not actor.has_role(Role.COORDINATOR):
        raise PermissionDenied
    adding = template is None or template.pk is None
    # The stored row, not the form's instance (a ModelForm writes into its instance).
    stored = (
        TaskTemplate()
        if adding
        else version_lock(TaskTemplate.objects.get(pk=template.pk), version)
    )
    fields = [
        name
        for name in TEMPLATE_FIELDS
        if name in data and (adding or getattr(stored, name) != data[name])
    ]
    for name in fields:
        setattr(stored, name, data[name])
    if adding:
        stored.save()
    counts = _template_items_save(stored, items)
    if not adding and (fields or any(counts.values())):
        bump(stored)
        stored.save()
    if fields or any(counts.values()):
        audit.record(
            actor,
            "checklist.created" if adding else "checklist.updated",
            obj=stored,
            fields=fields,
            detail={**counts, "version": stored.version},
        )
    return stored


def _template_items_save(template: TaskTemplate, items: list[dict]) -> dict:
    current = {item.pk: item for item in template.items.all()}
    counts = {"items_added": 0, "items_changed": 0, "items_removed": 0}
    for row in filter(None, items):  # a formset's untouched extra rows are empty
        item_id = getattr(row.get("id"), "pk", row.get("id"))
        if item_id is not None and item_id not in current:
            raise ValidationError(_("That task is not on this checklist."))
        item = current.get(item_id)
        if row.get("DELETE"):
            if item is not None:
                item.delete()
                counts["items_removed"] += 1
            continue
        values = {name: row[name] for name in TEMPLATE_ITEM_FIELDS}
        if item is None:
            TaskTemplateItem.objects.create(template=template, **values)
            counts["items_added"] += 1
        elif changed := [k for k, v in values.items() if getattr(item, k) != v]:
            for name in changed:
                setattr(item, name, values[name])
            item.save(update_fields=changed)
            counts["items_changed"] += 1
    return counts


def may_assign(actor, task) -> bool:
    """Coordinators of the case's team who can see it assign anyone; a caseworker working
    on the case may hand a task to a colleague who can already see it."""
    return access.rights_of(actor, task.case).assign


@transaction.atomic
def task_assign(
    *, actor, tasks, assignee, grant_access: bool = False, versions: dict | None = None
) -> int:
    """Assign tasks to one person of their cases' teams.

    1. Each task's row is read again under a lock; with `versions` ({task id: the version
       the page showed}), a task that changed meanwhile (claimed, assigned, closed)
       refuses the whole assignment with StaleEdit: a claim is never overwritten.
    2. Everyone gets tasks only on cases of a team they belong to.
    3. Someone who cannot see a case gets access only if a coordinator of that case's
       team asks for it in this same step (logged as access.granted); otherwise the
       whole assignment is refused with AccessNeeded. Nothing is widened silently.
    """
    tasks = [
        version_lock(t, None if versions is None else versions.get(t.pk, 0))
        for t in sorted(tasks, key=lambda t: str(t.pk))  # one lock order for every caller
    ]
    for task in tasks:
        if not may_assign(actor, task):
            raise PermissionDenied
        if assignee is not None and not assignable_users(task).filter(pk=assignee.pk).exists():
            raise ValidationError(
                _("%(name)s is not a caseworker of the team of case %(ref)s.")
                % {"name": assignee.get_username(), "ref": task.case.reference}
            )
    if assignee is not None:
        blind = {t.case for t in tasks if not access.rights_of(assignee, t.case).view}
        if blind:
            if not grant_access or not all(access.rights_of(actor, c).manage for c in blind):
                raise AccessNeeded([assignee])
            for case in blind:
                services.access_grant(actor=actor, case=case, user=assignee, level="work")
    for task in tasks:
        previous = task.assignee_id
        if previous == (assignee.pk if assignee else None):
            continue
        task.assignee = assignee
        bump(task)
        task.save(update_fields=["assignee", "version"])
        _event(
            task,
            actor,
            TaskEvent.Kind.ASSIGNED,
            fields=["assignee"],
            detail={
                "from": str(previous) if previous else None,
                "to": str(assignee.pk) if assignee else None,
                "version": task.version,
            },
        )
    return len(tasks)


@transaction.atomic
def task_claim(*, actor, task: Task) -> bool:
    """Take an unassigned task. Two people clicking at once: exactly one wins."""
    if not access.rights_of(actor, task.case).work:
        raise PermissionDenied
    won = Task.objects.filter(pk=task.pk, assignee__isnull=True, status__in=ACTIVE_STATUSES).update(
        assignee=actor, version=F("version") + 1
    )
    if won:
        task.refresh_from_db(fields=["assignee", "version"])
        _event(
            task,
            actor,
            TaskEvent.Kind.CLAIMED,
            fields=["assignee"],
            detail={"to": str(actor.pk), "version": task.version},
        )
    return bool(won)


@transaction.atomic
def task_set_status(*, actor, task: Task, status: str, version: int | None = None) -> Task:
    """Move a task to `status`; the task as saved. With `version` (the one the row on the
    page showed), a task changed meanwhile raises StaleEdit: a stale "in progress" never
    undoes "done"."""
    if not access.rights_of(actor, task.case).work:
        raise PermissionDenied
    task = version_lock(task, version)
    if status == task.status:
        return task
    old = task.status
    task.status = status
    task.completed_at = timezone.now() if status == TaskStatus.DONE else None
    bump(task)
    task.save(update_fields=["status", "completed_at", "version"])
    _event(
        task,
        actor,
        TaskEvent.Kind.STATUS,
        fields=["status"],
        detail={"from": old, "to": status, "version": task.version},
        action="task.status_changed",
    )
    return task


@transaction.atomic
def task_comment(*, actor, task: Task, comment: str) -> None:
    if not access.rights_of(actor, task.case).work:
        raise PermissionDenied
    _event(task, actor, TaskEvent.Kind.COMMENTED, comment=comment, fields=["comment"])


def board_summary(tasks) -> list[dict]:
    """Per assignee (unassigned first): their tasks and counts open / overdue / this week."""
    today = timezone.localdate()
    week_end = today + datetime.timedelta(days=7)
    groups = {}
    for task in tasks:
        group = groups.setdefault(
            task.assignee_id,
            {"assignee": task.assignee, "tasks": [], "open": 0, "overdue": 0, "week": 0},
        )
        group["tasks"].append(task)
        group["open"] += 1
        group["overdue"] += task.is_overdue
        group["week"] += bool(task.due_on and today <= task.due_on <= week_end)
    return sorted(
        groups.values(),
        key=lambda g: (
            g["assignee"] is not None,
            g["assignee"].get_username() if g["assignee"] else "",
        ),
    )


# --- Reminders --------------------------------------------------------------------------------
def caseworker_digest(user, today) -> dict:
    tasks = Task.objects.filter(assignee=user, status__in=ACTIVE_STATUSES)
    return {
        "due_today": tasks.filter(due_on=today).count(),
        "overdue": tasks.filter(due_on__lt=today).count(),
    }


def coordinator_digest(user, today) -> dict:
    from django.db.models import Count

    tasks = Task.objects.filter(team__in=access.led_teams(user), status__in=ACTIVE_STATUSES)
    overdue = (
        tasks.filter(due_on__lt=today, assignee__isnull=False)
        .values("assignee__username")
        .annotate(n=Count("id"))
        .order_by("assignee__username")
    )
    stale = timezone.now() - datetime.timedelta(days=settings.PASSAGE_UNASSIGNED_ALERT_DAYS)
    return {
        "overdue_by_person": [(row["assignee__username"], row["n"]) for row in overdue],
        "unassigned_old": tasks.filter(assignee__isnull=True, created_at__lt=stale).count(),
        "days": settings.PASSAGE_UNASSIGNED_ALERT_DAYS,
    }
