"""Back up the database, the attachment files and the keyring, together, in one archive
encrypted to the age recipients (casework/backups.py)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from casework import backups, vault


class Command(BaseCommand):
    help = (
        "Write one encrypted backup (database, attachment files, keyring) into "
        "PASSAGE_BACKUP_DIR, for the age recipients in PASSAGE_BACKUP_RECIPIENTS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--to", type=Path, help="folder (default: PASSAGE_BACKUP_DIR)")
        parser.add_argument(
            "--recipient",
            action="append",
            default=[],
            help="an age public key (age1...); repeatable (default: PASSAGE_BACKUP_RECIPIENTS)",
        )

    def handle(self, *args, to, recipient, **options):
        try:
            path = backups.backup(
                to=to or settings.PASSAGE_BACKUP_DIR,
                recipients=recipient or settings.PASSAGE_BACKUP_RECIPIENTS,
                log=self.stdout.write,
            )
        except (backups.BackupError, vault.KeyringError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Wrote {path} ({path.stat().st_size} bytes)."))
