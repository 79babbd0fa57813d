"""Matching a family request to cases, in the background.

1. Candidates come from the cases' name index (a whole name, or any two tokens of a
   name the family gave, found together in a case's names).
2. Only cases whose person granted family tracing, and that are not shredded, stay.
3. Each gets a score: name tokens in common (up to 0.6), birth year within two years
   (0.25), the last known place named in the case (0.15). Whereabouts are never read.
"""

from django.conf import settings
from django.utils import timezone

from casework import vault
from casework.models import Case
from contacts.models import ConsentEvent, Purpose

from .models import FamilyRequest, MatchCandidate

NAME_WEIGHT, YEAR_WEIGHT, PLACE_WEIGHT = 0.6, 0.25, 0.15


def candidate_cases(family_request: FamilyRequest):
    """Cases sharing a whole name, or two tokens of one name, with the request. One
    common first name alone never makes a candidate (it would be thousands)."""
    index = Case.blind_indexes[0]
    ids = set()
    for name in family_request.sought_names or []:
        ids |= vault.candidate_ids(index, name)
        parts = list(dict.fromkeys(vault.tokens(name)))
        for i, first in enumerate(parts):
            for second in parts[i + 1 :]:
                ids |= vault.candidate_ids(index, f"{first} {second}")
    consenting = tracing_consented(ids)
    cases = Case.objects.filter(pk__in=consenting, data_key__shredded_at__isnull=True)
    return list(cases.select_related("data_key", "team"))


def tracing_consented(case_ids) -> set:
    """Of these cases, those whose person's latest family-tracing decision is a grant
    that has not expired (one query, however many candidates)."""
    today = timezone.localdate()
    latest = {}
    events = (
        ConsentEvent.objects.filter(
            case_id__in=case_ids, purpose=Purpose.TRACING, subject__isnull=True
        )
        .order_by("case_id", "recorded_at", "id")
        .values_list("case_id", "decision", "expires_on")
    )
    for case_id, decision, expires in events:
        latest[case_id] = (decision, expires)
    return {
        cid
        for cid, (decision, expires) in latest.items()
        if decision == ConsentEvent.Decision.GRANTED and (expires is None or expires >= today)
    }


def score(family_request: FamilyRequest, case: Case) -> tuple[float, list[str]]:
    wanted = {t for n in family_request.sought_names or [] for t in vault.tokens(n)}
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
    found = []
    for case in candidate_cases(family_request):
        value, reasons = score(family_request, case)
        if value >= settings.PASSAGE_MATCH_THRESHOLD:
            candidate, _ = MatchCandidate.objects.update_or_create(
                request=family_request, case=case, defaults={"score": value, "reasons": reasons}
            )
            found.append(candidate)
    return found
