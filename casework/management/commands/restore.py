"""Restore a backup into an empty database, attachment storage and keyring path, then
check that every record opens and the access log verifies (casework/backups.py)."""

from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from casework import backups, vault


class Command(BaseCommand):
    help = (
        "Restore a `backup` archive into an empty database (DATABASE_URL), an empty "
        "attachment storage and a new keyring file, then verify everything opens."
    )
    # The database is empty and the keyring absent until this has run.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path)
        parser.add_argument(
            "--identity", type=Path, required=True, help="file with the age secret key"
        )
        parser.add_argument(
            "--keyring-to", type=Path, help="where the keyring goes (default: PASSAGE_KEYRING)"
        )
        parser.add_argument(
            "--no-verify", action="store_true", help="skip decrypting every record afterwards"
        )

    def handle(self, *args, archive, identity, keyring_to, no_verify, **options):
        try:
            identities = identity.read_text().splitlines()
        except OSError as exc:
            raise CommandError(f"{identity} cannot be read ({exc.strerror}).") from None
        try:
            manifest = backups.restore(
                archive=archive, identities=identities, keyring_to=keyring_to, log=self.stdout.write
            )
        except (backups.BackupError, vault.KeyringError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Restored the backup of {manifest['created_at']} ({manifest['files']} files)."
        )
        if keyring_to:
            self.stdout.write(
                f"Point PASSAGE_KEYRING at {keyring_to} (or load it into your secret store)."
            )
        if no_verify or keyring_to:
            return
        call_command("migrate", "--check", stdout=self.stdout)
        call_command("verify_vault", stdout=self.stdout)
        try:
            call_command("verify_audit", stdout=self.stdout)
        except CommandError as exc:
            raise CommandError(
                f"{exc} If this backup is older than the newest signed checkpoint, the "
                "events written after it are lost: record that with `python manage.py "
                "verify_audit --after-restore` (every later verification names the loss)."
            ) from None
