"""A terminal progress bar that also moves a Job row, for the long vault commands."""

from django.utils import timezone

from casework.models import Job


class Progress:
    WIDTH = 30

    def __init__(self, stdout, kind: str, detail: str = ""):
        self.stdout = stdout
        self.job = Job.objects.create(
            kind=kind, status=Job.Status.RUNNING, detail=detail, started_at=timezone.now()
        )
        self.tty = getattr(stdout, "isatty", lambda: False)()

    def __call__(self, done: int, total: int) -> None:
        Job.objects.filter(pk=self.job.pk).update(done=done, total=total)
        filled = self.WIDTH if not total else int(self.WIDTH * done / total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        end = "\r" if self.tty and done < total else "\n"
        self.stdout.write(f"[{bar}] {done}/{total}", ending=end)

    def finish(self, ok: bool = True) -> None:
        Job.objects.filter(pk=self.job.pk).update(
            status=Job.Status.DONE if ok else Job.Status.FAILED, finished_at=timezone.now()
        )
