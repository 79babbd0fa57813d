"""The plain-Django baseline: the same pages over the same data, nothing encrypted.

What a competent plain Django app would do for each Passage page, served through the
same stack (URL resolution, every middleware, session, login and second factor, the same
base template), so a benchmark's ratio is the cost of what Passage adds (encryption,
per-case rights, the access log, screening through blind indexes), not of the chrome.

1. Tables (`benchmark_plain_*`, created and dropped by the tools, never migrated): a case
   in plain columns with its notes, attachments, tasks, stage history, family requests
   and do-not-disclose entries; who may see which case is a plain grant table, and a
   coordinator sees their team's cases.
2. Views under /plain/ (tooling/urls.py adds them to the project's URLs; only the
   benchmark and the load test use that URL conf): the case list, search, case page, my
   queue, the board, triage, and the public contact form. Each renders a page of the same
   shape as Passage's (tooling/templates/tooling/plain/), with the same forms.
3. `process(request_id)`: screening and matching in plain SQL (names compared
   case-insensitively), run by the Celery worker as Passage's are (tooling/tasks.py).

The models belong to no installed app (APP_LABEL), so migrations and checks never see them;
still, only the tools import this module.
"""

import datetime
import functools
import operator
import secrets
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection, models, transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from casework.models import (
    ACTIVE_STATUSES,
    Aim,
    Priority,
    Risk,
    Role,
    Stage,
    TaskAim,
    TaskStatus,
    TaskTemplate,
    Team,
    User,
)
from casework.security import public

PREFIX = "benchmark_plain_"
# Not an installed app: its models are left out of apps.get_models(), so neither the
# migrations nor code that walks every model (checks, re-indexing, the canary sweep)
# ever sees these tables, even in a process that imported them.
APP_LABEL = "benchmark_plain"


