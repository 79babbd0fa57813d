"""Matching writes its candidates once (issue 14, items 3 and 6): one INSERT for all of
them (the query pins: tests/test_query_counts.py), and a run repeated by hand adds no
second copy of a candidate. What the family sees does not depend on any of it
(tests/families/test_status_schedule.py)."""

import pytest

from casework.models import AccessEvent
from families import services
from families.models import FamilyRequest, MatchCandidate
from tests.families.test_staff import consenting_case, submit

pytestmark = pytest.mark.django_db


def test_a_repeated_run_adds_no_second_copy_of_a_candidate(personas):
    case = consenting_case(personas.team, personas.coordinator)
    fr, _secret = submit()
    assert list(MatchCandidate.objects.filter(request=fr).values_list("case", flat=True)) == [
        case.pk
    ]
    # Someone marks it unprocessed to run it again (the normal path never repeats: the
    # conditional update lets one run write).
    FamilyRequest.objects.filter(pk=fr.pk).update(processed_at=None)
    fr.refresh_from_db()
    services.process(fr)
    assert MatchCandidate.objects.filter(request=fr).count() == 1
    assert AccessEvent.objects.filter(action="family.request.processed").count() == 2


def test_every_candidate_is_written_with_its_score_and_reasons(personas):
    cases = [consenting_case(personas.team, personas.coordinator) for _ in range(3)]
    fr, _secret = submit()
    written = {c.case_id: (c.score, c.reasons) for c in MatchCandidate.objects.filter(request=fr)}
    assert set(written) == {c.pk for c in cases}
    assert all(score >= 0.5 and "names" in reasons for score, reasons in written.values())
