from django.core.management.base import BaseCommand, CommandError

from casework import vault


class Command(BaseCommand):
    help = "Remove a KEK from the keyring once no data key uses it."

    def add_arguments(self, parser):
        parser.add_argument("kek_id")

    def handle(self, *args, kek_id, **options):
        ring = vault.keyring()
        if kek_id not in ring.keks:
            raise CommandError(f"{kek_id} is not in the keyring.")
        if kek_id == ring.active_kek_id:
            raise CommandError(f"{kek_id} is the active KEK; add a new one first.")
        in_use = vault.key_usage().get(kek_id, 0)
        if in_use:
            raise CommandError(f"{kek_id} still wraps {in_use} data keys; run `rotate_keys` first.")
        keks = {k: v for k, v in ring.keks.items() if k != kek_id}
        try:
            vault.save_keyring(
                vault.Keyring(keks=keks, index_key=ring.index_key, audit_key=ring.audit_key)
            )
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Retired {kek_id}."))
