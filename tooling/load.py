"""Load on loopback: families submitting and staff browsing at once, against gunicorn.

Used by `manage.py loadtest` and by the `load` section of `manage.py benchmark`.

1. The site is seeded first (tooling/seeding.py: 10,000 cases and 1,000 tasks by
   default, with their notes, requests and the plain baseline's copies), so the staff
   pages have something to show; a second run on the same database adds nothing.
2. gunicorn serves tooling.bench_settings (the project plus the plain baseline under
   /plain/), with a Celery worker if a broker is configured. Only ever on 127.0.0.1.
3. Mixed load: family threads open and post the contact form; staff threads, logged in
   with password and second factor, half caseworkers (home, case list, my queue, one of
   their cases) and half coordinators (home, case list, board, triage), go round their
   pages. `plain=True` drives the plain pages instead, through the same server.
4. Then a burst: many families post at the same moment; every submission must be saved.
Every accepted submission is looked for in the database afterwards.
"""

import contextlib
import http.cookiejar
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PASSWORD = "loadtest-password-1"
PREFIX = "load"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """A browser: cookies, CSRF token, one request at a time."""

    def __init__(self, base, timeout=60):
        self.base, self.timeout = base, timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self):
        return next((c.value for c in self.jar if c.name.endswith("csrftoken")), "")

    def get(self, path):
        with self.opener.open(self.base + path, timeout=self.timeout) as r:
            return r.status, r.read().decode()

    def post(self, path, data):
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": self.csrf()}).encode()
        request = urllib.request.Request(
            self.base + path, data=body, headers={"Referer": self.base + path}
        )
        with self.opener.open(request, timeout=self.timeout) as r:
            return r.status, r.read().decode()


# --- The site ---------------------------------------------------------------------------------
def seed(cases: int):
    """The load test's site at `cases` cases (its tasks, notes, requests; the plain
    copies); returns it. Staff log in with PASSWORD."""
    from django.contrib.auth.hashers import make_password

    from . import plain, seeding

    plain.create_tables()
    site = seeding.Site.open(PREFIX, password_hash=make_password(PASSWORD))
    site.grow(cases)
    return site


@dataclass
class Person:
    username: str
    role: str  # caseworker or coordinator
    case: str  # a case of theirs to open


