from django.core.management.base import BaseCommand

from casework import vault

from ._progress import Progress


class Command(BaseCommand):
    help = "Recompute every blind index (after `keyring replace-index-key`)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size, **options):
        progress = Progress(self.stdout, "reindex")
        try:
            n = vault.reindex(batch_size=batch_size, progress=progress)
        except Exception:
            progress.finish(ok=False)
            raise
        progress.finish()
        self.stdout.write(self.style.SUCCESS(f"Re-indexed {n} rows."))
