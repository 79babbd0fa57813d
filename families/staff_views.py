"""The staff side of family contact requests: triage, the request page, the person's
answer and the second-person approval of disclosures.

Every request-scoped view starts with get_request_for_user(): no such request and no
access are the same 404. Whereabouts are never read here.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters

from casework import access, audit, lists
from casework.models import User
from casework.responses import post_only, report_errors
from casework.versions import ALREADY_DONE, AlreadyDone, OnceForm
from contacts.consent import ConsentRequired
from contacts.forms import witnesses_for
from contacts.models import ConsentEvent, NoticeText, Purpose

from . import selectors, services
from .access import ANSWER_STAGES, OPEN_STAGES, get_request_for_user, requests_for_user
from .models import Disclosure, FamilyRequest, MatchCandidate, ScreeningFlag


class AnswerForm(OnceForm):
    answer = forms.ChoiceField(
        label=gettext_lazy("Their answer"),
        widget=forms.RadioSelect,
        choices=[
            ("decline", gettext_lazy("Declines any contact")),
            ("relay", gettext_lazy("Agrees to messages relayed through us")),
            ("share_contact", gettext_lazy("Agrees to share contact details")),
            ("meet", gettext_lazy("Agrees to meet")),
        ],
    )
    # Signed paper needs a scan, which this step does not take: record it on the
    # case's consent page instead.
    method = forms.ChoiceField(
        label=gettext_lazy("How"),
        choices=[
            c for c in ConsentEvent.Method.choices if c[0] != ConsentEvent.Method.SIGNED_PAPER
        ],
    )
    witness = forms.ModelChoiceField(
        label=gettext_lazy("Witness (for a verbal answer)"),
        required=False,
        queryset=User.objects.none(),
    )
    details = forms.CharField(
        label=gettext_lazy("What exactly will be shared, or the meeting arrangements"),
        help_text=gettext_lazy(
            "Only for sharing contact details or meeting. The family sees this text after "
            "a coordinator's approval and the cooling-off period. Never write where the "
            "person lives."
        ),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args, witnesses=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["witness"].queryset = (
            witnesses if witnesses is not None else User.objects.none()
        )

    def clean(self):
        data = super().clean()
        if data.get("answer") in ("share_contact", "meet") and not data.get("details", "").strip():
            self.add_error(
                "details", _("Write what exactly will be shared, or how the meeting is arranged.")
            )
        return data


# Triage's order (oldest first), unique and not null: the keys of its pages and the
# columns of its partial index (families/migrations/0006_list_indexes.py).
TRIAGE_ORDER = [lists.Key("created_at"), lists.Key("reference")]


@login_required
def triage(request):
    """Requests waiting for a coordinator, oldest first, 50 a page by key: no OFFSET and
    no count (the rules join each request to its case; counting them all would read every
    case). No query per row."""
    if not access.coordinates_teams(request.user):
        raise PermissionDenied
    waiting = requests_for_user(request.user).filter(stage__in=OPEN_STAGES)
    page = lists.keyset_page(
        waiting.select_related("data_key")
        .only("reference", "stage", "created_at", "data_key", "sought_names")
        .prefetch_related(
            Prefetch(
                "flags", queryset=ScreeningFlag.objects.only("request", "kind").order_by("kind")
            ),
            Prefetch(
                "candidates",
                queryset=MatchCandidate.objects.only("request", "score").order_by("-score"),
            ),
        ),
        TRIAGE_ORDER,
        settings.PASSAGE_CASES_PER_PAGE,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    rows = page.rows
    for fr in rows:
        fr.flag_kinds = sorted(
            {f.kind for f in fr.flags.all()},
            key=lambda k: k != ScreeningFlag.Kind.REQUESTER_ON_DND,
        )
        fr.best_score = max((c.score for c in fr.candidates.all()), default=None)
    if rows:
        audit.record(
            request.user,
            "family.request.listed",
            detail={"requests": [str(fr.pk) for fr in rows]},
        )
    return render(
        request,
        "families/staff/triage.html",
        {
            "page": page,
            "rows": rows,
            "query_string": lists.query_without_position(request),
        },
    )


@login_required
def request_detail(request, request_pk):
    fr = get_request_for_user(request, request_pk)
    if request.method not in ("GET", "HEAD"):  # after the access check: outsiders see 404
        return HttpResponseNotAllowed(["GET"])
    user = request.user
    rights = fr.rights
    followups = list(fr.followups.all())
    for f in followups:
        f.request = fr
    flags = []
    if rights.screening:
        flags = list(fr.flags.select_related("case__team", "other_request"))
    can_answer = rights.answer and fr.stage in ANSWER_STAGES
    audit.record(user, "family.request.viewed", obj=fr)
    context = {
        "fr": fr,
        "flags": flags,
        "followups": followups,
        "candidates": selectors.candidates_for(user, fr) if rights.triage else [],
        "case_visible": rights.case_visible,
        "can_triage": rights.triage and fr.stage == FamilyRequest.Stage.TRIAGE,
        "can_answer": can_answer,
        "disclosures": selectors.disclosures_for(user, fr),
        "cooling_off_hours": settings.PASSAGE_COOLING_OFF_HOURS,
    }
    if can_answer:
        context["answer_form"] = AnswerForm(witnesses=witnesses_for(fr.case, user))
        context["notices"] = [
            (value, label, NoticeText.current(value, fr.language))
            for value, label in Purpose.choices
            if value in set(services.ANSWER_PURPOSES.values())
        ]
    return render(request, "families/staff/request.html", context)


@login_required
def close(request, request_pk):
    fr = get_request_for_user(request, request_pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not fr.rights.triage:
        raise PermissionDenied
    outcomes = [FamilyRequest.Outcome.NO_MATCH]
    if fr.flags.exists():
        outcomes.append(FamilyRequest.Outcome.SCREENED_OUT)
    outcome = request.POST.get("outcome", FamilyRequest.Outcome.NO_MATCH)
    if fr.stage != FamilyRequest.Stage.TRIAGE:
        messages.error(request, _("This request is not waiting for triage."))
    elif outcome not in outcomes:
        messages.error(request, _("Choose one of the outcomes offered."))
    else:
        try:
            services.triage_close(actor=request.user, family_request=fr, outcome=outcome)
        except ValidationError as exc:  # handed over or closed meanwhile
            report_errors(request, exc)
        else:
            messages.success(request, _("Request %(ref)s closed.") % {"ref": fr.reference})
            return redirect("family_triage")
    return redirect("family_request", request_pk=fr.pk)


@login_required
def hand_over(request, request_pk):
    fr = get_request_for_user(request, request_pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not fr.rights.triage:
        raise PermissionDenied
    try:
        candidate = fr.candidates.select_related("case__team").filter(
            case_id=request.POST.get("case")
        )
        candidate = candidate.first()
    except (ValidationError, ValueError):
        candidate = None
    if fr.stage != FamilyRequest.Stage.TRIAGE:
        messages.error(request, _("This request is not waiting for triage."))
    elif candidate is None or not access.rights_of(request.user, candidate.case).coordinates:
        messages.error(request, _("Choose one of the candidate cases you can see."))
    else:
        try:
            services.triage_hand_over(actor=request.user, family_request=fr, case=candidate.case)
        except (ValidationError, ConsentRequired) as exc:
            report_errors(request, exc)
        else:
            messages.success(
                request,
                _("Request %(ref)s handed to the case's caseworker.") % {"ref": fr.reference},
            )
            return redirect("family_triage")
    return redirect("family_request", request_pk=fr.pk)


@sensitive_post_parameters("details")
@login_required
def answer(request, request_pk):
    fr = get_request_for_user(request, request_pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not fr.rights.answer:
        raise PermissionDenied
    form = AnswerForm(request.POST, witnesses=witnesses_for(fr.case, request.user))
    if not form.is_valid():
        report_errors(request, form)
    else:
        data = form.cleaned_data
        purpose = services.ANSWER_PURPOSES[data["answer"]]
        try:
            services.record_answer(
                actor=request.user,
                family_request=fr,
                answer=data["answer"],
                method=data["method"],
                witness=data["witness"],
                details=data["details"] if data["answer"] in ("share_contact", "meet") else "",
                notice_shown=request.POST.get(f"notice_{purpose}", ""),
                once=data["once"],
            )
        except AlreadyDone:
            messages.info(request, ALREADY_DONE)
        except (ValidationError, ConsentRequired) as exc:
            report_errors(request, exc)
        else:
            messages.success(request, _("Their answer is recorded in the consent ledger."))
    return redirect("family_request", request_pk=fr.pk)


def _get_disclosure(request, disclosure_pk):
    """A disclosure, through its request: the same 404 for no such one and no access."""
    try:
        request_id = (
            Disclosure.objects.filter(pk=disclosure_pk).values_list("request_id", flat=True).first()
        )
    except (ValidationError, ValueError):
        request_id = None
    if request_id is None:
        raise Http404
    fr = get_request_for_user(request, request_id)
    disclosure = Disclosure.objects.get(pk=disclosure_pk)
    disclosure.request = fr
    return fr, disclosure


@login_required
def disclosure_approve(request, disclosure_pk):
    fr, disclosure = _get_disclosure(request, disclosure_pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not fr.rights.approve:
        raise PermissionDenied
    try:
        services.disclosure_approve(actor=request.user, disclosure=disclosure)
    except (ValidationError, ConsentRequired) as exc:
        report_errors(request, exc)
    else:
        messages.success(
            request,
            _("Approved. It is released after the cooling-off period of %(hours)s hours.")
            % {"hours": settings.PASSAGE_COOLING_OFF_HOURS},
        )
    return redirect("family_request", request_pk=fr.pk)


@login_required
def disclosure_release(request, disclosure_pk):
    fr, disclosure = _get_disclosure(request, disclosure_pk)
    if (refused := post_only(request)) is not None:
        return refused
    if not fr.rights.release:
        raise PermissionDenied
    if services.disclosure_release(disclosure=disclosure, actor=request.user):
        messages.success(request, _("Released: the family can read it on their status page."))
    elif disclosure.cancelled_at:
        messages.warning(request, _("Cancelled: the person's consent no longer holds."))
    else:
        messages.error(request, _("Not released: it needs an approval and the cooling-off time."))
    return redirect("family_request", request_pk=fr.pk)
