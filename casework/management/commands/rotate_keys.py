from django.core.management.base import BaseCommand, CommandError

from casework import vault
from casework.vault import registry

from ._progress import Progress


class Command(BaseCommand):
    help = "Re-wrap every data key under the active KEK (resumable; safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--background", action="store_true", help="run in the Celery worker instead"
        )

    def handle(self, *args, batch_size, background, **options):
        try:
            active = self._active()
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None
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

    def _active(self) -> str:
        """The active KEK, in the key file and in the database alike. A `keyring add`
        that stopped before its last step left the new KEK only introduced: it is made
        active here, since re-wrapping under it is what comes next."""
        active = vault.keyring().active_kek_id
        st = registry.state()
        if st is not None and st.active_kek_id != active:
            if st.next_kek_id != active:
                raise CommandError(
                    f"The keyring's active KEK {active} is not the database's ({st.active_kek_id})."
                )
            registry.kek_activate(active)
            self.stdout.write(f"{active} is now the database's active KEK too.")
        return active
