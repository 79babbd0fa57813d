"""The `growth` section of `manage.py benchmark`: Passage's pages against the plain
baseline (tooling/plain.py) at 1,000, 10,000 and 100,000 cases.

1. One seeded site (tooling/seeding.py) grows from size to size: Passage's rows and the
   plain tables hold the same cases, notes, attachments, tasks, family requests.
2. At each size, each page is asked for through the whole stack (Django's test client:
   URL resolution, every middleware, session, login and second factor, the base
   template), Passage's URL and the plain one alike, by the same logged-in caseworker or
   coordinator. One warm-up call each, one counted (statements apart from BEGIN, COMMIT
   and savepoints, and the page's size), then timed calls alternating between the two,
   so a busy machine slows both alike; medians.
3. The contact form posts publish their background job to the broker as in production
   (a queue of the benchmark's own, emptied afterwards); matching is timed as the worker
   runs it, against the plain job over the same cases.
4. The growth table: every page at every size, printed at the end and kept in the JSON.
"""

import contextlib
import itertools
import re
import secrets

from django.conf import settings
from django.test import Client

from . import plain, seeding
from .benchmark import REQUEST, Report, compare, contact_form_data, section, verified_client

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (200, 1_000)
# Which pages each of the old section names measures (`benchmark cases` still works).
GROUPS = {
    "cases": ("search", "case list", "case detail"),
    "families": ("contact form", "matching", "triage"),
    "queues": ("my queue", "board"),
}


@section("growth")
def growth_section(report: Report, *, quick=False, only=None, sizes=None, **_options):
    """See the module's docstring. `only`: page names starting with one of these."""
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    repeat = 5 if quick else 15
    site = seeding.Site.open("bench")
    caseworker, coordinator = verified_client(site.caseworker), verified_client(site.coordinator)
    shown = []
    with real_publish():
        for n in sizes:
            before = site.n
            seconds = site.grow(n)
            report.add(
                "growth",
                f"seed cases {before + 1:,}-{n:,}",
                (n - before) / seconds,
                "cases/s",
                note="Passage's rows (data keys, name index) and the plain tables",
            )
            for label, pair in pages(site, caseworker, coordinator).items():
                if only and not label.startswith(tuple(only)):
                    continue
                ours, theirs = compare(*pair, repeat=repeat)
                report.pair("growth", label, n, ours, theirs)
                shown.append(label)
    report.growth_table([label for label in dict.fromkeys(shown)], sizes)


def group_section(name):
    def run(report, **options):
        growth_section(report, only=GROUPS[name], **options)

    run.__doc__ = f"The growth section's {', '.join(GROUPS[name])} pages only."
    return run


def pages(site, caseworker: Client, coordinator: Client) -> dict:
    """{label: (ours, theirs, check, prepare)} for the site at its current size."""
    featured = site.featured
    named = site.case_values(10)  # team 0, in the caseworker's caseload
    term = " ".join(named["legal_name"].split()[:2])  # first and last name, as staff type
    consenting = site.case_values(51)  # consented to tracing
    out = {}
    for role, client in (("caseworker", caseworker), ("coordinator", coordinator)):
        out[f"search, {role}"] = (
            lambda c=client: search(c, "/cases/search/", term),
            lambda c=client: search(c, "/plain/cases/search/", term),
            # The named case for the caseworker (a caseload of 200: one page of results);
            # for the coordinator, whose team holds ~60 cases of so common a name at
            # 100,000, results (the named case may be on the second page, newest first).
            shows(named["reference"]) if role == "caseworker" else shows_found(),
            None,
        )
        out[f"case list, {role}"] = (
            lambda c=client: c.get("/cases/"),
            lambda c=client: c.get("/plain/cases/"),
            shows(),
            None,
        )
        out[f"case detail, {role}"] = (
            lambda c=client: c.get(f"/cases/{featured}/"),
            lambda c=client: c.get(f"/plain/cases/{featured}/"),
            shows(site.case_values(0)["reference"], ".pdf"),  # an attachment's name
            None,
        )
    out["my queue, caseworker"] = (
        lambda: caseworker.get("/tasks/"),
        lambda: caseworker.get("/plain/tasks/"),
        shows(),
        None,
    )
    out["board, coordinator"] = (
        lambda: coordinator.get("/tasks/board/"),
        lambda: coordinator.get("/plain/tasks/board/"),
        shows(),
        None,
    )
    out["triage, coordinator"] = (
        lambda: coordinator.get("/families/triage/"),
        lambda: coordinator.get("/plain/families/triage/"),
        shows("FR-"),
        None,
    )
    out["contact form POST"] = contact_pair()
    out["matching, a consenting case's name"] = matching_pair(
        [consenting["legal_name"]], consenting["birth_year"], found=consenting["id"]
    )
    out["matching, a name that matches nothing"] = matching_pair(
        ["Zbigniew Quartermaine"], 1980, found=None
    )
    return out


