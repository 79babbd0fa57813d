"""Manage the keyring. Every change is recorded in the database before the key file is
written (casework/vault/registry.py), so no process ever holds a ring the database
refuses, and running processes pick the new file up at their next request or task."""

import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from casework import vault
from casework.vault import registry


class Command(BaseCommand):
    help = "Manage the keyring: generate a key file, add a new active KEK, show status."
    # The keyring check must not stop the command that creates or mends the keyring.
    requires_system_checks = []

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        gen = sub.add_parser("generate", help="write a new keyring file (mode 0600)")
        gen.add_argument("--path", help="where to write it (default: PASSAGE_KEYRING)")
        gen.add_argument("--if-missing", action="store_true", help="do nothing if it exists")
        add = sub.add_parser("add", help="add a new KEK and make it the active one")
        add.add_argument(
            "--wait",
            type=float,
            default=registry.LIVE_SECONDS,
            help="seconds to wait for running processes to pick up the new key file",
        )
        sub.add_parser("status", help="KEKs, data keys per KEK, and what each process holds")
        restore = sub.add_parser(
            "restore-kek", help="add an old KEK back from a backup of the keyring"
        )
        restore.add_argument("--from", dest="source", required=True, help="backup keyring file")
        restore.add_argument(
            "kek_ids", nargs="*", help="KEKs to add back (default: those data keys need)"
        )
        sub.add_parser("replace-index-key", help="new blind-index root key (then run `reindex`)")

    def handle(self, *args, action, **options):
        try:
            getattr(self, action.replace("-", "_"))(**options)
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None

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

    def add(self, wait=registry.LIVE_SECONDS, **options):
        """1. Record the new KEK in the database as the one being introduced (data keys
           may be wrapped under it or the active one).
        2. Write the key file; the running processes read it at their next request or
           task (or within seconds when idle) and report it.
        3. Once every live process holds it (or after --wait), make it the only KEK data
           keys may be wrapped under: a process still holding the old file refuses to
           write until it reads the new one."""
        ring = self._current()
        new_id = vault.new_kek_id()
        new = vault.Keyring(
            keks={new_id: secrets.token_bytes(vault.KEY_BYTES), **ring.keks},
            index_key=ring.index_key,
            audit_key=ring.audit_key,
        )
        registry.kek_introduce(new)
        since = timezone.now()
        try:
            path = vault.save_keyring(new)
        except Exception:
            registry.kek_withdraw(new_id)
            raise
        self.stdout.write(f"Keyring file {path} updated (back it up now).")
        lagging = registry.wait_for_processes(
            lambda p: p.seen_at < since or p.active_kek_id != new_id, timeout=wait
        )
        registry.kek_activate(new_id)
        self._warn_lagging(lagging, f"do not hold {new_id} yet and will refuse to write")
        self.stdout.write(
            self.style.SUCCESS(f"Added {new_id}; it is now the active KEK. Run `rotate_keys`.")
        )

    def restore_kek(self, source, kek_ids=(), **options):
        """Add KEKs back from a backup keyring file, each only once it proves itself: its
        check value is the one the database recorded for that id, or it opens a data
        key wrapped under it. They are not made active; `rotate_keys` moves their data
        keys to the active KEK, after which they can be retired again."""
        from casework.models import DataKey

        ring = self._current()
        try:
            backup = vault.Keyring.from_json(Path(source).read_text(), source)
        except OSError as exc:
            raise CommandError(f"{source} cannot be read ({exc.strerror}).") from None
        needed = set(vault.key_usage()) - set(ring.keks)
        wanted = list(kek_ids) or sorted(needed & set(backup.keks))
        if not wanted:
            raise CommandError(
                "No data key needs a KEK this keyring lacks"
                + (f" and {source} has none of {sorted(needed)}." if needed else ".")
            )
        st = registry.state()
        known = {**st.retired, **st.keks} if st else {}
        added = {}
        for kek_id in wanted:
            if kek_id in ring.keks:
                raise CommandError(f"{kek_id} is already in the keyring.")
            if kek_id not in backup.keks:
                raise CommandError(f"{source} does not hold {kek_id}.")
            check = backup.checks["keks"][kek_id]
            if kek_id in known:
                if known[kek_id] != check:
                    raise CommandError(
                        f"{kek_id} in {source} is not the key this database knows by that id."
                    )
            else:
                sample = DataKey.objects.filter(kek_id=kek_id, shredded_at__isnull=True).first()
                if sample is None:
                    raise CommandError(f"No data key uses {kek_id}; there is nothing to restore.")
                try:
                    vault.unwrap_dek(
                        sample.wrapped,
                        purpose=sample.purpose,
                        owner_id=sample.owner_id,
                        kek_id=kek_id,
                        ring=backup,
                    )
                except vault.DecryptionError:
                    raise CommandError(
                        f"{kek_id} in {source} does not open the data keys wrapped under it."
                    ) from None
            added[kek_id] = backup.keks[kek_id]
        for kek_id in added:
            registry.kek_restore(kek_id, backup.checks["keks"][kek_id])
        self._save(
            vault.Keyring(
                keks={**ring.keks, **added}, index_key=ring.index_key, audit_key=ring.audit_key
            )
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Added back {', '.join(added)} (not active). Run `rotate_keys`, then "
                "`retire_key` each of them again."
            )
        )

    def replace_index_key(self, **options):
        ring = self._current()
        new = vault.Keyring(
            keks=ring.keks,
            index_key=secrets.token_bytes(vault.KEY_BYTES),
            audit_key=ring.audit_key,
        )
        registry.index_key_replace(new)
        self._save(new)
        self.stdout.write(self.style.WARNING("New index key written. Run `reindex` now."))

    def status(self, **options):
        ring = vault.keyring()
        usage = vault.key_usage()
        st = registry.state()
        self.stdout.write(f"{'KEK':<24}{'fingerprint':<14}{'data keys':>10}")
        for i, (kid, key) in enumerate(ring.keks.items()):
            mark = "  (active)" if i == 0 else ""
            self.stdout.write(f"{kid:<24}{vault.fingerprint(key):<14}{usage.pop(kid, 0):>10}{mark}")
        for kid, n in usage.items():
            self.stdout.write(self.style.ERROR(f"{kid:<24}{'MISSING':<14}{n:>10}"))
        self.stdout.write(f"index key {vault.fingerprint(ring.index_key)}")
        if st is not None:
            self.stdout.write(
                f"database: generation {st.generation}, active {st.active_kek_id}"
                + (f", introducing {st.next_kek_id}" if st.next_kek_id else "")
                + (f", retired {', '.join(sorted(st.retired))}" if st.retired else "")
            )
        since = timezone.now() - timedelta(seconds=registry.LIVE_SECONDS)
        processes = list(registry.ProcessKeyring.objects.filter(seen_at__gte=since))
        self.stdout.write(f"processes seen in the last {registry.LIVE_SECONDS} s: {len(processes)}")
        for p in processes:
            held = p.problem[:120] if p.problem else f"active {p.active_kek_id}"
            self.stdout.write(f"  {p.role:<8}{p.host}:{p.pid}  generation {p.generation}  {held}")

    def _current(self) -> vault.Keyring:
        """The keyring in use, which must be the database's: a change starts from it."""
        ring = vault.keyring()
        if registry.state() is None:
            raise CommandError("This database has no keyring recorded yet: run `migrate` first.")
        return ring

    def _save(self, ring):
        path = vault.save_keyring(ring)
        self.stdout.write(f"Keyring file {path} updated (back it up now).")

    def _warn_lagging(self, lagging, what):
        for p in lagging:
            self.stdout.write(
                self.style.WARNING(f"{p.role} {p.host}:{p.pid} (seen {p.seen_at:%H:%M:%S}) {what}")
            )
