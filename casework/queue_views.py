"""Task queues: my queue, the team queue, the coordinator's board, a task's page."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import access, audit, lists, queues
from .access import get_case_for_user, get_task_for_user
from .forms import (
    BoardFilterForm,
    BulkAssignForm,
    ChecklistApplyForm,
    TaskAssignForm,
    TaskCommentForm,
    TaskForm,
    TaskStatusForm,
    TaskTemplateForm,
    TemplateItemFormSet,
)
from .models import Role, Task, TaskStatus, TaskTemplate
from .responses import post_only, redirect_back, report_errors
from .templatetags.choices import choice_labels
from .versions import StaleEdit


def _require_caseworkers(user):
    if not access.works_on_cases(user):
        raise PermissionDenied


def _require_coordinator(user):
    if not user.has_role(Role.COORDINATOR):
        raise PermissionDenied


def _record_listing(request, tasks, page):
    """Task titles are case content: one access event per page, naming the tasks shown."""
    tasks = list(tasks)
    if tasks:
        audit.record(
            request.user,
            "task.listed",
            detail={"page": page, "tasks": [str(t.pk) for t in tasks]},
        )


@login_required
def my_queue(request):
    _require_caseworkers(request.user)
    page = Paginator(queues.my_queue(request.user), settings.PASSAGE_TASKS_PER_PAGE)
    page = page.get_page(request.GET.get("page"))
    _record_listing(request, page.object_list, "my_queue")
    return render(
        request,
        "casework/my_queue.html",
        {
            "page": page,
            "tasks": list(page.object_list),
            "today": timezone.localdate(),
            # The status picker of every row: its labels made once, not per row.
            "statuses": list(choice_labels(Task, "status").items()),
        },
    )


@login_required
def team_queue(request):
    _require_caseworkers(request.user)
    tasks = queues.team_queue(request.user)[: settings.PASSAGE_TASKS_PER_PAGE]
    tasks = access.attach_task_rights(tasks, request.user)
    _record_listing(request, tasks, "team_queue")
    return render(
        request, "casework/team_queue.html", {"tasks": tasks, "today": timezone.localdate()}
    )


@login_required
def task_claim(request, task_pk):
    task = get_task_for_user(request, task_pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    won = queues.task_claim(actor=request.user, task=task)
    if request.htmx:
        task.refresh_from_db(fields=["assignee"])
        return render(
            request,
            "casework/_team_row.html",
            {"task": task, "claimed": won, "lost": not won, "today": timezone.localdate()},
        )
    if won:
        messages.success(request, _("The task is yours. It is now in your queue."))
    else:
        messages.warning(request, _("Someone else claimed this task a moment ago."))
    return redirect("team_queue")


@login_required
def task_detail(request, task_pk):
    return task_page(request, get_task_for_user(request, task_pk))


def task_page(request, task, *, comment_form=None, status=200):
    """A task's page (a read, logged); `comment_form` is a comment sent back with an
    error, shown as typed."""
    rights = task.case.rights
    audit.record(request.user, "task.viewed", case=task.case, obj=task)
    return render(
        request,
        "casework/task_detail.html",
        {
            "task": task,
            "history": task.history.select_related("actor"),
            "rights": rights,
            "status_form": TaskStatusForm(initial={"status": task.status, "version": task.version}),
            "comment_form": comment_form or TaskCommentForm(),
            "assign_form": TaskAssignForm(
                initial={"assignee": task.assignee_id, "version": task.version},
                assignees=queues.assignable_users(task),
            ),
        },
        status=status,
    )


@login_required
def task_status(request, task_pk):
    task = get_task_for_user(request, task_pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    form = TaskStatusForm(request.POST)
    if not form.is_valid():
        report_errors(request, form)
        return redirect_back(request, default="my_queue")
    refused = None
    try:
        task = queues.task_set_status(
            actor=request.user,
            task=task,
            status=form.cleaned_data["status"],
            version=form.cleaned_data["version"],
        )
    except StaleEdit as stale:
        # Someone changed the task since this page showed it: their change stands.
        task, refused = stale.current, stale_task_message(stale)
    if request.htmx:
        return render(
            request,
            "casework/_queue_row.html",
            {
                "task": task,
                "today": timezone.localdate(),
                "statuses": TaskStatus.choices,
                "refused": refused,
            },
        )
    if refused:
        messages.warning(request, refused)
    else:
        messages.success(request, _("Task updated."))
    return redirect_back(request, default="my_queue")


def stale_task_message(stale: StaleEdit) -> str:
    """Who changed the task since the page showed it, for the person whose change was
    refused."""
    who = ", ".join(sorted({c.actor for c in stale.changes if c.actor})) or _("someone")
    return _(
        "%(who)s changed this task since your page showed it, so your change was not "
        "made. It now reads: %(status)s, assigned to %(assignee)s. Check it and try again "
        "if needed."
    ) % {
        "who": who,
        "status": stale.current.get_status_display(),
        "assignee": stale.current.assignee.get_username()
        if stale.current.assignee
        else _("nobody"),
    }


@login_required
def task_comment(request, task_pk):
    task = get_task_for_user(request, task_pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    form = TaskCommentForm(request.POST)
    if form.is_valid():
        queues.task_comment(actor=request.user, task=task, comment=form.cleaned_data["comment"])
        messages.success(request, _("Comment added."))
        return redirect("task_detail", task_pk=task.pk)
    # The task's page again, the comment as typed with what was wrong.
    return task_page(request, task, comment_form=form, status=400)


@login_required
def task_assign(request, task_pk):
    task = get_task_for_user(request, task_pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not task.case.rights.assign:
        raise PermissionDenied
    form = TaskAssignForm(request.POST, assignees=queues.assignable_users(task))
    if form.is_valid():
        _assign(request, [task], form.cleaned_data, {task.pk: form.cleaned_data["version"]})
    elif "version" in form.errors:
        report_errors(request, form)
    else:
        messages.error(request, _("Choose someone from the case's team."))
    return redirect_back(request, default="board")


def _assign(request, tasks, data, versions) -> bool:
    try:
        queues.task_assign(
            actor=request.user,
            tasks=tasks,
            assignee=data["assignee"],
            grant_access=data["grant_access"],
            versions=versions,
        )
    except StaleEdit as stale:
        messages.warning(request, _("Nothing was assigned.") + " " + stale_task_message(stale))
        return False
    except ValidationError as exc:
        report_errors(request, exc)
        return False
    messages.success(request, _("Assigned %(n)s task(s).") % {"n": len(tasks)})
    return True


@login_required
def board(request):
    """Open tasks of the coordinator's teams by person. The counts are the whole board's
    (one grouped query); the rows come a page at a time, loading no case content."""
    _require_coordinator(request.user)
    filters = BoardFilterForm(request.GET or None)
    tasks = queues.board_selection(request.user)
    if filters.is_valid():
        tasks = queues.board_filter(tasks, **filters.cleaned_data)
    per_page = settings.PASSAGE_TASKS_PER_PAGE
    totals = queues.board_totals(tasks, per_page)
    total = sum(t["open"] for t in totals)
    pager = lists.CountedPaginator(queues.board_rows(tasks), per_page, count=total)
    page = pager.get_page(request.GET.get("page"))
    rows = list(page.object_list)
    _record_listing(request, rows, "board")
    return render(
        request,
        "casework/board.html",
        {
            "totals": totals,
            "groups": queues.board_page_groups(rows, totals, page.number),
            "page": page,
            "filters": filters,
            "query_string": lists.query_without_position(request),
            "assignees": access.team_people(access.led_teams(request.user)),
            "today": timezone.localdate(),
            "total": total,
        },
    )


@require_POST
@login_required
def board_assign(request):
    _require_coordinator(request.user)
    # Only tasks the board shows: the same selection, with the same rights.
    candidates = queues.board_tasks(request.user)
    assignees = access.team_people(access.led_teams(request.user))
    form = BulkAssignForm(request.POST, tasks=candidates, assignees=assignees)
    if form.is_valid():
        tasks = access.attach_task_rights(form.cleaned_data["tasks"], request.user)
        _assign(request, tasks, form.cleaned_data, form.cleaned_data["versions"])
    elif form.non_field_errors():
        report_errors(request, form.non_field_errors())
    else:
        messages.error(request, _("Tick at least one task and choose who gets them."))
    return redirect_back(request, default="board")


@login_required
def case_task_new(request, pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    form = TaskForm(request.POST, assignees=queues.assignable_users(case))
    if form.is_valid():
        data = form.cleaned_data
        try:
            queues.task_create(
                actor=request.user,
                case=case,
                title=data["title"],
                details=data["details"],
                aim=data["aim"],
                priority=data["priority"],
                due_on=data["due_on"],
                assignee=data["assignee"],
                grant_access=data["grant_access"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Task added."))
            return redirect(f"{_case_url(case)}#tasks")
    # The case page again, the task as typed with what was wrong.
    from .case_views import case_page

    report_errors(request, form)
    return case_page(request, case, task_form=form, status=400)


@login_required
def case_task_template(request, pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    form = ChecklistApplyForm(request.POST)
    if form.is_valid():
        created = queues.template_apply(
            actor=request.user, case=case, template=form.cleaned_data["template"]
        )
        messages.success(request, _("%(n)s tasks added from the checklist.") % {"n": len(created)})
    else:
        report_errors(request, form)
    return redirect(f"{_case_url(case)}#tasks")


def _case_url(case):
    from django.urls import reverse

    return reverse("case_detail", args=[case.pk])


@login_required
def task_templates(request):
    _require_coordinator(request.user)
    return render(
        request,
        "casework/task_templates.html",
        {"templates": TaskTemplate.objects.prefetch_related("items")},
    )


@login_required
def task_template_edit(request, template_pk=None):
    _require_coordinator(request.user)
    template = get_object_or_404(TaskTemplate, pk=template_pk) if template_pk else TaskTemplate()
    form = TaskTemplateForm(request.POST or None, instance=template)
    items = TemplateItemFormSet(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid() and items.is_valid():
        try:
            queues.template_save(
                actor=request.user,
                template=template,
                data=form.cleaned_data,
                items=items.cleaned_data,
                version=form.cleaned_data["version"],
            )
        except StaleEdit as stale:
            # Another coordinator saved it meanwhile: say who and what, keep the typing,
            # and let a second save (from the current version) apply it.
            data = request.POST.copy()
            data["version"] = str(stale.current.version)
            form = TaskTemplateForm(data, instance=template)
            items = TemplateItemFormSet(data, instance=template)
            labels = {name: str(field.label) for name, field in form.fields.items()}
            conflict = {
                "changes": [
                    {
                        "actor": change.actor,
                        "at": change.at,
                        "fields": [labels.get(f, f) for f in change.fields] or [_("its tasks")],
                    }
                    for change in stale.changes
                ]
            }
            context = {"form": form, "items": items, "template": template, "stale": conflict}
            return render(request, "casework/task_template_form.html", context, status=409)
        except ValidationError as exc:
            report_errors(request, exc)
        else:
            messages.success(request, _("Checklist saved."))
            return redirect("task_templates")
    return render(
        request,
        "casework/task_template_form.html",
        {"form": form, "items": items, "template": template},
    )
