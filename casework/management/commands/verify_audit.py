"""Verify the access log: every event against the Merkle tree, the tree against every
signed checkpoint (exit status 1, with the first problem named)."""

from django.core.management.base import BaseCommand, CommandError

from casework import transparency


def expected(value: str) -> tuple[int, bytes]:
    size, _, root = value.partition(":")
    try:
        return int(size), bytes.fromhex(root)
    except ValueError:
        raise CommandError(f"--expect takes SIZE:ROOT (the root in hex), not {value!r}") from None


class Command(BaseCommand):
    help = (
        "Verify the tamper-evident access log: integrate waiting events, recompute every "
        "event, the Merkle tree and its consistency with every signed checkpoint; exits "
        "with status 1 and names the first problem."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-integrate",
            action="store_true",
            help="check only; do not integrate waiting events or write a checkpoint",
        )
        parser.add_argument(
            "--expect",
            action="append",
            default=[],
            type=expected,
            metavar="SIZE:ROOT",
            help="also check a checkpoint known from elsewhere (an auditor's e-mail)",
        )
        parser.add_argument(
            "--after-restore",
            action="store_true",
            help="after restoring an older backup: sign a checkpoint saying that the events "
            "after it are lost (named by every later verification), then verify",
        )

    def handle(self, *args, no_integrate, expect, after_restore, **options):
        if after_restore:
            restore = transparency.record_restore()
            if restore is None:
                self.stdout.write("Nothing lost: the tree is as long as every checkpoint.")
        report = transparency.verify_log(integrate_first=not no_integrate, expect=expect)
        if not report.ok:
            raise CommandError(f"BROKEN: {report.describe()} ({report.events} events verified).")
        for line in summary(report):
            self.stdout.write(line)


def summary(report) -> list[str]:
    root = report.root.hex()[:16]
    lines = [
        f"OK: {report.events} events, chain intact: a Merkle tree of {report.events} "
        f"(root {root}...), consistent with {report.checkpoints} signed checkpoints."
    ]
    if report.folder is None:
        lines.append("No checkpoint directory is configured (PASSAGE_CHECKPOINT_DIR).")
    elif not report.checkpoints and report.events:
        lines.append(
            f"No checkpoint yet in {report.folder}: nothing outside the database anchors the log."
        )
    for restore, lost in report.lost:
        if restore.size < lost:
            lines.append(
                f"Lost in a restore: events {restore.size + 1} to {lost} of the log before the "
                f"restore checkpointed at {restore.time}."
            )
        else:  # the restored log had grown past the old checkpoints when the loss was noted
            lines.append(
                f"Lost in a restore: the history checkpointed up to {lost} events, which the "
                f"log restored and checkpointed at {restore.time} does not continue."
            )
    if report.pending:
        lines.append(f"Not yet in the tree: {report.pending} events (the sequencer adds them).")
    return lines
