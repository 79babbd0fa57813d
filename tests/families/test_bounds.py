"""No single request can tie up the system (issue 12, item 12): bounded names and tokens
per request, bounded lookups in matching and screening, the long work outside the
transaction that writes the result, and rate-limited follow-ups with the normal answer."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casework.models import AccessEvent
from families import matching, screening, services
from families.models import FamilyMessage, FamilyRequest, MatchCandidate
from tests.families.test_public import URL, form_data
from tests.families.test_staff import consenting_case, submit

pytestmark = pytest.mark.django_db

HOSTILE_NAME = " ".join(f"{a}{b}" for a in "abcdefghijk" for b in "aeiou")[:200]  # 66 tokens


# --- At submission: clear form errors, the same for everyone ---------------------------------
@pytest.mark.parametrize(
    "over, error",
    [
        ({"sought_names": HOSTILE_NAME}, "at most 8 parts"),
        ({"sought_names": "\n".join(["Sara Rahimi"] * 11)}, "at most 10 names"),
        ({"requester_name": "a b c d e f g h i"}, "at most 8 parts"),
    ],
)
def test_too_many_names_or_tokens_are_form_errors_never_a_500(over, error):
    response = Client().post(URL, form_data(**over))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert FamilyRequest.objects.count() == 0


def test_the_bounds_follow_the_settings(settings):
    settings.PASSAGE_FAMILY_MAX_NAME_TOKENS = 3
    settings.PASSAGE_FAMILY_MAX_NAMES = 2
    refused = Client().post(URL, form_data(sought_names="Sara Maryam Zahra Rahimi"))
    assert "at most 3 parts" in refused.content.decode()
    refused = Client().post(URL, form_data(sought_names="A B\nC D\nE F"))
    assert "at most 2 names" in refused.content.decode()
    assert FamilyRequest.objects.count() == 0
    Client().post(URL, form_data(sought_names="Sara Rahimi\nSara Karimi"))
    assert FamilyRequest.objects.count() == 1


# --- In the background: bounded lookups ------------------------------------------------------
def test_a_hostile_request_saved_past_the_form_costs_a_bounded_number_of_queries(personas):
    """The probe from outside: 10 names of 66 two-letter tokens made 9,000+ queries."""
    consenting_case(personas.team, personas.coordinator, name="ab ae")
    hostile, _ = submit([HOSTILE_NAME] * 10, process=False, requester_name=HOSTILE_NAME)
    plain, _ = submit(["Sara Rahimi"], process=False)
    costs = []
    for fr in (hostile, plain):
        with CaptureQueriesContext(connection) as ctx:
            services.process(fr)
        costs.append(len(ctx.captured_queries))
    assert costs[0] <= 60, costs
    assert FamilyRequest.objects.get(pk=hostile.pk).processed_at is not None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_matching_and_screening_run_outside_any_transaction(personas, monkeypatch):
    """The long work holds no lock: only the short write of its result is atomic."""
    consenting_case(personas.team, personas.coordinator)
    seen = []
    for module, name in ((matching, "match"), (screening, "screen")):
        real = getattr(module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, connection.in_atomic_block))
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    fr, _ = submit(process=False)  # no broker in tests: processed after the commit
    services.process(fr)  # and again, as a redelivered task would: nothing more
    assert sorted(seen) == [("match", False), ("screen", False)]
    assert MatchCandidate.objects.filter(request=fr).count() == 1


def test_a_request_processed_meanwhile_by_another_worker_is_written_once(personas, monkeypatch):
    consenting_case(personas.team, personas.coordinator)
    fr, _ = submit(process=False)
    real = matching.match

    def racing(family_request):
        found = real(family_request)
        monkeypatch.setattr(matching, "match", real)
        other = FamilyRequest.objects.select_related("data_key").get(pk=family_request.pk)
        services.process(other)  # the other worker, done while this one was busy
        return found

    monkeypatch.setattr(matching, "match", racing)
    services.process(fr)
    assert MatchCandidate.objects.filter(request=fr).count() == 1
    assert AccessEvent.objects.filter(action="family.request.processed").count() == 1


def test_a_request_withdrawn_while_it_is_processed_gets_no_result(personas, monkeypatch):
    consenting_case(personas.team, personas.coordinator)
    fr, _ = submit(process=False)
    real = matching.match

    def withdrawing(family_request):
        found = real(family_request)
        withdrawn = FamilyRequest.objects.select_related("data_key").get(pk=family_request.pk)
        services.family_withdraw(family_request=withdrawn)
        return found

    monkeypatch.setattr(matching, "match", withdrawing)
    services.process(fr)
    assert not MatchCandidate.objects.filter(request=fr).exists()
    assert FamilyRequest.objects.get(pk=fr.pk).processed_at is None


# --- Follow-ups ------------------------------------------------------------------------------
RECEIVED = "Your message was received. We pass it on only if they agree."


def family_client(fr, secret, address="198.51.100.20"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(reverse("family_status"), {"reference": fr.reference, "secret": secret})
    assert response.status_code == 302
    return client


def follow_up(client, body="x" * 5000):
    response = client.post(reverse("family_follow_up"), {"body": body}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_follow_ups_are_limited_per_request_with_the_normal_answer(settings):
    settings.PASSAGE_FOLLOW_UPS_PER_REQUEST_PER_DAY = 3
    settings.PASSAGE_FOLLOW_UP_RATE_PER_HOUR = 100
    fr, secret = submit(["Sara Rahimi"])
    answers = []
    for i in range(6):  # from changing addresses: the limit is the request's own
        answers.append(follow_up(family_client(fr, secret, f"198.51.100.{i + 1}")))
    assert answers == [[RECEIVED]] * 6
    assert FamilyMessage.objects.filter(request=fr).count() == 3


def test_follow_ups_are_limited_per_client_with_the_normal_answer(settings):
    settings.PASSAGE_FOLLOW_UPS_PER_REQUEST_PER_DAY = 100
    settings.PASSAGE_FOLLOW_UP_RATE_PER_HOUR = 4
    first, first_secret = submit(["Sara Rahimi"])
    second, second_secret = submit(["Sara Karimi"])
    answers = [follow_up(family_client(first, first_secret)) for _ in range(3)]
    answers += [follow_up(family_client(second, second_secret)) for _ in range(3)]
    assert answers == [[RECEIVED]] * 6
    assert FamilyMessage.objects.count() == 4


def test_forty_long_follow_ups_in_a_row_are_not_all_kept():
    """The probe from outside: 40 of 5,000 characters were accepted in 10 s."""
    fr, secret = submit(["Sara Rahimi"])
    client = family_client(fr, secret)
    for _ in range(40):
        assert follow_up(client) == [RECEIVED]
    assert FamilyMessage.objects.filter(request=fr).count() <= 10


def test_a_cache_that_is_down_neither_fails_nor_changes_the_answer(monkeypatch):
    from django.core.cache import cache

    fr, secret = submit(["Sara Rahimi"])
    client = family_client(fr, secret)

    def broken(*args, **kwargs):
        raise ConnectionError("cache refused")

    monkeypatch.setattr(cache, "incr", broken)
    monkeypatch.setattr(cache, "add", broken)
    assert follow_up(client, "Still there?") == [RECEIVED]
    assert [m.body for m in FamilyMessage.objects.filter(request=fr)] == ["Still there?"]
