"""Matching follows its own rule: a whole name, or two tokens of one name together. A
single given name never makes a candidate (issue 12, item 6)."""

import pytest

from casework import vault
from casework.models import Case
from families import matching
from families.models import MatchCandidate
from tests.families.test_staff import consenting_case, submit

pytestmark = pytest.mark.django_db


def candidates(names) -> set:
    fr, _secret = submit(names)
    return set(MatchCandidate.objects.filter(request=fr).values_list("case_id", flat=True))


def test_a_single_given_name_makes_no_candidate(personas):
    maryam = consenting_case(personas.team, personas.coordinator, name="Maryam Hosseini")
    alias = consenting_case(
        personas.team, personas.coordinator, name="Zahra Ahmadi", other_names=["Maryam"]
    )
    assert candidates(["Maryam"]) == set()
    assert candidates(["  MARYAM  "]) == set()
    assert candidates(["مریم"]) == set()
    # A whole name, or two of its tokens together, still find her.
    assert candidates(["Maryam Hosseini"]) == {maryam.pk}
    assert candidates(["Maryam Zahra Hosseini"]) == {maryam.pk, alias.pk}
    assert candidates(["Hosseini Maryam Sadat"]) == {maryam.pk}


def test_the_vault_lookup_takes_a_least_number_of_tokens(personas):
    maryam = consenting_case(personas.team, personas.coordinator, name="Maryam Hosseini Sadat")
    index = Case.blind_indexes[0]
    assert vault.candidate_ids(index, "maryam", min_tokens=2) == set()
    assert vault.candidate_ids(index, "maryam hosseini", min_tokens=2) == {maryam.pk}
    assert vault.candidate_ids(index, "sadat maryam rezaei", min_tokens=2) == {maryam.pk}
    assert vault.candidate_ids(index, "maryam rezaei karimi", min_tokens=2) == set()
    # Without it, every token of the term must be there (the staff search's rule).
    assert vault.candidate_ids(index, "maryam") == {maryam.pk}
    assert vault.candidate_ids(index, "maryam rezaei") == set()
    assert vault.candidate_ids(index, "Maryam Hosseini Sadat") == {maryam.pk}


def test_candidate_cases_follow_the_rule_too(personas):
    consenting_case(personas.team, personas.coordinator, name="Maryam Hosseini")
    fr, _secret = submit(["Maryam"], process=False)
    assert matching.candidate_cases(fr) == []
