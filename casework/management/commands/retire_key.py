from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from casework import vault
from casework.vault import registry


class Command(BaseCommand):
    help = (
        "Remove a KEK from the keyring once no data key uses it and no running process "
        "may still wrap under it."
    )

    def add_arguments(self, parser):
        parser.add_argument("kek_id")
        parser.add_argument(
            "--wait",
            type=float,
            default=registry.LIVE_SECONDS,
            help="seconds to wait for running processes still holding it as active",
        )

    def handle(self, *args, kek_id, wait, **options):
        """1. Refuse an unknown or active KEK, or one that still wraps data keys.
        2. Refuse while a live process (web or worker, seen in the last LIVE_SECONDS)
           still holds it as its active KEK: it could wrap a new record under it, which
           would be unreadable once the key is gone. Such a process is waited for first.
        3. Record the retirement in the database (from then on a ring holding it as
           active does not match), then write the key file without it."""
        try:
            ring = vault.keyring()
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None
        if kek_id not in ring.keks:
            raise CommandError(f"{kek_id} is not in the keyring.")
        st = registry.state()
        if kek_id == ring.active_kek_id or (st and kek_id in (st.active_kek_id, st.next_kek_id)):
            raise CommandError(f"{kek_id} is the active KEK; add a new one first.")
        in_use = vault.key_usage().get(kek_id, 0)
        if in_use:
            raise CommandError(f"{kek_id} still wraps {in_use} data keys; run `rotate_keys` first.")
        holding = registry.wait_for_processes(lambda p: p.active_kek_id == kek_id, timeout=wait)
        if holding:
            names = ", ".join(f"{p.role} {p.host}:{p.pid}" for p in holding)
            raise CommandError(
                f"{kek_id} is still the active KEK of running processes ({names}); "
                "they would write records under it. Give them the current key file (or "
                "restart them), then run `retire_key` again."
            )
        keks = {k: v for k, v in ring.keks.items() if k != kek_id}
        try:
            with transaction.atomic():
                registry.kek_retire(kek_id)
                # Checked again under the keyring's row lock: the trigger has refused new
                # data keys under it since it stopped being active, so none can appear.
                if vault.key_usage().get(kek_id, 0):
                    raise CommandError(f"{kek_id} wraps data keys again; run `rotate_keys`.")
            vault.save_keyring(
                vault.Keyring(keks=keks, index_key=ring.index_key, audit_key=ring.audit_key)
            )
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Retired {kek_id}."))
