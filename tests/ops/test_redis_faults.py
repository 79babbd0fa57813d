"""A cache and broker that are down or silent never fail or hang the public form
(SECURITY.md case 39; issue 13 item 4). The app runs under gunicorn, as in production,
against a Redis of the test's own that is stopped, or a black hole that accepts TCP and
never answers; the requests are saved in PostgreSQL."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from families.models import FamilyRequest
from tests.ops.conftest import database_url, need_real_services, wait_until
from tests.ops.fakes import BlackHole, Gunicorn, RedisServer, thanks

# Seconds: a cache timeout and the enqueue wait for the first request a gunicorn worker
# answers after the fault, the requests queued in front of it, and a busy CI machine.
# (Before: gunicorn's 30 s timeout and a 500.)
ANSWER_WITHIN = 8.0
LIMIT = 5  # PASSAGE_CONTACT_RATE_PER_HOUR in Gunicorn's environment


@pytest.fixture
def services(django_db_serialized_rollback, transactional_db):
    """What the test starts, stopped at the end whatever happened. (Committed data, as
    the processes need; the database is restored for the tests after, as `real` does.)"""
    need_real_services()
    started = []

    def start(thing):
        started.append(thing)
        return thing.start()

    yield start
    for thing in reversed(started):
        thing.stop()


def web(tmp_path, store, **env):
    return Gunicorn(
        tmp_path,
        workers=2,
        DATABASE_URL=database_url(),
        REDIS_URL=store.url(1),
        CELERY_BROKER_URL=store.url(0),
        **env,
    )


def submit_all(server, ips, per_ip, *, name="Quillon Faultline"):
    """Every family fetches the form, then all submit at once (6 at a time)."""
    families = [server.family(ip) for ip in ips]
    jobs = [(f, f"{name} {i}") for f in families for i in range(per_ip)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(lambda job: job[0].submit(job[1]), jobs))


def test_redis_stopped_under_load_every_family_gets_its_answer_and_the_limit_holds(
    services, tmp_path
):
    store = services(RedisServer(tmp_path))
    server = services(web(tmp_path, store))
    status, page, _took = server.family("198.51.100.1").submit("Before Thefault")
    assert status == 200 and thanks(page)
    store.stop()  # Redis is gone: the cache and the broker with it

    per_ip = 3 * LIMIT  # two gunicorn workers count on their own while Redis is down
    ips = ["198.51.100.2", "198.51.100.3"]
    results = submit_all(server, ips, per_ip)

    assert [status for status, _page, _took in results] == [200] * len(results)
    shown = [thanks(page) for _status, page, _took in results]
    assert all(shown), "every family sees a reference and a secret"
    slowest = max(took for _status, _page, took in results)
    assert slowest < ANSWER_WITHIN, slowest
    saved = set(FamilyRequest.objects.values_list("reference", flat=True))
    kept = [ref for ref, _secret in shown if ref in saved]
    # Limited per process while the shared count is unreachable, never unlimited: each
    # address gets at most LIMIT per gunicorn worker, and each one saved was answered.
    assert LIMIT <= len(kept) <= 2 * LIMIT * len(ips), len(kept)
    assert FamilyRequest.objects.count() == len(kept) + 1
    assert "WORKER TIMEOUT" not in server.log() and '"level": "ERROR"' not in server.log()


def test_a_black_holed_redis_never_hangs_the_form_a_staff_page_or_health(services, tmp_path):
    hole = services(BlackHole())
    server = services(web(tmp_path, hole))
    families = [server.family(f"198.51.100.{10 + i}") for i in range(6)]

    def staff_page():
        began = time.monotonic()
        status, _page, _headers = server.get("/accounts/login/")
        return status, time.monotonic() - began

    with ThreadPoolExecutor(max_workers=7) as pool:
        submissions = [
            pool.submit(f.submit, f"Quillon Blackhole {i}") for i, f in enumerate(families)
        ]
        time.sleep(0.2)  # the staff page arrives while the families are being answered
        staff = pool.submit(staff_page)
        results = [s.result() for s in submissions]
        staff_status, staff_took = staff.result()

    assert [status for status, _page, _took in results] == [200] * len(families)
    assert all(thanks(page) for _status, page, _took in results)
    slowest = max(took for _status, _page, took in results)
    assert slowest < ANSWER_WITHIN, slowest
    assert FamilyRequest.objects.count() == len(families)  # all within the limit: all saved
    assert staff_status == 200 and staff_took < ANSWER_WITHIN, staff_took
    # The health check says "fail" within a bound instead of hanging with the rest.
    began = time.monotonic()
    status, body, _headers = server.get("/healthz", timeout=40)
    took = time.monotonic() - began
    assert (status, body) == (503, "fail") and took < 10, (status, body, took)


def test_after_an_outage_the_sweeper_screens_what_was_saved_meanwhile(real, services, tmp_path):
    """The requests saved while Redis was down are screened once it is back."""
    store = services(RedisServer(tmp_path))
    server = services(web(tmp_path, store))
    store.stop()
    status, page, _took = server.family("198.51.100.40").submit("Quillon Aftermath")
    assert status == 200 and thanks(page)
    request = FamilyRequest.objects.get()
    assert request.processed_at is None
    store.restart()
    assert redis.Redis.from_url(store.url(0)).llen("celery") == 0  # nothing was queued
    from tests.ops.conftest import use_broker

    use_broker(store.url(0))
    worker = real(CELERY_BROKER_URL=store.url(0), REDIS_URL=store.url(1))
    import datetime

    from django.utils import timezone

    from casework.background import send
    from casework.tasks import sweep

    FamilyRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - datetime.timedelta(hours=1)
    )
    assert send(sweep)  # as beat does every few minutes
    wait_until(
        lambda: FamilyRequest.objects.filter(pk=request.pk, processed_at__isnull=False).exists(),
        what="screening after the outage",
        worker=worker,
    )
