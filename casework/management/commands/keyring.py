from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from casework.vault import Keyring, write_keyring


class Command(BaseCommand):
    help = "Create the key file (KEKs, blind-index and audit keys) named by PASSAGE_KEYRING."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        gen = sub.add_parser("generate", help="write a new keyring file (mode 0600)")
        gen.add_argument("--path", help="where to write it (default: PASSAGE_KEYRING)")
        gen.add_argument(
            "--if-missing", action="store_true", help="do nothing when the file exists"
        )

    def handle(self, *args, action, **options):
        path = Path(options["path"] or settings.PASSAGE_KEYRING or "")
        if not str(path) or str(path) == ".":
            raise CommandError("Set PASSAGE_KEYRING or pass --path.")
        if path.exists():
            if options["if_missing"]:
                self.stdout.write(f"Keyring already present at {path}.")
                return
            raise CommandError(f"{path} exists; refusing to overwrite keys.")
        write_keyring(Keyring.generate(), path)
        self.stdout.write(self.style.SUCCESS(f"Wrote a new keyring to {path} (mode 0600)."))
