"""Matching a family request to cases, in the background.

1. Candidates come from the cases' name index: a whole name the family gave, or two
   tokens of one such name found together in a case's names. A name of one token (a
   given name alone) is never looked up. The names and their tokens are bounded
   (families/limits.py): two queries per name, however long it is.
2. Only cases whose person granted family tracing, and that are not shredded, stay.
3. Each gets a score: name tokens in common (up to 0.6), birth year within two years
   (0.25), the last known place named in the case (0.15). Whereabouts are never read.

`match()` only computes (unsaved candidates): services.process writes them, in a short
transaction of its own.
"""

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from casework import vault
from casework.models import Case
from contacts.models import ConsentEvent, Purpose

from . import limits
from .models import FamilyRequest, MatchCandidate

NAME_WEIGHT, YEAR_WEIGHT, PLACE_WEIGHT = 0.6, 0.25, 0.15
# "A whole name, or two tokens of one name together": never one token alone.
MIN_TOKENS = 2


def candidate_cases(family_request: FamilyRequest):
    """Cases sharing a whole name, or two tokens of one name, with the request. One
    common first name alone never makes a candidate (it would be thousands)."""
    index = Case.blind_indexes[0]
    ids = set()
    for name in limits.bounded_names(family_request.sought_names):
        ids |= vault.candidate_ids(
            index, name, min_tokens=MIN_TOKENS, limit=limits.match_rows_per_name()
        )
    if not ids:
        return []
    consenting = tracing_consented(ids)
    cases = Case.objects.filter(pk__in=consenting, data_key__shredded_at__isnull=True)
    return list(cases.select_related("data_key", "team"))


def _latest_tracing():
    return ConsentEvent.objects.filter(purpose=Purpose.TRACING, subject__isnull=True)


def tracing_allows(decision, expires_on, today=None) -> bool:
    """Whether a latest family-tracing decision lets a family's request reach the case:
    a grant that has not expired (as contacts.consent.consent_state reads it)."""
    today = today or timezone.localdate()
    return decision == ConsentEvent.Decision.GRANTED and (expires_on is None or expires_on >= today)


def tracing_consented(case_ids) -> set:
    """Of these cases, those whose person's latest family-tracing decision is a grant
    that has not expired (one query, however many candidates)."""
    today = timezone.localdate()
    latest = {}
    events = (
        _latest_tracing()
        .filter(case_id__in=case_ids)
        .order_by("case_id", "recorded_at", "id")
        .values_list("case_id", "decision", "expires_on")
    )
    for case_id, decision, expires in events:
        latest[case_id] = (decision, expires)
    return {
        cid
        for cid, (decision, expires) in latest.items()
        if tracing_allows(decision, expires, today)
    }


def with_tracing(candidates):
    """Candidates annotated with their case's latest family-tracing decision, in the
    same query (read with tracing_allows): a consent withdrawn after matching shows."""
    latest = _latest_tracing().filter(case_id=OuterRef("case_id")).order_by("-recorded_at", "-id")
    return candidates.annotate(
        tracing_decision=Subquery(latest.values("decision")[:1]),
        tracing_expires=Subquery(latest.values("expires_on")[:1]),
    )


def score(family_request: FamilyRequest, case: Case) -> tuple[float, list[str]]:
    wanted = {t for n in limits.bounded_names(family_request.sought_names) for t in vault.tokens(n)}
    have = {t for n in [case.legal_name, *(case.other_names or [])] if n for t in vault.tokens(n)}
    reasons, total = [], 0.0
    if wanted and have:
        overlap = len(wanted & have) / len(wanted)
        if overlap:
            total += NAME_WEIGHT * overlap
            reasons.append("names")
    year = case.year_of_birth
    if (
        family_request.sought_birth_year
        and year
        and abs(int(family_request.sought_birth_year) - int(year)) <= 2
    ):
        total += YEAR_WEIGHT
        reasons.append("birth_year")
    place = vault.normalise(family_request.last_place or "")
    known = vault.normalise(" ".join(filter(None, [case.circumstances, case.nationalities])))
    if len(place) >= 3 and f" {place} " in f" {known} ":
        total += PLACE_WEIGHT
        reasons.append("place")
    return round(total, 3), reasons


def match(family_request: FamilyRequest) -> list[MatchCandidate]:
    """The candidates above the threshold, unsaved: reads only, no lock held."""
    found = []
    for case in candidate_cases(family_request):
        value, reasons = score(family_request, case)
        if value >= settings.PASSAGE_MATCH_THRESHOLD:
            found.append(
                MatchCandidate(request=family_request, case=case, score=value, reasons=reasons)
            )
    return found
