"""The auditor's side of the access log: the log itself, the unusual-access report, the
review of a break-glass justification and a CSV export.

Auditors are watched too: every page here writes its own access event. Nothing here
reads case content; the one decrypted value is a break-glass justification, which the
auditor is there to review (and that review is itself logged).
"""

import csv
import datetime
import json
import uuid
from collections import defaultdict

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from . import audit, vault
from .models import AccessEvent, BreakGlass, Role, User

PER_PAGE = 50
REPORT_DAYS = 7
# Actions that touch a case: the ones "access at night" looks at.
CASE_PREFIXES = ("case.", "note.", "whereabouts.", "attachment.")
CASE_OPENINGS = ("case.viewed", "case.sealed_opened")
# Every column the log and the report show; the case's encrypted columns stay unread.
EVENT_COLUMNS = (
    "seq at actor_id action case_id object_type object_id fields detail flagged request_id "
    "actor__username case__reference"
).split()
CSV_HEADER = (
    "seq at actor action case_reference object_type object_id fields flagged request_id detail"
).split()
# Spreadsheets run a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _require_auditor(user):
    if not user.has_role(Role.AUDITOR):
        raise PermissionDenied


def _local_day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


class DateInput(forms.DateInput):
    input_type = "date"


class LogFilterForm(forms.Form):
    """Filters of the log and the export: ids, codes, dates and a case reference only."""

    actor = forms.ModelChoiceField(
        label=_("Person"),
        required=False,
        queryset=User.objects.order_by("username"),
        empty_label=_("Anyone"),
    )
    case = forms.CharField(label=_("Case reference"), required=False, max_length=20)
    action = forms.ChoiceField(label=_("Action"), required=False)
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput)
    date_to = forms.DateField(label=_("To"), required=False, widget=DateInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        actions = AccessEvent.objects.order_by("action").values_list("action", flat=True)
        self.fields["action"].choices = [
            ("", _("Any action")),
            *((code, code) for code in actions.distinct()),
        ]
        for field in self.fields.values():
            select = isinstance(field.widget, forms.Select)
            field.widget.attrs["class"] = "form-select" if select else "form-control"

    def clean_case(self):
        return self.cleaned_data["case"].strip()

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data

    def events(self):
        """The filtered log, newest first (nothing if the filters are invalid)."""
        events = AccessEvent.objects.select_related("actor", "case").only(*EVENT_COLUMNS)
        if self.is_bound and not self.is_valid():
            return events.none()
        data = self.cleaned_data if self.is_bound else {}
        if data.get("actor"):
            events = events.filter(actor=data["actor"])
        if data.get("case"):
            events = events.filter(case__reference__iexact=data["case"])
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("date_from"):
            events = events.filter(at__gte=_local_day_start(data["date_from"]))
        if data.get("date_to"):
            next_day = data["date_to"] + datetime.timedelta(days=1)
            events = events.filter(at__lt=_local_day_start(next_day))
        return events.order_by("-seq")

    def codes(self) -> dict:
        """The filters in use, for the auditor's own access event."""
        if not self.is_bound or not self.is_valid():
            return {}
        out = {}
        for name, value in self.cleaned_data.items():
            if value:
                out[name] = str(value.pk if name == "actor" else value)
        return out


class PeriodForm(forms.Form):
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput)
    date_to = forms.DateField(label=_("To"), required=False, widget=DateInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-control"

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data

    def period(self) -> tuple[datetime.datetime, datetime.datetime]:
        """[since, until): the chosen local days, or the last seven days up to now."""
        now = timezone.now()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        until = now
        if data.get("date_to"):
            until = _local_day_start(data["date_to"] + datetime.timedelta(days=1))
        since = until - datetime.timedelta(days=REPORT_DAYS)
        if data.get("date_from"):
            since = _local_day_start(data["date_from"])
        return since, until


def is_night(at: datetime.datetime) -> bool:
    start, end = settings.PASSAGE_NIGHT_HOURS
    hour = timezone.localtime(at).hour
    return (hour >= start or hour < end) if start > end else start <= hour < end


def unusual_access(since, until) -> dict:
    """The unusual-access report over [since, until), from one query.

    1. Load the period's events on cases (one query, only plain columns).
    2. Sort each into break-glass, sealed openings, searches outside the caseload,
       other flagged events (staff changes that widen who sees cases) and night-time
       access to cases.
    3. Count distinct cases opened per person and local clock hour; keep the hours
       above PASSAGE_UNUSUAL_CASES_PER_HOUR.
    Hours are computed here in Python, in TIME_ZONE: SQLite and PostgreSQL disagree on
    time-zone arithmetic, and Python gets it right on both.
    """
    events = (
        AccessEvent.objects.filter(at__gte=since, at__lt=until, actor__isnull=False)
        .filter(_prefix_filter(CASE_PREFIXES) | Q(flagged=True))
        .select_related("actor", "case")
        .only(*EVENT_COLUMNS)
        .order_by("seq")
    )
    report = {"break_glass": [], "sealed": [], "searches": [], "widened": [], "night": []}
    opened = defaultdict(set)  # (actor id, local hour) -> case ids
    usernames = {}
    for event in events.iterator(chunk_size=2000):
        if event.action == "case.break_glass":
            report["break_glass"].append(event)
        elif event.action == "case.sealed_opened":
            report["sealed"].append(event)
        elif event.action == "case.searched" and _outside_caseload(event.detail) > 0:
            report["searches"].append(event)
        elif event.flagged and not event.action.startswith(CASE_PREFIXES):
            report["widened"].append(event)
        if is_night(event.at) and event.action.startswith(CASE_PREFIXES):
            report["night"].append(event)
        if event.action in CASE_OPENINGS and event.case_id:
            hour = timezone.localtime(event.at).replace(minute=0, second=0, microsecond=0)
            opened[(event.actor_id, hour)].add(event.case_id)
            usernames[event.actor_id] = event.actor.username if event.actor else ""
    limit = settings.PASSAGE_UNUSUAL_CASES_PER_HOUR
    for rows in report.values():
        rows.reverse()  # newest first
    busy = [
        {"actor": usernames[actor_id], "hour": hour, "cases": len(cases)}
        for (actor_id, hour), cases in opened.items()
        if len(cases) > limit
    ]
    busy.sort(key=lambda row: row["actor"])
    report["busy_hours"] = sorted(busy, key=lambda row: row["hour"], reverse=True)
    return report


def _prefix_filter(prefixes):
    query = Q()
    for prefix in prefixes:
        query |= Q(action__startswith=prefix)
    return query


def _outside_caseload(detail) -> int:
    try:
        return int((detail or {}).get("outside_caseload") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


# --- Views ---------------------------------------------------------------------------------
@require_GET
@login_required
def audit_log(request):
    _require_auditor(request.user)
    filters = LogFilterForm(request.GET or None)
    page = Paginator(filters.events(), PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    audit.record(
        request.user,
        "audit.viewed",
        detail={"filters": filters.codes(), "page": page.number},
    )
    return render(
        request,
        "audit/log.html",
        {
            "filters": filters,
            "page": page,
            "rows": rows,
            "query_string": _query_without_page(request),
        },
    )


@require_GET
@login_required
def audit_unusual(request):
    _require_auditor(request.user)
    form = PeriodForm(request.GET or None)
    since, until = form.period()
    report = unusual_access(since, until)
    audit.record(
        request.user,
        "audit.report_viewed",
        detail={"since": since.isoformat(), "until": until.isoformat()},
    )
    return render(
        request,
        "audit/unusual.html",
        {
            "form": form,
            "since": since,
            "until": until,
            "report": report,
            "limit": settings.PASSAGE_UNUSUAL_CASES_PER_HOUR,
            "night_hours": settings.PASSAGE_NIGHT_HOURS,
        },
    )


@require_GET
@login_required
def audit_break_glass(request, seq):
    _require_auditor(request.user)
    event = AccessEvent.objects.select_related("actor", "case").only(*EVENT_COLUMNS)
    event = event.filter(seq=seq, action="case.break_glass").first()
    if event is None:
        raise Http404
    glass = (
        BreakGlass.objects.select_related("case__data_key", "user")
        .filter(pk=_uuid_or_none(event.object_id), case_id=event.case_id)
        .first()
    )
    audit.record(
        request.user,
        "audit.break_glass_reviewed",
        case=event.case,
        obj=glass,
        detail={"event": event.seq},
    )
    justification, shredded = None, False
    if glass is not None:
        try:
            justification = glass.justification
        except vault.Shredded:
            shredded = True
    return render(
        request,
        "audit/break_glass.html",
        {
            "event": event,
            "glass": glass,
            "justification": justification,
            "shredded": shredded,
        },
    )


def _uuid_or_none(value):
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return None


@require_GET
@login_required
def audit_export(request):
    """The filtered log as CSV, streamed. The export is logged before the first byte, with
    its row count; rows written after that moment (its own event included) are left out."""
    _require_auditor(request.user)
    filters = LogFilterForm(request.GET or None)
    last = AccessEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    events = filters.events().filter(seq__lte=last)
    count = events.count()
    with transaction.atomic():
        audit.record(
            request.user,
            "audit.exported",
            detail={"rows": count, "filters": filters.codes()},
        )
    response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="access-log-{stamp}.csv"'
    return response


class _Echo:
    def write(self, value):
        return value


def _csv_lines(events):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for event in events.iterator(chunk_size=2000):
        yield writer.writerow(_csv_row(event))


def _csv_row(event) -> list:
    return [
        event.seq,
        timezone.localtime(event.at).isoformat(),
        _cell(event.actor.username if event.actor else ""),
        _cell(event.action),
        _cell(event.case.reference if event.case else ""),
        _cell(event.object_type),
        _cell(event.object_id),
        _cell(";".join(event.fields or [])),
        "1" if event.flagged else "0",
        _cell(event.request_id),
        _cell(json.dumps(event.detail, sort_keys=True, ensure_ascii=True)),
    ]


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()