def search(client: Client, url: str, term: str):
    """POST the search, then open the list it redirects to: what the person waits for."""
    answer = client.post(url, {"q": term})
    if answer.status_code != 302:
        return answer
    return client.get(answer["Location"])


def shows(*texts):
    def check(response):
        page = response.content.decode()
        missing = [t for t in texts if t not in page]
        if missing:
            raise RuntimeError(f"{response.wsgi_request.path}: the page lacks {missing}")

    return check


def shows_found():
    """A search's result list: found cases, not an empty list or a "too common" notice."""

    def check(response):
        shows("Clear the search")(response)
        if not re.search(r"\bP-\d{4}-\d{4,}", response.content.decode()):
            raise RuntimeError(f"{response.wsgi_request.path}: the search found no case")

    return check


_addresses = (f"10.{i // 65_536 % 256}.{i // 256 % 256}.{i % 256}" for i in itertools.count(1))


def contact_pair():
    """A valid form POST from a new address each time (the rate limits are per
    address); every post must leave a row, as the answer looks alike either way."""
    from families.models import FamilyRequest

    data = contact_form_data()
    counts = {"ours": 0, "theirs": 0}
    base = {
        "ours": FamilyRequest.objects.count(),
        "theirs": plain.PlainFamilyRequest.objects.count(),
    }

    def post(side, url):
        counts[side] += 1
        return Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR=next(_addresses)).post(url, data)

    def check(response):
        shows("FR-")(response)
        saved = {
            "ours": FamilyRequest.objects.count() - base["ours"],
            "theirs": plain.PlainFamilyRequest.objects.count() - base["theirs"],
        }
        if saved != counts:
            raise RuntimeError(f"contact form: {counts} posts saved {saved} requests")

    return (
        lambda: post("ours", "/contact/"),
        lambda: post("theirs", "/plain/contact/"),
        check,
        None,
    )


def matching_pair(names, born, *, found):
    """Screening and matching of one new request (made untimed, as the form would),
    as the worker runs them, against the plain job."""
    from families import services
    from families.models import MatchCandidate, new_reference

    def ours_new():
        request, _secret = services.request_submit(
            data={**REQUEST, "sought_names": names, "sought_birth_year": born},
            language="en",
            notice_sha256="benchmark",
        )
        return request

    def theirs_new():
        return plain.PlainFamilyRequest.objects.create(
            reference=new_reference(),
            **{**REQUEST, "sought_names": "\n".join(names), "sought_birth_year": born},
        )

    def ours(request):
        services.process(request)
        return set(MatchCandidate.objects.filter(request=request).values_list("case_id", flat=True))

    def theirs(request):
        plain.process(request.pk)
        return set(
            plain.PlainMatchCandidate.objects.filter(request=request).values_list(
                "case_id", flat=True
            )
        )

    def check(candidates):
        if (found is None and candidates) or (found is not None and found not in candidates):
            raise RuntimeError(f"matching {names}: candidates {len(candidates)}, wanted {found}")

    return ours, theirs, check, (ours_new, theirs_new)


@contextlib.contextmanager
def real_publish():
    """Background jobs are published as in production, never run in line: to the
    configured broker, on a queue of the benchmark's own that is emptied and removed
    afterwards (a worker elsewhere never sees it); with no broker configured (or the
    filesystem one of `make run`), to Kombu's in-memory transport."""
    from celery import current_app as app

    saved = {k: app.conf[k] for k in ("task_always_eager", "task_default_queue")}
    queue = f"passage-benchmark-{secrets.token_hex(4)}"
    broker = settings.CELERY_BROKER_URL or ""
    if not broker or broker.startswith("filesystem"):
        app.conf.broker_url = "memory://"
    app.conf.update(task_always_eager=False, task_default_queue=queue)
    try:
        yield
    finally:
        from casework import background

        if background._publisher is not None:
            background._publisher.drain(5.0)
        try:
            with app.connection_for_write() as conn:
                channel = conn.default_channel
                channel.queue_purge(queue)
                channel.queue_delete(queue)
        except Exception as exc:  # noqa: BLE001  the broker went away: nothing to empty
            print(f"benchmark queue {queue} not emptied ({type(exc).__name__})")
        app.conf.update(saved)
