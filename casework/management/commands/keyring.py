from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from casework import vault


class Command(BaseCommand):
    help = "Manage the keyring: generate a key file, add a new active KEK, show status."
    # The keyring check must not stop the command that creates the keyring.
    requires_system_checks = []

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        gen = sub.add_parser("generate", help="write a new keyring file (mode 0600)")
        gen.add_argument("--path", help="where to write it (default: PASSAGE_KEYRING)")
        gen.add_argument("--if-missing", action="store_true", help="do nothing if it exists")
        sub.add_parser("add", help="add a new KEK and make it the active one")
        sub.add_parser("status", help="KEKs and how many data keys each one wraps")
        sub.add_parser("replace-index-key", help="new blind-index root key (then run `reindex`)")

    def handle(self, *args, action, **options):
        getattr(self, action.replace("-", "_"))(**options)

    def generate(self, path=None, if_missing=False, **options):
        path = Path(path or settings.PASSAGE_KEYRING or "")
        if not str(path) or str(path) == ".":
            raise CommandError("Set PASSAGE_KEYRING or pass --path.")
        if path.exists():
            if if_missing:
                self.stdout.write(f"Keyring already present at {path}.")
                return
            raise CommandError(f"{path} exists; refusing to overwrite keys.")
        vault.write_keyring(vault.Keyring.generate(), path)
        self.stdout.write(self.style.SUCCESS(f"Wrote a new keyring to {path} (mode 0600)."))

    def add(self, **options):
        import secrets

        ring = vault.keyring()
        new_id = vault.new_kek_id()
        keks = {new_id: secrets.token_bytes(vault.KEY_BYTES), **ring.keks}
        self._save(vault.Keyring(keks=keks, index_key=ring.index_key, audit_key=ring.audit_key))
        self.stdout.write(
            self.style.SUCCESS(f"Added {new_id}; it is now the active KEK. Run `rotate_keys`.")
        )

    def replace_index_key(self, **options):
        import secrets

        ring = vault.keyring()
        self._save(
            vault.Keyring(
                keks=ring.keks,
                index_key=secrets.token_bytes(vault.KEY_BYTES),
                audit_key=ring.audit_key,
            )
        )
        self.stdout.write(self.style.WARNING("New index key written. Run `reindex` now."))

    def status(self, **options):
        ring = vault.keyring()
        usage = vault.key_usage()
        self.stdout.write(f"{'KEK':<24}{'fingerprint':<14}{'data keys':>10}")
        for i, (kid, key) in enumerate(ring.keks.items()):
            mark = "  (active)" if i == 0 else ""
            self.stdout.write(f"{kid:<24}{vault.fingerprint(key):<14}{usage.pop(kid, 0):>10}{mark}")
        for kid, n in usage.items():
            self.stdout.write(self.style.ERROR(f"{kid:<24}{'MISSING':<14}{n:>10}"))
        self.stdout.write(f"index key {vault.fingerprint(ring.index_key)}")

    def _save(self, ring):
        try:
            path = vault.save_keyring(ring)
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Keyring file {path} updated (back it up now).")
