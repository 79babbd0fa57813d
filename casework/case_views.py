"""Case pages. Every case-scoped view starts with get_case_for_user(); every read of case
content and every change writes its access event."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from . import access, audit, lists, panels, queues, search, services, vault, versions
from .access import get_case_for_user
from .drafts import keeps_draft
from .drafts import restored as restored_draft
from .forms import (
    BreakGlassForm,
    CaseEditForm,
    CaseFilterForm,
    CaseForm,
    CaseSearchForm,
    GrantForm,
    NoteForm,
    ReasonForm,
    RevokeForm,
    SealForm,
    StageForm,
    TaskForm,
    WhereaboutsForm,
)
from .models import (
    Attachment,
    Case,
    CaseUserObjectPermission,
    Note,
    Role,
    Stage,
    TaskTemplate,
    Team,
    Whereabouts,
)
from .responses import post_only, report_errors
from .vault.files import STORAGE_FULL, FileNotStored


def _works_on_cases(user):
    if not access.works_on_cases(user):
        raise PermissionDenied


CASE_LIST_FIELDS = ["reference", "sealed", "stage", "risk", "opened_on", "team__name", "data_key"]


@login_required
def case_list(request):
    """The cases the user may see, 50 a page by key (no OFFSET, no COUNT(*) over all of
    them): the page's rows in one query, the number of cases counted to 1,001 at most,
    caseworkers of the page's cases in one more."""
    _works_on_cases(request.user)
    teams = access.teams_of(request.user)
    assignees = access.team_people(teams)
    filters = CaseFilterForm(request.GET or None, teams=teams, assignees=assignees)
    cases = access.cases_for_user(request.user)
    found = search.recall(request.session, request.GET.get("found", ""))
    if found is not None:
        cases = cases.filter(pk__in=found)
    if filters.is_valid():
        data = filters.cleaned_data
        if data["stage"]:
            cases = cases.filter(stage=data["stage"])
        if data["risk"]:
            cases = cases.filter(risk=data["risk"])
        if data["team"]:
            cases = cases.filter(team=data["team"])
        if data["assignee"]:
            cases = cases.filter(pk__in=access.granted_cases(data["assignee"], access.CHANGE))
    page = lists.keyset_page(
        cases.select_related("team", "data_key").only(*CASE_LIST_FIELDS, "legal_name"),
        lists.CASE_ORDER,
        settings.PASSAGE_CASES_PER_PAGE,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    rows = page.rows
    total = lists.bounded_count(cases)
    workers = _caseworkers_by_case(rows)
    for case in rows:
        case.workers = workers.get(case.pk, [])
    if rows:
        audit.record(
            request.user,
            "case.listed",
            detail={"cases": [str(c.pk) for c in rows]},
        )
    return render(
        request,
        "casework/case_list.html",
        {
            "page": page,
            "rows": rows,
            "total": total,
            "count_max": lists.COUNT_MAX,
            "filters": filters,
            "search_form": CaseSearchForm(),
            "found": found is not None,
            "query_string": lists.query_without_position(request),
        },
    )


def _caseworkers_by_case(cases) -> dict:
    """The caseworkers of each case on a page, in one query."""
    grants = (
        CaseUserObjectPermission.objects.filter(
            content_object__in=[c.pk for c in cases],
            permission__codename=access.CHANGE,
            user__groups__name=Role.CASEWORKER,
        )
        .select_related("user")
        .order_by("user__username")
    )
    out = {}
    for grant in grants:
        out.setdefault(grant.content_object_id, []).append(grant.user)
    return out


@sensitive_post_parameters("q")
@sensitive_variables("term")
@require_POST
@login_required
def case_search(request):
    """Search by reference or name. POST keeps the words out of URLs and server logs; the
    result travels as a random token. The log holds blind-index values, never words."""
    _works_on_cases(request.user)
    form = CaseSearchForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter a reference or a name to search for."))
        return redirect("case_list")
    found = search.search_cases(actor=request.user, term=form.cleaned_data["q"])
    token = search.remember(request.session, found.ids)
    if found.too_common:
        messages.info(
            request,
            _(
                "So many cases carry that name that it cannot be searched alone. Add "
                "another part of the name, or search by reference."
            ),
        )
    elif not found.ids:
        messages.info(
            request, _("No case you can see matches. Check the spelling or try one name.")
        )
    elif found.limited:
        messages.info(
            request,
            _(
                "More cases match than one search shows (%(n)s at most). Add another "
                "name, or search by reference."
            )
            % {"n": search.RESULTS_MAX},
        )
    return redirect(f"{request.build_absolute_uri('/cases/')}?found={token}")


@login_required
def case_new(request):
    _works_on_cases(request.user)
    form = CaseForm(request.POST or None, teams=access.teams_of(request.user))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        case = services.case_open(
            actor=request.user,
            team=data["team"],
            person=form.person(),
            aims=data["aims"],
            risk=data["risk"],
        )
        messages.success(request, _("Case %(ref)s opened.") % {"ref": case.reference})
        return redirect("case_detail", pk=case.pk)
    return render(request, "casework/case_form.html", {"form": form, "case": None})


@login_required
def case_detail(request, pk):
    return case_page(request, get_case_for_user(request, pk))


def case_page(request, case, *, note_form=None, task_form=None, status=200):
    """The case page (a read of its content, logged); `note_form` or `task_form` is a
    form sent back with an error, shown as typed.

    Its queries are fixed, whatever the notes, attachments, tasks, history and family
    requests (tests/test_query_counts.py names them): the case comes with its rights, so
    nothing asks the permission tables again; notes with their authors, their
    attachments, tasks with their assignees, the stage history and the family panel are
    one query each; the caseworkers named on the case and the people a task can go to
    are one query together. The forms (a note, a task, a checklist) are plain markup in
    the template, folded until opened: rendering them costs no form library and no query
    of their own. (A sealed case's opening adds the notices it owes: casework/outbox.py.)
    """
    user, rights = request.user, case.rights
    notes = case.notes.select_related("author").prefetch_related(
        Prefetch("attachments", queryset=Attachment.objects.order_by("created_at"))
    )
    if not rights.restricted_notes:
        notes = notes.filter(restricted=False)
    if case.sealed:
        from .outbox import notification_queue

        with transaction.atomic():  # the opening and the e-mails it owes: both or neither
            audit.record(user, "case.sealed_opened", case=case)
            notification_queue(kind="sealed_opened", about=str(case.pk), actor=user)
    else:
        audit.record(user, "case.viewed", case=case)
    rosters = {"workers": access.case_workers(case)}
    if rights.work:
        rosters["assignees"] = queues.assignable_users(case)
    people = access.people_lists(**rosters)
    context = {
        "case": case,
        "notes": _with_case(notes, case),
        "note_form": note_form or NoteForm(initial=restored_draft(request, case)),
        "stage_form": StageForm(initial={"stage": case.stage}),
        "stage_history": case.stage_changes.select_related("changed_by"),
        "workers": people["workers"],
        "tasks": case.tasks.select_related("assignee").order_by("status", "due_on")[:100],
        "panels": panels.for_case(user, case),
    }
    if rights.work:
        # The task form is shown from these lists: a form sent back keeps its own
        # (already evaluated) choices for validation only.
        context["task_form"] = task_form or TaskForm()
        context["assignees"] = people["assignees"]
        context["task_templates"] = TaskTemplate.objects.filter(active=True)
    return render(request, "casework/case_detail.html", context, status=status)


def _with_case(notes, case) -> list:
    """Notes and their attachments with the checked case (and its data key) set, so
    decrypting a file name asks the database nothing more."""
    notes = list(notes)
    for note in notes:
        note.case = case
        for attachment in note.attachments.all():
            attachment.case = case
    return notes


def _person_initial(case) -> dict:
    initial = {name: getattr(case, name) for name in CaseForm.PERSON}
    initial.update(team=case.team_id, aims=case.aims, risk=case.risk)
    return initial


@login_required
def case_edit(request, pk):
    """Edit a case. The form carries the version it was loaded from: a save over
    someone else's newer change is refused (409) with the merge shown, nothing typed
    lost (casework/versions.py)."""
    case = get_case_for_user(request, pk, access.CHANGE)
    teams = Team.objects.filter(
        Q(pk__in=access.teams_of(request.user).values("pk")) | Q(pk=case.team_id)
    )
    initial = _person_initial(case)
    form = CaseEditForm(request.POST or None, initial=initial, teams=teams)
    if request.method != "POST":
        form.show(case, initial)
    elif form.is_valid():
        data = form.cleaned_data
        changes = {**form.person(), "aims": data["aims"], "risk": data["risk"]}
        if case.rights.coordinates:
            changes["team"] = data["team"]
        try:
            changed = services.case_update(
                actor=request.user, case=case, data=changes, version=form.expected_version
            )
        except versions.StaleEdit as stale:
            form, conflict = versions.stale_form(
                form, stale, _person_initial(stale.current), teams=teams
            )
            # The page shows the case as saved now: a read of its content.
            audit.record(request.user, "case.viewed", case=case, detail={"page": "edit_conflict"})
            return render(
                request,
                "casework/case_form.html",
                {"form": form, "case": case, "stale": conflict},
                status=409,
            )
        messages.success(request, _("Saved.") if changed else _("Nothing was changed."))
        return redirect("case_detail", pk=case.pk)
    if request.method == "GET":
        audit.record(request.user, "case.viewed", case=case, detail={"page": "edit"})
    return render(request, "casework/case_form.html", {"form": form, "case": case})


@login_required
def case_stage(request, pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    form = StageForm(request.POST)
    if form.is_valid():
        services.case_change_stage(actor=request.user, case=case, stage=form.cleaned_data["stage"])
        messages.success(request, _("Stage changed."))
    else:
        messages.error(request, _("Choose one of the stages in the list."))
    return redirect("case_detail", pk=case.pk)


@login_required
def case_close(request, pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    services.case_change_stage(actor=request.user, case=case, stage=Stage.CLOSED)
    messages.success(request, _("Case closed. It will be shredded after the retention period."))
    return redirect("case_detail", pk=case.pk)


@login_required
def case_reopen(request, pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    if case.stage == Stage.CLOSED:
        services.case_change_stage(actor=request.user, case=case, stage=Stage.INTAKE)
        messages.success(request, _("Case reopened at intake."))
    return redirect("case_detail", pk=case.pk)


@keeps_draft
@login_required
def note_add(request, pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    form = NoteForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.note_add(
                actor=request.user,
                case=case,
                body=form.cleaned_data["body"],
                restricted=form.cleaned_data["restricted"],
                upload=form.cleaned_data.get("attachment"),
                once=form.cleaned_data["once"],
            )
        except versions.AlreadyDone:
            messages.info(request, versions.ALREADY_DONE)
            return redirect("case_detail", pk=case.pk)
        except FileNotStored:
            # Nothing was saved (no row, no file): the note comes back as typed.
            form.add_error("attachment", STORAGE_FULL)
        else:
            messages.success(request, _("Note added."))
            return redirect("case_detail", pk=case.pk)
    # The case page again, the note as typed and what was wrong beside it (never a
    # redirect that drops the text).
    return case_page(request, case, note_form=form, status=400)


@login_required
def attachment_download(request, pk, attachment_pk):
    case = get_case_for_user(request, pk)
    notes = Note.objects.filter(case=case)
    if not case.rights.restricted_notes:
        notes = notes.filter(restricted=False)
    attachment = get_object_or_404(Attachment, pk=attachment_pk, case=case, note__in=notes)
    attachment.case = case  # its data key, already loaded
    data = vault.open_file(case.data_key, attachment.blob_name)
    audit.record(request.user, "attachment.viewed", case=case, obj=attachment)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = _disposition(attachment.filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _disposition(filename: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename=\"attachment\"; filename*=UTF-8''{quote(filename)}"


@sensitive_variables("place")
@login_required
def whereabouts(request, pk):
    """Asks for a reason first; shows the whereabouts only in the answer to that POST."""
    case = get_case_for_user(request, pk, access.WHEREABOUTS)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        place = services.whereabouts_view(
            actor=request.user, case=case, reason=form.cleaned_data["reason"]
        )
        return render(
            request,
            "casework/whereabouts.html",
            {
                "case": case,
                "place": place,
                "edit_form": _whereabouts_form(place),
            },
        )
    return render(request, "casework/whereabouts_reason.html", {"case": case, "form": form})


def _whereabouts_initial(place) -> dict:
    return {name: getattr(place, name) for name in Whereabouts.FIELDS} if place else {}


def _whereabouts_form(place):
    initial = _whereabouts_initial(place)
    return WhereaboutsForm(initial=initial).show(place, initial)


@sensitive_post_parameters()
@login_required
def whereabouts_edit(request, pk):
    case = get_case_for_user(request, pk, access.WHEREABOUTS)
    if (refused := post_only(request)) is not None:
        return refused
    if not case.rights.work:
        raise Http404
    form = WhereaboutsForm(request.POST)
    if form.is_valid():
        data = {name: form.cleaned_data[name] for name in Whereabouts.FIELDS}
        try:
            services.whereabouts_save(
                actor=request.user, case=case, data=data, version=form.expected_version
            )
        except versions.StaleEdit as stale:
            # The page compares with what is saved now: a read of the whereabouts.
            place = services.whereabouts_view(actor=request.user, case=case, reason="edit_conflict")
            stale.current = place
            form, conflict = versions.stale_form(form, stale, _whereabouts_initial(place))
            context = {"case": case, "place": None, "edit_form": form, "stale": conflict}
            return render(request, "casework/whereabouts.html", context, status=409)
        messages.success(request, _("Whereabouts saved."))
        return redirect("case_detail", pk=case.pk)
    return render(
        request,
        "casework/whereabouts.html",
        {
            "case": case,
            "place": None,
            "edit_form": form,
        },
        status=400,
    )


@login_required
def case_access(request, pk):
    case = get_case_for_user(request, pk)
    if not case.rights.manage:
        raise PermissionDenied
    users = services.grantable_users(case)
    form = GrantForm(request.POST or None, users=users)
    if request.method == "POST" and form.is_valid():
        try:
            services.access_grant(
                actor=request.user,
                case=case,
                user=form.cleaned_data["user"],
                level=form.cleaned_data["level"],
            )
        except ValidationError as exc:
            form.add_error("user", exc)
        else:
            messages.success(request, _("Access granted."))
            return redirect("case_access", pk=case.pk)
    grants = (
        CaseUserObjectPermission.objects.filter(content_object=case)
        .select_related("user", "permission")
        .order_by("user__username")
    )
    by_user = {}
    for grant in grants:
        by_user.setdefault(grant.user, set()).add(grant.permission.codename)
    return render(
        request,
        "casework/case_access.html",
        {
            "case": case,
            "form": form,
            "grants": sorted(by_user.items(), key=lambda i: i[0].username),
        },
    )


@login_required
def case_revoke(request, pk):
    case = get_case_for_user(request, pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not case.rights.manage:
        raise PermissionDenied
    form = RevokeForm(request.POST)
    if form.is_valid():
        services.access_revoke(
            actor=request.user,
            case=case,
            user=form.cleaned_data["user"],
            level=form.cleaned_data["level"],
        )
        messages.success(request, _("Access revoked. It takes effect at once."))
    else:
        messages.error(request, _("Choose a staff member and an access level from the lists."))
    return redirect("case_access", pk=case.pk)


@login_required
def case_seal(request, pk):
    case = get_case_for_user(request, pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not case.rights.manage:
        raise PermissionDenied
    form = SealForm(request.POST)
    if not form.is_valid():
        report_errors(request, form)
        return redirect("case_detail", pk=case.pk)
    sealed = form.cleaned_data["sealed"]
    services.case_seal(actor=request.user, case=case, sealed=sealed)
    messages.success(request, _("The case is sealed.") if sealed else _("The case is unsealed."))
    return redirect("case_detail", pk=case.pk)


@sensitive_post_parameters("justification")
@login_required
def break_glass(request):
    if not request.user.has_role(Role.COORDINATOR):
        raise PermissionDenied
    form = BreakGlassForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        case = Case.objects.filter(reference=form.cleaned_data["reference"]).first()
        if case is None:
            form.add_error("reference", _("There is no case with this reference."))
        else:
            services.break_glass(
                actor=request.user,
                case=case,
                justification=form.cleaned_data["justification"],
            )
            messages.warning(request, _("Break-glass access for one hour. This is logged."))
            return redirect("case_detail", pk=case.pk)
    return render(request, "casework/break_glass.html", {"form": form})
