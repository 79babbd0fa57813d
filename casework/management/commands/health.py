"""What /healthz checks, with each result and its time: for staff, not for the public."""

import time

from django.core.management.base import BaseCommand, CommandError

from casework import health


class Command(BaseCommand):
    help = "Run the health checks of /healthz and show each result (exit status 1 if any fails)."
    requires_system_checks = []  # it reports a bad keyring, rather than stopping on it

    def handle(self, *args, **options):
        started = time.monotonic()
        results = health.check_all()
        elapsed = time.monotonic() - started
        for name, ok in results.items():
            mark = self.style.SUCCESS("ok") if ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{name:<10}{mark}")
        self.stdout.write(f"({elapsed:.2f} s)")
        if not all(results.values()):
            raise CommandError("unhealthy: " + ", ".join(n for n, ok in results.items() if not ok))
