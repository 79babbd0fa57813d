"""Upkeep: rotation of the key-encryption keys, re-indexing, key usage."""

from django.db import transaction

from .index import blind_indexes, update_blind_indexes
from .keys import keyring, unwrap_dek, wrap_dek
from .records import _shredded


# --- Rotation and re-indexing ----------------------------------------------------------------------
def rotate(*, batch_size: int = 500, progress=None) -> int:
    """Re-wrap every live DEK that is not under the active KEK.

    1. Take a batch of such keys (on PostgreSQL locked with SKIP LOCKED, so two
       rotations can run side by side without waiting on each other).
    2. Unwrap each with its KEK, wrap it with the active one, save the batch.
    3. Commit, report progress, repeat until none is left.
    Each batch commits on its own: an interrupted run resumes where it stopped, and a
    run with nothing to do changes nothing.
    """
    from django.db import connection
    from django.utils import timezone

    from ..models import DataKey

    active = keyring().active_kek_id
    pending = DataKey.objects.filter(shredded_at__isnull=True).exclude(kek_id=active)
    total, done = pending.count(), 0
    if progress:
        progress(done, total)
    while True:
        with transaction.atomic():
            batch = pending.order_by("pk")
            if connection.features.has_select_for_update_skip_locked:
                batch = batch.select_for_update(skip_locked=True)
            batch = list(batch[:batch_size])
            if not batch:
                break
            now = timezone.now()
            for key in batch:
                dek = unwrap_dek(
                    key.wrapped, purpose=key.purpose, owner_id=key.owner_id, kek_id=key.kek_id
                )
                key.kek_id, key.wrapped = wrap_dek(dek, purpose=key.purpose, owner_id=key.owner_id)
                key.rotated_at = now
            DataKey.objects.bulk_update(batch, ["kek_id", "wrapped", "rotated_at"])
        done += len(batch)
        if progress:
            progress(done, total)
    return done


def indexed_models() -> list:
    from django.apps import apps

    return [m for m in apps.get_models() if blind_indexes(m)]


def reindex(*, batch_size: int = 500, progress=None) -> int:
    """Recompute every blind index (after the index key changed). Shredded rows are skipped."""
    from ..models import BlindIndexEntry

    models_ = indexed_models()
    total = sum(m.objects.count() for m in models_)
    done = 0
    for model in models_:
        names = [i.name for i in blind_indexes(model)]
        pks = list(model.objects.values_list("pk", flat=True).order_by("pk"))
        for start in range(0, len(pks), batch_size):
            with transaction.atomic():
                rows = model.objects.filter(pk__in=pks[start : start + batch_size])
                BlindIndexEntry.objects.filter(
                    index__in=names, row_id__in=pks[start : start + batch_size]
                ).delete()
                for row in rows:
                    if not _shredded(row):
                        update_blind_indexes(row, only_if_dirty=False)
            done += len(pks[start : start + batch_size])
            if progress:
                progress(done, total)
    return done


def key_usage() -> dict[str, int]:
    """Live data keys per KEK id (for `keyring status` and `retire_key`)."""
    from django.db.models import Count

    from ..models import DataKey

    rows = DataKey.objects.filter(shredded_at__isnull=True).values("kek_id").annotate(n=Count("id"))
    return {row["kek_id"]: row["n"] for row in rows}