def staff(site, n: int) -> list[Person]:
    """`n` staff members, alternately a caseworker and a coordinator of teams 0, 5, 1, 6..."""
    from . import plain

    teams = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
    out = []
    for k in range(n):
        team = teams[(k // 2) % len(teams)]
        if k % 2 == 0:
            user = site.caseworkers[team][k // 20 % 2]
            case = plain.PlainGrant.objects.filter(user=user).values_list("case_id", flat=True)
            out.append(Person(user.username, "caseworker", str(case.first() or site.featured)))
        else:
            out.append(Person(site.coordinators[team].username, "coordinator", ""))
    return out


def page_name(path: str) -> str:
    """A page's path without the baseline's prefix and the case's id."""
    path = path.removeprefix("/plain")
    return re.sub(r"[0-9a-f-]{36}", "<case>", path)


def pages(person: Person, plain: bool) -> list[str]:
    p = "/plain" if plain else ""
    if person.role == "caseworker":
        return ["/", f"{p}/cases/", f"{p}/tasks/", f"{p}/cases/{person.case}/"]
    return ["/", f"{p}/cases/", f"{p}/tasks/board/", f"{p}/families/triage/"]


# --- The server ---------------------------------------------------------------------------------
def environment(database_url: str | None = None) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tooling.bench_settings",
        "PASSAGE_CONTACT_RATE_PER_HOUR": "1000000",
        "PASSAGE_STATUS_RATE_PER_HOUR": "1000000",
        "PASSAGE_FORM_MIN_SECONDS": "0",
        "AXES_FAILURE_LIMIT": "1000000",
        "DEBUG": os.environ.get("DEBUG", "1"),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


@contextlib.contextmanager
def serve(*, workers: int = 3, database_url: str | None = None):
    """gunicorn (and a Celery worker, with a broker configured) on a free loopback
    port; yields the base URL; stops them on the way out."""
    port = free_port()
    env = environment(database_url)
    gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--timeout", "60", "--log-level", "warning"]  # fmt: skip
    procs = [subprocess.Popen(gunicorn, cwd=ROOT, env=env)]
    if settings.CELERY_BROKER_URL:
        worker = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
                  "--loglevel=WARNING"]  # fmt: skip
        procs.append(
            subprocess.Popen(
                worker, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base, procs[0])
        yield base
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_up(base, proc):
    for _ in range(240):
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/accounts/login/", timeout=2):
                return
        except Exception:  # noqa: BLE001  not up yet
            time.sleep(0.5)
    raise RuntimeError("gunicorn did not come up")


# --- Driving it ----------------------------------------------------------------------------------
@dataclass
class Result:
    seconds: float
    latency: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    references: list = field(default_factory=list)
    staff_pages: int = 0
    missing: int = 0
    kinds: dict = field(default_factory=dict)  # {"submit" or a page: [seconds, ...]}

    @property
    def requests(self) -> int:
        return len(self.latency)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float) -> float:
        """In milliseconds."""
        lat = sorted(self.latency) or [0]
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    @property
    def median(self) -> float:
        return statistics.median(self.latency or [0]) * 1000

    def by_kind(self) -> dict:
        """Median milliseconds of each kind of request (the form, the post, each page)."""
        return {k: round(statistics.median(v) * 1000, 1) for k, v in sorted(self.kinds.items())}

    def summary(self) -> str:
        return (
            f"{self.requests:,} requests in {self.seconds:.0f} s ({self.per_second:.1f}/s), "
            f"{len(self.errors)} errors; {len(self.references):,} submissions, "
            f"{self.missing} missing; {self.staff_pages:,} staff pages; latency ms median "
            f"{self.median:.0f}, p95 {self.quantile(0.95):.0f}, p99 {self.quantile(0.99):.0f}, "
            f"max {self.quantile(1.0):.0f}"
        )


FORM = {
    "relationship": "mother",
    "requester_country": "Norway",
    "message": "Hello, we hope you are well.",
    "consent_processing": "on",
    "consent_nothing_shared": "on",
    "consent_retention": "on",
    "website": "",
}


def contact_path(plain: bool) -> str:
    return "/plain/contact/" if plain else "/contact/"


def open_form(session: Session, plain: bool) -> str:
    _status, html = session.get(contact_path(plain))
    return re.search(r'name="started" value="([^"]+)"', html).group(1)


def submit(session: Session, plain: bool, started: str, i: int) -> str:
    status, html = session.post(
        contact_path(plain),
        {**FORM, "requester_name": f"Load Parent {i}", "sought_names": f"Load Person {i}",
         "started": started},
    )  # fmt: skip
    reference = re.search(r"FR-[0-9A-Z]{4}-[0-9A-Z]{4}", html)
    if status != 200 or reference is None:
        raise RuntimeError(f"status {status}")
    return reference.group()


def login(session: Session, username: str) -> None:
    from casework.models import User
    from tooling.management.commands.totp_code import current_code

    session.get("/accounts/login/")
    session.post("/accounts/login/", {"username": username, "password": PASSWORD})
    status, html = session.post(
        "/accounts/verify/", {"otp_token": current_code(User.objects.get(username=username))}
    )
    if status != 200 or "logout" not in html:  # the home page, logged in
        raise RuntimeError(f"login of {username} failed")


def mixed(base, *, seconds: int, families: int, people: list[Person], plain: bool) -> Result:
    """Families and staff at once for `seconds`; each staff member logs in first (not
    timed) and goes round their pages once before the clock starts."""
    result = Result(seconds=seconds)
    lock = threading.Lock()
    clock = {}
    ready = threading.Barrier(
        families + len(people) + 1,
        action=lambda: clock.update(stop=time.monotonic() + seconds),  # before anyone goes
    )

    def record(kind, started, error=None):
        elapsed = time.monotonic() - started
        with lock:
            result.latency.append(elapsed)
            if error:
                result.errors.append(f"{kind}: {error}")
            else:
                result.kinds.setdefault(kind, []).append(elapsed)

    def family(i):
        warm = Session(base)
        submit(warm, plain, open_form(warm, plain), i)
        ready.wait()
        n = 0
        while time.monotonic() < clock["stop"]:
            s, n = Session(base), n + 1
            t = time.monotonic()
            try:
                started = open_form(s, plain)
                record("form", t)
                t = time.monotonic()
                reference = submit(s, plain, started, i * 100_000 + n)
                with lock:
                    result.references.append(reference)
                record("submit", t)
            except Exception as exc:  # noqa: BLE001  counted
                record("family", t, f"{type(exc).__name__} {exc}")

    def member(person):
        from django.db import connection

        s = Session(base)
        try:
            login(s, person.username)
            for path in pages(person, plain):
                s.get(path)
        except Exception as exc:  # noqa: BLE001  counted, and the thread still starts
            record("login", time.monotonic(), f"{type(exc).__name__} {exc}")
        finally:
            connection.close()  # this thread's, opened for the second-factor code
        ready.wait()
        while time.monotonic() < clock["stop"]:
            for path in pages(person, plain):
                t = time.monotonic()
                try:
                    status, _html = s.get(path)
                    if status != 200:
                        raise RuntimeError(f"{path} {status}")
                    with lock:
                        result.staff_pages += 1
                    record(f"{person.role} {page_name(path)}", t)
                except Exception as exc:  # noqa: BLE001  counted
                    record("page", t, f"{type(exc).__name__} {exc}")

    threads = [threading.Thread(target=family, args=(i,)) for i in range(families)]
    threads += [threading.Thread(target=member, args=(p,)) for p in people]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join()
    result.missing = missing(result.references, plain)
    return result


def burst(base, *, n: int, plain: bool) -> Result:
    """`n` families post the form at the same moment (each opened it first)."""
    result = Result(seconds=0)
    lock = threading.Lock()
    go = threading.Barrier(n + 1)

    def family(i):
        s = Session(base, timeout=120)
        try:
            started = open_form(s, plain)
        except Exception as exc:  # noqa: BLE001  counted
            started = None
            with lock:
                result.errors.append(f"form: {type(exc).__name__} {exc}")
        go.wait()
        if started is None:
            return
        t = time.monotonic()
        try:
            reference = submit(s, plain, started, 900_000 + i)
            with lock:
                result.references.append(reference)
                result.latency.append(time.monotonic() - t)
        except Exception as exc:  # noqa: BLE001  counted
            with lock:
                result.errors.append(f"submit: {type(exc).__name__} {exc}")

    threads = [threading.Thread(target=family, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    go.wait()
    start = time.monotonic()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - start
    result.missing = missing(result.references, plain)
    return result


def missing(references, plain: bool) -> int:
    """How many accepted submissions are not in the database (the answer looks alike
    whether a request was kept or dropped)."""
    from families.models import FamilyRequest

    from . import plain as plain_tables

    model = plain_tables.PlainFamilyRequest if plain else FamilyRequest
    stored = set()
    refs = list(set(references))
    for start in range(0, len(refs), 1000):
        chunk = refs[start : start + 1000]
        stored |= set(model.objects.filter(reference__in=chunk).values_list("reference", flat=True))
    return len(set(refs) - stored)


def database_url() -> str:
    """The URL of the database this process uses (the scratch one, in a benchmark)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("the load test needs a server database (PostgreSQL)")
    auth = urllib.parse.quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + urllib.parse.quote(s["PASSWORD"])
    host = f"{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{s['NAME']}"


# --- The benchmark's section --------------------------------------------------------------------
def load_section(report, *, quick=False, **_options):
    """1. Seed the site (10,000 cases; --quick: 500). 2. One gunicorn (3 workers) and a
    Celery worker on the scratch database. 3. The mixed load (6 families, 4 staff; 60 s,
    --quick 5 s) on Passage's pages, then on the plain pages. 4. 200 families posting at
    once (--quick: 20), Passage then plain. PostgreSQL only: gunicorn's processes need
    the scratch database too."""
    from django.db import connection

    if connection.vendor != "postgresql":
        report.skip(
            "load",
            "mixed load and family submissions at once",
            "gunicorn cannot share the in-memory scratch database: run on PostgreSQL",
        )
        return
    cases, seconds, at_once = (500, 5, 20) if quick else (10_000, 60, 200)
    site = seed(cases)
    people = staff(site, 4)
    connection.close()  # the server's processes take over the database
    with serve(workers=3, database_url=database_url()) as base:
        ours = mixed(base, seconds=seconds, families=6, people=people, plain=False)
        theirs = mixed(base, seconds=seconds, families=6, people=people, plain=True)
        ours_burst = burst(base, n=at_once, plain=False)
        theirs_burst = burst(base, n=at_once, plain=True)
    broker = "with a Celery worker" if settings.CELERY_BROKER_URL else "no broker: jobs in line"
    where = f"{cases:,} cases; gunicorn 3 workers, {broker}; {os.cpu_count()} cores"
    report.add(
        "load",
        f"mixed load, {seconds} s, 6 families + 4 staff",
        ours.per_second,
        "req/s",
        theirs.per_second,
        f"plain stack {theirs.per_second:.1f} req/s; ratio: share of its throughput; {where}",
        errors=len(ours.errors),
        missing=ours.missing,
        p95_ms=ours.quantile(0.95),
        baseline_errors=len(theirs.errors),
        baseline_p95_ms=theirs.quantile(0.95),
        median_ms_by_kind=ours.by_kind(),
        baseline_median_ms_by_kind=theirs.by_kind(),
    )
    report.add(
        "load",
        "mixed load, p95 latency",
        ours.quantile(0.95),
        "ms",
        theirs.quantile(0.95),
        f"Passage: {ours.summary()} | plain: {theirs.summary()}",
    )
    for result, label, against in (
        (ours_burst, "Passage", theirs_burst),
        (theirs_burst, "plain stack", None),
    ):
        saved = len(result.references) - result.missing
        report.add(
            "load",
            f"{at_once} family submissions at once, {label}, p95",
            result.quantile(0.95),
            "ms",
            against.quantile(0.95) if against else None,
            f"median {result.median:.0f} ms, max {result.quantile(1.0):.0f} ms; "
            f"{saved} of {at_once} saved, {len(result.errors)} errors",
            saved=saved,
            errors=len(result.errors),
            median_ms=result.median,
        )
    report.out.write("  median ms by request, Passage vs plain:")
    plain_kinds = theirs.by_kind()
    for kind, ms in ours.by_kind().items():
        report.out.write(f"    {kind:<40}{ms:>8.1f}{plain_kinds.get(kind, 0):>8.1f}")
    for result in (ours, theirs, ours_burst, theirs_burst):
        for error in result.errors[:5]:
            report.out.write(f"  error: {error}")
