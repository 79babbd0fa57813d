"""The public rate limits when the shared cache is down or silent: the form answers as
always and at once, and the limits still hold, counted in the process (SECURITY.md
case 39). The cache is Django's Redis backend pointed at a port where nothing listens,
or at a black hole that accepts TCP and never answers."""

import time

import pytest
from django.core import signing
from django.core.cache import caches
from django.test import Client

from families import ratelimit
from families.forms import SIGNER_SALT
from families.models import FamilyRequest
from tests.ops.fakes import BlackHole, free_port


def redis_cache_at(settings, url):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "passage",
            "OPTIONS": {
                "socket_connect_timeout": settings.PASSAGE_REDIS_TIMEOUT,
                "socket_timeout": settings.PASSAGE_REDIS_TIMEOUT,
            },
        },
    }


@pytest.fixture(autouse=True)
def _fresh_counts():
    ratelimit.resume_shared()
    ratelimit.LOCAL.clear()
    yield
    ratelimit.resume_shared()
    ratelimit.LOCAL.clear()


@pytest.fixture
def cache_down(settings):
    redis_cache_at(settings, f"redis://127.0.0.1:{free_port()}/1")


@pytest.fixture
def cache_silent(settings):
    hole = BlackHole()
    redis_cache_at(settings, hole.url(1))
    yield hole
    hole.stop()


def test_with_the_cache_down_the_limit_still_holds(cache_down):
    began = time.monotonic()
    answers = [ratelimit.hit_key("contact:198.51.100.9", 3) for _ in range(6)]
    assert answers == [True, True, True, False, False, False]
    assert time.monotonic() - began < 1


def test_a_silent_cache_costs_one_timeout_then_nothing_and_the_limit_holds(cache_silent, settings):
    began = time.monotonic()
    assert ratelimit.hit_key("contact:198.51.100.9", 3)
    first = time.monotonic() - began
    assert first < settings.PASSAGE_REDIS_TIMEOUT + 0.5, first
    began = time.monotonic()
    answers = [ratelimit.hit_key("contact:198.51.100.9", 3) for _ in range(20)]
    assert time.monotonic() - began < 0.2  # the process leaves the silent cache alone
    assert answers == [True, True] + [False] * 18


def test_the_shared_cache_is_asked_again_after_the_pause(cache_down, settings, monkeypatch):
    settings.PASSAGE_REDIS_PAUSE_SECONDS = 0.2
    ratelimit.hit_key("contact:198.51.100.9", 3)  # fails, counted locally
    asked = []
    real_count = ratelimit._count
    monkeypatch.setattr(
        ratelimit, "_count", lambda store, *a: asked.append(store) or real_count(store, *a)
    )
    ratelimit.hit_key("contact:198.51.100.9", 3)
    assert asked == [ratelimit.LOCAL]
    time.sleep(0.25)
    asked.clear()
    ratelimit.hit_key("contact:198.51.100.9", 3)
    assert asked[0] is caches["default"]


def post_request(client, name):
    return client.post(
        "/contact/",
        {
            "requester_name": "Parent",
            "relationship": "mother",
            "requester_country": "Iran",
            "sought_names": name,
            "message": "Come home when you want.",
            "consent_processing": "on",
            "consent_nothing_shared": "on",
            "consent_retention": "on",
            "website": "",
            "started": signing.dumps(time.time() - 60, salt=SIGNER_SALT),
        },
    )


@pytest.mark.parametrize("fault", ["cache_down", "cache_silent"])
def test_the_public_form_answers_alike_and_limits_with_the_cache_unreachable(
    db, request, fault, settings
):
    request.getfixturevalue(fault)
    client = Client(REMOTE_ADDR="198.51.100.77")
    limit = settings.PASSAGE_CONTACT_RATE_PER_HOUR
    began = time.monotonic()
    responses = [post_request(client, f"Quillon Cachefault {i}") for i in range(limit + 3)]
    assert time.monotonic() - began < settings.PASSAGE_REDIS_TIMEOUT + 2
    for response in responses:
        assert response.status_code == 200
        assert [t.name for t in response.templates][0] == "families/thanks.html"
        assert response.context["reference"] and response.context["secret"]
    assert FamilyRequest.objects.count() == limit  # the rest answered alike and dropped
