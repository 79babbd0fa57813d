from django.core.management.base import BaseCommand

from casework import vault

from ._progress import Progress


class Command(BaseCommand):
    help = "Re-wrap every data key under the active KEK (resumable; safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--background", action="store_true", help="run in the Celery worker instead"
        )

    def handle(self, *args, batch_size, background, **options):
        active = vault.keyring().active_kek_id
        if background:
            from casework.models import Job
            from casework.tasks import rotate_keys

            job = Job.objects.create(kind="rotate_keys", detail=active)
            from casework.background import send

            send(rotate_keys, str(job.pk))
            self.stdout.write(f"Queued; follow job {job.pk}.")
            return
        progress = Progress(self.stdout, "rotate_keys", active)
        try:
            n = vault.rotate(batch_size=batch_size, progress=progress)
        except Exception:
            progress.finish(ok=False)
            raise
        progress.finish()
        self.stdout.write(self.style.SUCCESS(f"Re-wrapped {n} data keys under {active}."))
