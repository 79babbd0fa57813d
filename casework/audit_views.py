"""The auditor's side of the access log: the log itself, the unusual-access report, the
review of a break-glass justification, a CSV export whose rows carry their inclusion
proofs, and the signed checkpoint they prove against (casework/transparency.py).

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
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from . import audit, lists, search, transparency, vault
from .models import AccessEvent, BreakGlass, Role, User

PER_PAGE = 50
# The log's order, newest first: the pages go by key (no OFFSET, no COUNT(*) over a log
# that grows with every page anyone opens).
LOG_ORDER = [lists.Key("seq", descending=True)]
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
    " position tree_size leaf proof"
).split()
EXPORT_CHUNK = 500
# An export integrates what is waiting first; a backlog beyond this is left to the beat
# (its rows go out without a proof).
EXPORT_SEQUENCE_SECONDS = 5.0
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
            # The exact stored form on the reference's unique index (no case-blind scan).
            reference = search.normal_reference(data["case"]) or data["case"].strip().upper()
            events = events.filter(case__reference=reference)
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
    events = filters.events()
    page = lists.keyset_page(
        events,
        LOG_ORDER,
        PER_PAGE,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    rows = page.rows
    audit.record(
        request.user,
        "audit.viewed",
        detail={
            "filters": filters.codes(),
            "from": rows[0].seq if rows else None,
            "to": rows[-1].seq if rows else None,
        },
    )
    return render(
        request,
        "audit/log.html",
        {
            "filters": filters,
            "page": page,
            "rows": rows,
            "total": lists.bounded_count(events),
            "count_max": lists.COUNT_MAX,
            "query_string": lists.query_without_position(request),
            "checkpoint": _latest_checkpoint(),
        },
    )


def _latest_checkpoint():
    """The newest signed checkpoint (read from the end of its file: no query), or None."""
    try:
        return transparency.latest_checkpoint()
    except (OSError, ValueError, transparency.CheckpointError):
        return None


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
    its row count; rows written after that moment (its own event included) are left out.
    Then the sequencer runs, so that each row can carry its position in the Merkle tree
    and an inclusion proof against the tree of `tree_size` events, whose signed checkpoint
    the auditor downloads from `audit_checkpoint` (`manage.py verify_export` checks both)."""
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
    size = _tree_for_export()
    response = StreamingHttpResponse(
        _csv_lines(events, size), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="access-log-{stamp}-{size}.csv"'
    return response


def _tree_for_export() -> int:
    """Integrate what is waiting and checkpoint it; the tree size the proofs are against.
    A damaged tree (verify_audit says how) still lets the log be exported, unproven."""
    try:
        checkpoint = transparency.sequence(seconds=EXPORT_SEQUENCE_SECONDS)
    except (transparency.TreeError, transparency.CheckpointError):
        return 0
    if checkpoint is not None:
        return checkpoint.size
    return transparency.LogState.objects.values_list("size", flat=True).first() or 0


@require_GET
@login_required
def audit_checkpoint(request):
    """The log's public key and a signed checkpoint (the newest, or the one of `?size=`),
    as text: with it, an export's proofs are checked without the server."""
    _require_auditor(request.user)
    size = request.GET.get("size", "")
    wanted = int(size) if size.isdigit() else None
    name, private = transparency.log_key()
    checkpoints = [cp for cp in transparency.read_checkpoints() if cp.valid]
    if wanted is not None:
        checkpoints = [cp for cp in checkpoints if cp.size == wanted]
        if not checkpoints:
            raise Http404
    audit.record(request.user, "audit.checkpoint_viewed", detail={"size": wanted})
    key = transparency.verifier_key(name, transparency.public_bytes(private))
    lines = [
        "# The Passage access log's public key (a signed-note verifier key) and a signed",
        "# checkpoint of its Merkle tree. Check an export against it with",
        "# `manage.py verify_export EXPORT.csv THIS_FILE`.",
        f"key {key}",
        "",
    ]
    text = "\n".join(lines) + (checkpoints[-1].text if checkpoints else "")
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    suffix = f"-{checkpoints[-1].size}" if checkpoints else ""
    response["Content-Disposition"] = f'attachment; filename="access-log-checkpoint{suffix}.txt"'
    return response


class _Echo:
    def write(self, value):
        return value


def _csv_lines(events, size: int):
    """Rows a chunk at a time (by seq, newest first), each chunk's proofs read together."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    events = events.select_related("leaf").only(*EVENT_COLUMNS, "ip", "mac", "leaf__position")
    after = None
    while True:
        chunk = list((events.filter(seq__lt=after) if after else events)[:EXPORT_CHUNK])
        if not chunk:
            return
        positions = {e.seq: _position(e) for e in chunk}
        try:
            proofs = transparency.inclusion_proofs(
                [p for p in positions.values() if p is not None], size
            )
        except transparency.TreeError:  # a damaged tree: the rows go out unproven
            proofs = {}
        for event in chunk:
            position = positions[event.seq]
            yield writer.writerow(
                _csv_row(event) + _proof_cells(event, position, size, proofs.get(position))
            )
        after = chunk[-1].seq


def _position(event):
    try:
        return event.leaf.position
    except transparency.LogLeaf.DoesNotExist:
        return None


def _proof_cells(event, position, size, proof) -> list:
    """position, tree_size, leaf (hex), proof (hex hashes, leaf first, ":" between)."""
    if proof is None:  # not in the tree yet, or not in the checkpointed tree
        return ["", "", "", ""]
    return [position, size, audit.leaf(event).hex(), ":".join(h.hex() for h in proof)]


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
