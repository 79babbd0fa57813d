"""Load test on loopback: families submitting and staff browsing at once, for a while.

Starts gunicorn (and, with a broker configured, a Celery worker) on this machine with
the current environment, drives it with threads for --seconds, then checks: zero errors
and every accepted submission present in the database. Prints the numbers for the README.
Only ever aims at 127.0.0.1.
"""

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
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self):
        return next((c.value for c in self.jar if c.name.endswith("csrftoken")), "")

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as r:
            return r.status, r.read().decode()

    def post(self, path, data):
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": self.csrf()}).encode()
        request = urllib.request.Request(
            self.base + path, data=body, headers={"Referer": self.base + path}
        )
        with self.opener.open(request, timeout=30) as r:
            return r.status, r.read().decode()


class Command(BaseCommand):
    help = "Load test on loopback: concurrent families and staff against gunicorn."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=int, default=60)
        parser.add_argument("--families", type=int, default=6, help="concurrent family threads")
        parser.add_argument("--staff", type=int, default=4, help="concurrent staff threads")
        parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")

    def handle(self, *args, seconds, families, staff, workers, **options):
        from django.db import connection

        if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
            raise CommandError("Use a database file or PostgreSQL (DATABASE_URL).")
        users = self.prepare_staff(staff)
        port = free_port()
        env = {
            **os.environ,
            "PASSAGE_CONTACT_RATE_PER_HOUR": "1000000",
            "PASSAGE_STATUS_RATE_PER_HOUR": "1000000",
            "PASSAGE_FORM_MIN_SECONDS": "0",
            "AXES_FAILURE_LIMIT": "1000000",
            "DEBUG": os.environ.get("DEBUG", "1"),
        }
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(workers),
                    "--timeout",
                    "60",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
            )
        ]
        if settings.CELERY_BROKER_URL:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "--pool=solo",
                        "--loglevel=WARNING",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        try:
            base = f"http://127.0.0.1:{port}"
            self.wait_up(base)
            result = self.drive(base, seconds, families, users)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.report(result, seconds, families, staff, workers)

    def prepare_staff(self, n):
        from casework.models import Role, Team, User, VaultTOTPDevice

        team, _ = Team.objects.get_or_create(name="Load test team")
        users = []
        for i in range(n):
            user, created = User.objects.get_or_create(username=f"loadtest{i}")
            user.set_password("loadtest-password-1")
            user.save()
            user.groups.add(Role.group(Role.COORDINATOR))
            team.coordinators.add(user)
            VaultTOTPDevice.objects.get_or_create(
                user=user, confirmed=True, defaults={"name": "load"}
            )
            users.append(user)
        return users

    def wait_up(self, base):
        for _ in range(120):
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    return
            except Exception:
                time.sleep(0.5)
        raise CommandError("gunicorn did not come up")

    def drive(self, base, seconds, n_families, users):
        stop = time.monotonic() + seconds
        lock = threading.Lock()
        out = {"latency": [], "errors": [], "references": [], "staff_pages": 0}

        def record(kind, started, error=None):
            with lock:
                out["latency"].append(time.monotonic() - started)
                if error:
                    out["errors"].append(f"{kind}: {error}")

        def family(i):
            while time.monotonic() < stop:
                s = Session(base)
                t = time.monotonic()
                try:
                    _status, html = s.get("/contact/")
                    started = re.search(r'name="started" value="([^"]+)"', html).group(1)
                    record("form", t)
                    t = time.monotonic()
                    status, html = s.post(
                        "/contact/",
                        {
                            "requester_name": f"Load Parent {i}",
                            "relationship": "mother",
                            "requester_country": "Norway",
                            "sought_names": f"Load Person {i}",
                            "message": "Hello",
                            "consent_processing": "on",
                            "consent_nothing_shared": "on",
                            "consent_retention": "on",
                            "website": "",
                            "started": started,
                        },
                    )
                    reference = re.search(r"FR-[0-9A-Z]{4}-[0-9A-Z]{4}", html)
                    if status != 200 or reference is None:
                        raise RuntimeError(f"status {status}")
                    with lock:
                        out["references"].append(reference.group())
                    record("submit", t)
                except Exception as exc:
                    record("family", t, f"{type(exc).__name__} {exc}")

        def staff(user):
            from tooling.management.commands.totp_code import current_code

            s = Session(base)
            t = time.monotonic()
            try:
                s.get("/accounts/login/")
                s.post(
                    "/accounts/login/",
                    {"username": user.username, "password": "loadtest-password-1"},
                )
                s.post("/accounts/verify/", {"otp_token": current_code(user)})
                record("login", t)
            except Exception as exc:
                record("login", t, f"{type(exc).__name__} {exc}")
                return
            while time.monotonic() < stop:
                for path in ("/", "/cases/", "/tasks/board/", "/families/triage/"):
                    t = time.monotonic()
                    try:
                        status, _html = s.get(path)
                        if status != 200:
                            raise RuntimeError(f"{path} {status}")
                        with lock:
                            out["staff_pages"] += 1
                        record("page", t)
                    except Exception as exc:
                        record("page", t, f"{type(exc).__name__} {exc}")

        threads = [threading.Thread(target=family, args=(i,)) for i in range(n_families)]
        threads += [threading.Thread(target=staff, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def report(self, out, seconds, families, staff, workers):
        from families.models import FamilyRequest

        refs = out["references"]
        stored = set(
            FamilyRequest.objects.filter(reference__in=refs).values_list("reference", flat=True)
        )
        missing = len(set(refs) - stored)
        lat = sorted(out["latency"]) or [0]
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        self.stdout.write(
            f"{seconds}s, {families} family + {staff} staff threads, gunicorn {workers} workers, "
            f"{os.cpu_count()} cores\n"
            f"  requests: {len(lat)} ({len(lat) / seconds:.1f}/s), errors: {len(out['errors'])}\n"
            f"  submissions accepted: {len(refs)}, missing from the database: {missing}\n"
            f"  staff pages: {out['staff_pages']}\n"
            f"  latency ms: median {statistics.median(lat) * 1000:.0f}, p95 {p(0.95):.0f}, "
            f"p99 {p(0.99):.0f}, max {lat[-1] * 1000:.0f}"
        )
        for error in out["errors"][:10]:
            self.stderr.write(f"  error: {error}")
        if out["errors"] or missing:
            raise CommandError("load test failed: errors or lost submissions")
