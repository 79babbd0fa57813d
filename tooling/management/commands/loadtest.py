"""Load test on loopback: families submitting and staff browsing at once, for a while,
on a seeded site (tooling/load.py).

Seeds the site (10,000 cases and 1,000 tasks by default; --cases for another size; a
second run on the same database adds nothing), starts gunicorn (and, with a broker
configured, a Celery worker) with the current environment, drives it for --seconds,
then sends --burst family submissions at the same moment. Checks: zero errors and every
accepted submission in the database. --baseline drives the plain-Django pages of the
same shape (tooling/plain.py) through the same server instead; --compare drives both, one
after the other, in one server, and prints Passage's share. Only ever aims at
127.0.0.1, and writes staff accounts with a known password: point it at a scratch
database only.
"""

import os

from django.core.management.base import BaseCommand, CommandError

from tooling import load


class Command(BaseCommand):
    help = "Load test on loopback: concurrent families and staff against gunicorn."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=int, default=60)
        parser.add_argument("--families", type=int, default=6, help="concurrent family threads")
        parser.add_argument(
            "--staff", type=int, default=4, help="staff threads (caseworkers and coordinators)"
        )
        parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
        parser.add_argument(
            "--cases", type=int, default=10_000, help="cases to seed (a tenth get a task)"
        )
        parser.add_argument(
            "--burst", type=int, default=200, help="family submissions at once at the end (0: none)"
        )
        parser.add_argument(
            "--baseline",
            action="store_true",
            help="drive the plain-Django pages of the same shape instead of Passage's",
        )
        parser.add_argument(
            "--compare",
            action="store_true",
            help="Passage's pages, then the plain ones, in the same server; print the share",
        )

    def handle(self, *args, seconds, families, staff, workers, cases, burst, baseline, compare,
               **options):  # fmt: skip
        from django.db import connection

        if connection.vendor != "postgresql":
            raise CommandError(
                "The load test needs PostgreSQL (DATABASE_URL): gunicorn's workers write at "
                "once, which SQLite serialises."
            )
        self.stdout.write(f"Seeding {cases:,} cases (skipped if there)...")
        site = load.seed(cases)
        people = load.staff(site, staff)
        connection.close()
        modes = [False, True] if compare else [baseline]
        results = {}
        with load.serve(workers=workers) as base:
            for plain in modes:
                mixed = load.mixed(
                    base, seconds=seconds, families=families, people=people, plain=plain
                )
                at_once = load.burst(base, n=burst, plain=plain) if burst else None
                results[plain] = (mixed, at_once)
        errors, lost = [], 0
        for plain, (mixed, at_once) in results.items():
            self.show(plain, mixed, at_once, seconds, families, staff, workers, site.n, burst)
            errors += mixed.errors + (at_once.errors if at_once else [])
            lost += mixed.missing + (at_once.missing if at_once else 0)
        if compare:
            share = results[False][0].per_second / results[True][0].per_second
            self.stdout.write(f"Passage's throughput: {share:.0%} of the plain stack's.")
        for error in errors[:10]:
            self.stderr.write(f"  error: {error}")
        if errors or lost:
            raise CommandError("load test failed: errors or lost submissions")

    def show(self, plain, mixed, at_once, seconds, families, staff, workers, cases, burst):
        what = "plain-Django pages (--baseline)" if plain else "Passage"
        self.stdout.write(
            f"{what}: {seconds} s, {families} family + {staff} staff threads, gunicorn "
            f"{workers} workers, {os.cpu_count()} cores, {cases:,} cases\n  {mixed.summary()}"
        )
        for kind, ms in mixed.by_kind().items():
            self.stdout.write(f"    {kind:<40}median {ms:.1f} ms")
        if at_once:
            self.stdout.write(
                f"  {burst} family submissions at once: median {at_once.median:.0f} ms, p95 "
                f"{at_once.quantile(0.95):.0f} ms, max {at_once.quantile(1.0):.0f} ms; "
                f"{len(at_once.references) - at_once.missing} of {burst} saved, "
                f"{len(at_once.errors)} errors"
            )
