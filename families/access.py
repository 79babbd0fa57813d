"""Who may do what with which family request: the one home of these rules.

Stated once as query conditions (`request_rules(user)`: {right: Q} on FamilyRequest),
used as the filter of every list and annotated onto one request, so that
`get_request_for_user(request, pk)` returns the family request *with its rights*
(`fr.rights`) in one query. The case rules come from casework.access.

- Nobody who does not work on cases (administrators, auditors, the superuser flag) sees
  a request; shredded requests show to nobody.
- A request that matched no case and is still in triage: the coordinators of the teams
  designated for family triage (Team.family_triage).
- A request with a candidate case: the coordinators of that case's team who can see it
  (for a sealed case, only those named on it).
- A request handed to a case: that case's caseworkers (the right to work on it) and the
  coordinators of its team who can see it. A read-only grant on the case does not open
  the family's request (their name, phone and e-mail).
"""

from dataclasses import dataclass, fields

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q
from django.http import Http404

from casework import access
from casework.models import Case

from .models import FamilyRequest, MatchCandidate

OPEN_STAGES = [FamilyRequest.Stage.NEW, FamilyRequest.Stage.TRIAGE]
ANSWER_STAGES = [FamilyRequest.Stage.HANDED, FamilyRequest.Stage.RELAY]
NOTHING = access.NOTHING


@dataclass(frozen=True)
class RequestRights:
    view: bool = False
    triage: bool = False  # close it, or hand it to a candidate case (while in triage)
    screening: bool = False  # see the screening flags (triage-side coordinators)
    answer: bool = False  # record the person's answer (the handed case's caseworkers)
    approve: bool = False  # second-person approval of a disclosure
    release: bool = False  # release an approved disclosure after the cooling-off
    case_visible: bool = False  # the handed case opens for this user

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _coordinated_cases(user):
    """Cases whose team the user coordinates and which the user can see."""
    return Case.objects.filter(access.case_rules(user)["coordinates"]).values("pk")


def request_rules(user) -> dict[str, Q]:
    if not access.works_on_cases(user):
        return {name: NOTHING for name in RequestRights.names()}
    case = access.case_rules(user, "case__")
    unmatched = Q(stage__in=OPEN_STAGES) & ~Exists(
        MatchCandidate.objects.filter(request=OuterRef("pk"))
    )
    triage_team = NOTHING
    candidate_mine = NOTHING
    handed_coordinator = NOTHING
    if access.coordinates_teams(user):
        # A condition of the query, not a query of its own.
        triage_team = unmatched & Exists(access.led_teams(user).filter(family_triage=True))
        mine = _coordinated_cases(user)
        candidate_mine = Exists(
            MatchCandidate.objects.filter(request=OuterRef("pk"), case__in=mine)
        )
        handed_coordinator = Q(case__in=mine)
    live = Q(data_key__shredded_at__isnull=True)
    view = live & (triage_team | candidate_mine | handed_coordinator | case["work"])
    return {
        "view": view,
        "triage": view & (triage_team | candidate_mine),
        "screening": view & (triage_team | candidate_mine | handed_coordinator),
        "answer": view & case["work"],
        "approve": view & handed_coordinator,
        "release": view & (case["work"] | handed_coordinator),
        "case_visible": view & case["view"],
    }


def requests_for_user(user):
    """The one list of family requests a user may open."""
    return FamilyRequest.objects.filter(request_rules(user)["view"])


def with_rights(queryset, user):
    """Requests annotated with the user's rights; see attach_rights."""
    return access.annotate_rules(queryset, request_rules(user))


def attach_rights(requests, user) -> list:
    requests = list(requests)
    for fr in requests:
        fr.rights = RequestRights(
            **{name: bool(getattr(fr, f"_right_{name}")) for name in RequestRights.names()}
        )
        fr._rights_user = user.pk
    return requests


def get_request_for_user(request, request_pk) -> FamilyRequest:
    """The family request with `fr.rights`, or 404 for no such request and no access."""
    rules = request_rules(request.user)
    try:
        fr = (
            access.annotate_rules(FamilyRequest.objects.filter(rules["view"]), rules)
            .select_related("data_key", "case__data_key", "case__team")
            .get(pk=request_pk)
        )
    except (FamilyRequest.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None
    return attach_rights([fr], request.user)[0]


def rights_of(user, fr) -> RequestRights:
    """The rights loaded with the request, or one query (a service called directly)."""
    if user.pk is not None and getattr(fr, "_rights_user", None) == user.pk:
        return fr.rights
    row = with_rights(FamilyRequest.objects.filter(pk=fr.pk), user).first()
    return attach_rights([row], user)[0].rights if row is not None else RequestRights()
