"""Open everything the vault holds, and count: every data key, every encrypted field of
every row, every attachment file. Counts and KEK ids only, never content."""

from collections import Counter

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from casework import vault

# The fields that name an encrypted file, and the vault owner whose key it is under.
FILE_FIELDS = [("casework.Attachment", "blob_name"), ("contacts.ConsentEvent", "scan_blob")]


class Command(BaseCommand):
    help = (
        "Decrypt every data key, encrypted field and attachment (after a restore, say); "
        "exit status 1 if any fails."
    )

    def handle(self, *args, **options):
        try:
            vault.keyring()
        except vault.KeyringError as exc:
            raise CommandError(str(exc)) from None
        counts, failures = Counter(), Counter()
        self.data_keys(counts, failures)
        for model in apps.get_models():
            if vault.encrypted_field_names(model):
                self.fields(model, counts, failures)
        for label, field in FILE_FIELDS:
            try:
                model = apps.get_model(label)
            except LookupError:
                continue
            self.files(model, field, counts, failures)
        summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
        self.stdout.write(f"Opened: {summary or 'nothing to open'}.")
        if failures:
            broken = ", ".join(f"{n} {what}" for what, n in sorted(failures.items()))
            raise CommandError(f"Could not open: {broken}.")
        self.stdout.write(self.style.SUCCESS("OK: everything the vault holds opens."))

    def data_keys(self, counts, failures):
        from casework.models import DataKey

        for key in DataKey.objects.filter(shredded_at__isnull=True).iterator(chunk_size=500):
            try:
                key.dek()
                counts["data keys"] += 1
            except (vault.DecryptionError, vault.KeyringError):
                failures[f"data keys under {key.kek_id}"] += 1

    def fields(self, model, counts, failures):
        names = sorted(vault.encrypted_field_names(model))
        label = model._meta.label
        for row in self._rows(model):
            if self._shredded(row):
                counts["shredded rows"] += 1
                continue
            for name in names:
                try:
                    getattr(row, name)
                    counts["fields"] += 1
                except (vault.DecryptionError, vault.KeyringError):
                    failures[f"{label}.{name}"] += 1

    def files(self, model, field, counts, failures):
        label = model._meta.label
        for row in self._rows(model).exclude(**{field: ""}):
            if self._shredded(row):
                continue
            try:
                vault.open_file(vault.owner_data_key(row), getattr(row, field))
                counts["files"] += 1
            except (vault.DecryptionError, vault.KeyringError):
                failures[f"{label} files"] += 1

    @staticmethod
    def _rows(model):
        owner = getattr(model, "vault_owner", None)
        path = f"{owner.replace('.', '__')}__data_key" if owner else "data_key"
        try:
            model._meta.get_field((owner or "data_key").split(".")[0])
            return model._default_manager.select_related(path).order_by("pk")
        except Exception:  # not a simple path: one query per row, still correct
            return model._default_manager.order_by("pk")

    @staticmethod
    def _shredded(row) -> bool:
        try:
            return vault.owner_data_key(row).shredded_at is not None
        except Exception:
            return False