# --- Tables ------------------------------------------------------------------------------------
class PlainCase(models.Model):
    """A case in plain columns, nothing encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reference = models.CharField(max_length=20, unique=True)
    team = models.ForeignKey("casework.Team", on_delete=models.PROTECT, related_name="+")
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.INTAKE)
    aims = models.JSONField(default=list)
    risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.MEDIUM)
    sealed = models.BooleanField(default=False)
    opened_on = models.DateField()
    closed_on = models.DateField(null=True)
    legal_name = models.CharField(max_length=200)
    other_names = models.TextField(blank=True)  # one per line
    birth_date = models.DateField(null=True)
    birth_year = models.IntegerField(null=True)
    gender = models.CharField(max_length=60, blank=True)
    nationalities = models.CharField(max_length=200, blank=True)
    languages = models.CharField(max_length=200, blank=True)
    left_on = models.DateField(null=True)
    circumstances = models.TextField(blank=True)
    needs = models.TextField(blank=True)
    safety_notes = models.TextField(blank=True)
    tracing = models.BooleanField(default=False)  # consented to family tracing

    is_shredded = False

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "case"
        indexes = [
            models.Index(fields=["-opened_on", "reference"], name="bench_plain_case_order"),
            models.Index(fields=["team", "-opened_on", "reference"], name="bench_plain_case_team"),
        ]

    def __str__(self):
        return self.reference

    @property
    def other_names_list(self) -> list[str]:
        return [n for n in self.other_names.split("\n") if n]

    @property
    def aim_labels(self) -> list[str]:
        labels = dict(Aim.choices)
        return [str(labels.get(a, a)) for a in self.aims]


class PlainGrant(models.Model):
    """Who may see a case (and work on it): one row per person and case."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="grants")
    work = models.BooleanField(default=True)

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "grant"
        constraints = [
            models.UniqueConstraint(fields=["user", "case"], name="bench_plain_grant_once")
        ]

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainStageChange(models.Model):
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(max_length=20, choices=Stage.choices, blank=True)
    to_stage = models.CharField(max_length=20, choices=Stage.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField()

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "stage_change"
        ordering = ["changed_at"]

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainNote(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(db_index=True)
    restricted = models.BooleanField(default=False)
    body = models.TextField()

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "note"
        ordering = ["-created_at"]

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainAttachment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="+")
    note = models.ForeignKey(PlainNote, on_delete=models.CASCADE, related_name="attachments")
    size = models.PositiveIntegerField()
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "attachment"

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainTask(models.Model):
    """A task in plain columns, with the task table's queue indexes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="tasks")
    team = models.ForeignKey("casework.Team", on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=200)
    details = models.TextField(blank=True)
    aim = models.CharField(max_length=20, choices=TaskAim.choices, default=TaskAim.SUPPORT)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    due_on = models.DateField(null=True)
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)
    version = 1

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "task"
        indexes = [
            models.Index(fields=["assignee", "status", "due_on"], name="bench_plain_task_queue"),
            models.Index(fields=["team", "status"], name="bench_plain_task_team"),
        ]

    def __str__(self):
        return self.title

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_overdue(self) -> bool:
        return self.is_active and self.due_on is not None and self.due_on < timezone.localdate()


class PlainFamilyRequest(models.Model):
    """A family request in plain columns."""

    class Stage(models.TextChoices):
        NEW = "new", "New: screening and matching pending"
        TRIAGE = "triage", "Waiting for a coordinator"
        HANDED = "handed", "With the case's caseworker"
        RELAY = "relay", "Messages relayed"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reference = models.CharField(max_length=14, unique=True)
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.NEW)
    language = models.CharField(max_length=10, default="en")
    created_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True)
    case = models.ForeignKey(PlainCase, null=True, on_delete=models.SET_NULL, related_name="+")
    requester_name = models.CharField(max_length=200)
    relationship = models.CharField(max_length=100)
    requester_country = models.CharField(max_length=100)
    requester_email = models.CharField(max_length=254, blank=True)
    requester_phone = models.CharField(max_length=60, blank=True)
    sought_names = models.TextField()  # one per line
    sought_birth_year = models.IntegerField(null=True)
    last_place = models.CharField(max_length=200, blank=True)
    last_year = models.IntegerField(null=True)
    other_details = models.TextField(blank=True)
    message = models.TextField()

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "family_request"
        indexes = [
            models.Index(fields=["stage", "created_at", "reference"], name="bench_plain_triage")
        ]

    def __str__(self):
        return self.reference

    @property
    def sought_list(self) -> list[str]:
        return [n for n in self.sought_names.split("\n") if n]


class PlainMatchCandidate(models.Model):
    request = models.ForeignKey(
        PlainFamilyRequest, on_delete=models.CASCADE, related_name="candidates"
    )
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    reasons = models.JSONField(default=list)

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "match_candidate"

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainScreeningFlag(models.Model):
    request = models.ForeignKey(PlainFamilyRequest, on_delete=models.CASCADE, related_name="flags")
    kind = models.CharField(max_length=20)
    case = models.ForeignKey(PlainCase, null=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "screening_flag"

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainDoNotDisclose(models.Model):
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200, db_index=True)
    phone = models.CharField(max_length=60, blank=True, db_index=True)
    email = models.CharField(max_length=254, blank=True)

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "do_not_disclose"

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


class PlainEvent(models.Model):
    """An access-log row without the chain: the baseline of the access-log writers."""

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict)
    ip = models.GenericIPAddressField(null=True)

    class Meta:
        app_label = APP_LABEL
        managed = False
        db_table = PREFIX + "event"

    def __str__(self):
        return f"{type(self).__name__} {self.pk}"


TABLES = [
    PlainCase,
    PlainGrant,
    PlainStageChange,
    PlainNote,
    PlainAttachment,
    PlainTask,
    PlainFamilyRequest,
    PlainMatchCandidate,
    PlainScreeningFlag,
    PlainDoNotDisclose,
    PlainEvent,
]


def create_tables() -> None:
    """Create the plain tables that do not exist yet (a load test's database keeps them)."""
    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in TABLES:
            if model._meta.db_table not in existing:
                editor.create_model(model)


def drop_tables() -> None:
    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in reversed(TABLES):
            if model._meta.db_table in existing:
                editor.delete_model(model)


# --- Who sees what -------------------------------------------------------------------------
def led_teams(user):
    return Team.objects.filter(coordinators=user).values("pk")


def visible_cases(user):
    """A grant, or the team the user coordinates: what a plain app would check."""
    granted = PlainGrant.objects.filter(user=user).values("case_id")
    return PlainCase.objects.filter(Q(pk__in=granted) | Q(team__in=led_teams(user)))


def _teams_of(user):
    return Team.objects.filter(Q(members=user) | Q(coordinators=user)).distinct()


def _team_people(teams):
    return (
        User.objects.filter(teams__in=teams, groups__name=Role.CASEWORKER, is_active=True)
        .distinct()
        .order_by("username")
    )


# --- Staff pages -----------------------------------------------------------------------------
SEARCHES = "plain_searches"


@login_required
def case_list(request):
    from casework.forms import CaseFilterForm, CaseSearchForm

    teams = _teams_of(request.user)
    filters = CaseFilterForm(request.GET or None, teams=teams, assignees=_team_people(teams))
    cases = visible_cases(request.user)
    found = request.session.get(SEARCHES, {}).get(request.GET.get("found", ""))
    if found is not None:
        cases = cases.filter(pk__in=found)
    if filters.is_valid():
        data = filters.cleaned_data
        for name in ("stage", "risk", "team"):
            if data[name]:
                cases = cases.filter(**{name: data[name]})
        if data["assignee"]:
            cases = cases.filter(grants__user=data["assignee"], grants__work=True)
    cases = cases.select_related("team").order_by("-opened_on", "reference")
    page = Paginator(cases, settings.PASSAGE_CASES_PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    workers = {}
    for grant in (
        PlainGrant.objects.filter(case__in=rows, work=True, user__groups__name=Role.CASEWORKER)
        .select_related("user")
        .order_by("user__username")
    ):
        workers.setdefault(grant.case_id, []).append(grant.user)
    for case in rows:
        case.workers = workers.get(case.pk, [])
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "tooling/plain/case_list.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "search_form": CaseSearchForm(),
            "found": found is not None,
            "query_string": query.urlencode(),
        },
    )


@require_POST
@login_required
def case_search(request):
    term = request.POST.get("q", "").strip()
    if not term:
        return redirect("plain_case_list")
    ids = list(
        visible_cases(request.user)
        .filter(
            Q(reference__iexact=term)
            | Q(legal_name__icontains=term)
            | Q(other_names__icontains=term)
        )
        .values_list("pk", flat=True)[:500]
    )
    token = secrets.token_urlsafe(8)
    searches = dict(list(request.session.get(SEARCHES, {}).items())[-9:])
    searches[token] = [str(pk) for pk in ids]
    request.session[SEARCHES] = searches
    return redirect(f"/plain/cases/?found={token}")


@login_required
def case_detail(request, pk):
    from casework.forms import NoteForm, StageForm, TaskForm

    user = request.user
    granted = PlainGrant.objects.filter(user=user, case=OuterRef("pk"))
    case = get_object_or_404(
        visible_cases(user)
        .select_related("team")
        .annotate(
            _work=Exists(granted.filter(work=True)),
            _leads=Exists(Team.objects.filter(pk=OuterRef("team_id"), coordinators=user)),
        ),
        pk=pk,
    )
    work = case._work or case._leads
    case.rights = _Rights(work=work, whereabouts=False, manage=case._leads, restricted_notes=work)
    notes = case.notes.select_related("author").prefetch_related(
        Prefetch("attachments", queryset=PlainAttachment.objects.order_by("created_at"))
    )
    if not case.rights.restricted_notes:
        notes = notes.filter(restricted=False)
    people = _team_people([case.team_id])
    context = {
        "case": case,
        "notes": list(notes),
        "note_form": NoteForm(),
        "stage_form": StageForm(initial={"stage": case.stage}),
        "stage_history": case.stage_changes.select_related("changed_by"),
        "workers": User.objects.filter(
            pk__in=case.grants.filter(work=True).values("user_id"),
            groups__name=Role.CASEWORKER,
        ).order_by("username"),
        "tasks": case.tasks.select_related("assignee").order_by("status", "due_on")[:100],
        "requests": PlainFamilyRequest.objects.filter(case=case).order_by("created_at"),
    }
    if work:
        context["task_form"] = TaskForm(assignees=people)
        context["task_templates"] = TaskTemplate.objects.filter(active=True)
    return render(request, "tooling/plain/case_detail.html", context)


class _Rights:
    def __init__(self, **rights):
        self.__dict__.update(rights)


def queue_order(tasks):
    return tasks.order_by("priority", models.F("due_on").asc(nulls_last=True), "created_at")


@login_required
def my_queue(request):
    tasks = queue_order(
        PlainTask.objects.filter(assignee=request.user, status__in=ACTIVE_STATUSES).select_related(
            "case"
        )
    )
    page = Paginator(tasks, settings.PASSAGE_TASKS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "tasks": list(page.object_list),
        "today": timezone.localdate(),
        "statuses": TaskStatus.choices,
    }
    return render(request, "tooling/plain/my_queue.html", context)


@login_required
def board(request):
    """A team's open tasks a page at a time, grouped by person, with each person's
    counts (one grouped query) and the people to assign them to."""
    from casework.forms import BoardFilterForm

    today = timezone.localdate()
    week = today + datetime.timedelta(days=7)
    tasks = PlainTask.objects.filter(team__in=led_teams(request.user), status__in=ACTIVE_STATUSES)
    totals = list(
        tasks.values("assignee")
        .annotate(
            open=Count("pk"),
            overdue=Count("pk", filter=Q(due_on__lt=today)),
            week=Count("pk", filter=Q(due_on__gte=today, due_on__lte=week)),
        )
        .order_by("assignee")
    )
    people = {u.pk: u for u in User.objects.filter(pk__in=[t["assignee"] for t in totals])}
    for t in totals:
        t["assignee"] = people.get(t["assignee"])
    total = sum(t["open"] for t in totals)
    rows = queue_order(tasks.select_related("case", "assignee")).order_by(
        "assignee__username", "priority", "due_on"
    )
    page = Paginator(rows, settings.PASSAGE_TASKS_PER_PAGE).get_page(request.GET.get("page"))
    groups = {}
    for task in page.object_list:
        groups.setdefault(task.assignee_id, {"assignee": task.assignee, "tasks": []})
        groups[task.assignee_id]["tasks"].append(task)
    by_assignee = {t["assignee"].pk if t["assignee"] else None: t for t in totals}
    for key, group in groups.items():
        group.update({k: by_assignee.get(key, {}).get(k, 0) for k in ("open", "overdue", "week")})
    context = {
        "totals": totals,
        "groups": list(groups.values()),
        "page": page,
        "filters": BoardFilterForm(request.GET or None),
        "assignees": _team_people(Team.objects.filter(coordinators=request.user)),
        "today": today,
        "total": total,
    }
    return render(request, "tooling/plain/board.html", context)


@login_required
def triage(request):
    waiting = (
        PlainFamilyRequest.objects.filter(stage__in=["new", "triage"])
        .prefetch_related("flags", "candidates")
        .order_by("created_at", "reference")
    )
    page = Paginator(waiting, settings.PASSAGE_CASES_PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    for fr in rows:
        fr.flag_kinds = sorted({f.kind for f in fr.flags.all()})
        fr.best_score = max((c.score for c in fr.candidates.all()), default=None)
    return render(request, "tooling/plain/triage.html", {"page": page, "rows": rows})


# --- The public form -------------------------------------------------------------------------
@public
@require_http_methods(["GET", "POST"])
def contact_form(request):
    """Validate, save one row, queue screening and matching after the commit, thank."""
    from contacts.models import NoticeText
    from families.forms import ContactRequestForm, started_token
    from families.models import new_reference, new_secret

    from .tasks import plain_process_request

    notice = NoticeText.current("family_request", "en")
    if request.method == "POST":
        form = ContactRequestForm(request.POST)
        if form.is_valid():
            data = form.request_data()
            saved = PlainFamilyRequest.objects.create(
                reference=new_reference(),
                **{
                    **data,
                    "sought_names": "\n".join(data["sought_names"]),
                    "sought_birth_year": data["sought_birth_year"] or None,
                    "last_year": data["last_year"] or None,
                },
            )
            transaction.on_commit(lambda: plain_process_request.delay(str(saved.pk)))
            context = {"reference": saved.reference, "secret": new_secret()}
            return render(request, "families/thanks.html", context)
    else:
        form = ContactRequestForm(initial={"started": started_token()})
    return render(request, "families/contact_form.html", {"form": form, "notice": notice})


# --- Screening and matching in plain SQL -------------------------------------------------------
def process(request_id) -> None:
    """Screen and match one request: names compared case-insensitively in SQL, among
    the cases that consented to tracing; candidates and flags saved once."""
    fr = PlainFamilyRequest.objects.filter(pk=request_id, processed_at__isnull=True).first()
    if fr is None:
        return
    names = fr.sought_list[:5]
    if not names:
        return
    requester = Q(name__iexact=fr.requester_name)
    if fr.requester_phone:
        requester |= Q(phone=fr.requester_phone)
    if fr.requester_email:
        requester |= Q(email__iexact=fr.requester_email)
    flags = [
        PlainScreeningFlag(request=fr, kind="requester_on_dnd", case_id=case_id)
        for case_id in PlainDoNotDisclose.objects.filter(requester).values_list(
            "case_id", flat=True
        )
    ]
    since = timezone.now() - datetime.timedelta(days=settings.PASSAGE_HUNTING_WINDOW_DAYS)
    sought = functools.reduce(operator.or_, (Q(sought_names__icontains=n) for n in names))
    others = (
        PlainFamilyRequest.objects.filter(sought, created_at__gte=since)
        .exclude(pk=fr.pk)
        .exclude(requester_phone=fr.requester_phone)
    )
    if others[:1].exists():
        flags.append(PlainScreeningFlag(request=fr, kind="sought_repeatedly"))
    named = functools.reduce(
        operator.or_, (Q(legal_name__iexact=n) | Q(other_names__icontains=n) for n in names)
    )
    candidates = []
    for case in PlainCase.objects.filter(named, tracing=True)[:50]:
        reasons = ["names"]
        if fr.sought_birth_year and case.birth_year == fr.sought_birth_year:
            reasons.append("birth_year")
        candidates.append(
            PlainMatchCandidate(request=fr, case=case, score=len(reasons) / 3, reasons=reasons)
        )
    with transaction.atomic():
        marked = PlainFamilyRequest.objects.filter(pk=fr.pk, processed_at__isnull=True).update(
            processed_at=timezone.now(), stage="triage"
        )
        if marked:
            PlainScreeningFlag.objects.bulk_create(flags)
            PlainMatchCandidate.objects.bulk_create(candidates)


urlpatterns = [
    path("cases/", case_list, name="plain_case_list"),
    path("cases/search/", case_search, name="plain_case_search"),
    path("cases/<uuid:pk>/", case_detail, name="plain_case_detail"),
    path("tasks/", my_queue, name="plain_my_queue"),
    path("tasks/board/", board, name="plain_board"),
    path("families/triage/", triage, name="plain_triage"),
    path("contact/", contact_form, name="plain_contact"),
]
