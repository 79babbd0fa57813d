"""Recompute the access log's hash chain and name the first broken link (exit status 1)."""

from django.core.management.base import BaseCommand, CommandError

from casework import audit


class Command(BaseCommand):
    help = "Verify the tamper-evident access log; exits with status 1 if the chain is broken."

    def handle(self, *args, **options):
        checked, broken = audit.verify()
        if broken is not None:
            raise CommandError(f"BROKEN at event #{broken} ({checked} events before it verified).")
        self.stdout.write(self.style.SUCCESS(f"OK: {checked} events, chain intact."))
