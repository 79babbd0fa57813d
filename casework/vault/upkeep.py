"""Upkeep: rotation of the key-encryption keys, re-indexing, key usage."""

from django.db import transaction

from .index import blind_indexes, update_blind_indexes
from .keys import keyring, unwrap_dek, wrap_dek
from .records import _shredded


# --- Rotation and re-indexing ----------------------------------------------------------------------
def rotate(*, batch_size: int = 2000, progress=None, workers: int | None = None) -> int:
    """Re-wrap every live DEK that is not under the active KEK; return how many.

    1. Count the keys to do (for progress only).
    2. Page through them by primary key (keyset: each batch starts after the last key
       handed out, so a batch costs the same at the end as at the start). On PostgreSQL
       a batch is locked with FOR UPDATE SKIP LOCKED: two rotations side by side share
       the work instead of waiting on each other.
    3. Unwrap each key with its KEK and wrap it under the active one, in Python (the
       database never sees a key).
    4. Write the batch with one set-based UPDATE (PostgreSQL: UPDATE ... FROM unnest of
       arrays; SQLite: executemany of one statement), only where the key is still under
       the KEK it was read under; commit; report progress.
    5. When the last page is done, go round once more for keys skipped meanwhile (held by
       another rotation that may have given up); stop when a round finds none.
    On PostgreSQL, outside a caller's transaction, two workers (threads, each with its
    own connection and its own batch in its own transaction) take pages in turn, so one
    wraps keys while the server writes the other's batch. Each batch commits on its
    own: an interrupted run resumes where it stopped, and a run with nothing to do
    changes nothing. The database's trigger (registry.py) refuses a key under any KEK
    but the active one, so an outdated keyring writes nothing here.
    """
    from django.db import connection

    from ..models import DataKey

    active = keyring().active_kek_id
    pending = DataKey.objects.filter(shredded_at__isnull=True).exclude(kek_id=active)
    pages = _Pages(pending, batch_size, progress, total=pending.count())
    pages.report()
    if workers is None:
        # A caller's transaction (a test's, say) is seen by its own connection only.
        workers = 2 if connection.vendor == "postgresql" and not connection.in_atomic_block else 1
    while pages.round(workers):
        pass
    return pages.done


class _Pages:
    """The pages of a rotation, handed out one at a time in key order, and the count."""

    def __init__(self, pending, size: int, progress, total: int):
        import threading

        self.pending, self.size, self.progress, self.total = pending, size, progress, total
        self.lock = threading.Lock()
        self.after, self.done, self.this_round = None, 0, 0
        self.stop = False

    def report(self) -> None:
        if self.progress:
            self.progress(self.done, self.total)

    def round(self, workers: int) -> bool:
        """One pass over the keys; whether it rotated any (then another pass is due)."""
        self.after, self.this_round = None, 0
        if workers == 1:
            self.work()
        else:
            self._in_threads(workers)
        return self.this_round > 0

    def work(self) -> None:
        """Take the next page, rotate it, commit, until none is left (or a worker failed)."""
        while not self.stop:
            with transaction.atomic():
                with self.lock:  # the next page after the last one handed out
                    batch = _rotation_batch(self.pending, self.after, self.size)
                    if not batch:
                        return
                    self.after = batch[-1][0]
                n = _rewrap(batch)
            with self.lock:
                self.done += n
                self.this_round += n
                self.report()

    def _in_threads(self, workers: int) -> None:
        import threading

        from django.db import connection

        failed = []

        def run():
            try:
                self.work()
            except BaseException as exc:  # re-raised in the caller's thread below
                self.stop = True
                failed.append(exc)
            finally:
                connection.close()  # this thread's own

        threads = [threading.Thread(target=run, name=f"rotate-{k}") for k in range(workers)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:  # interrupted (Ctrl-C): the workers finish their batch and stop
            self.stop = True
            for thread in threads:
                thread.join()
            raise
        if failed:
            raise failed[0]


def _rotation_batch(pending, after, size: int) -> list[tuple]:
    """The next `size` keys to rotate after primary key `after`, locked where the
    database can skip rows another transaction holds."""
    from django.db import connection

    batch = pending.order_by("pk")
    if after is not None:
        batch = batch.filter(pk__gt=after)
    if connection.features.has_select_for_update_skip_locked:
        batch = batch.select_for_update(skip_locked=True)
    return list(batch.values_list("pk", "purpose", "owner_id", "kek_id", "wrapped")[:size])


def _rewrap(batch: list[tuple]) -> int:
    """Wrap each key of `batch` under the active KEK and write them all at once; the
    number of rows written."""
    from django.db import connection
    from django.utils import timezone

    from ..models import DataKey

    ring = keyring()
    rows = []
    for pk, purpose, owner_id, kek_id, wrapped in batch:
        dek = unwrap_dek(wrapped, purpose=purpose, owner_id=owner_id, kek_id=kek_id, ring=ring)
        new_kek, new_wrapped = wrap_dek(dek, purpose=purpose, owner_id=owner_id)
        rows.append((pk, kek_id, new_kek, new_wrapped))
    table = connection.ops.quote_name(DataKey._meta.db_table)
    now = DataKey._meta.get_field("rotated_at").get_db_prep_value(timezone.now(), connection)
    if connection.vendor == "postgresql":
        return _write_postgresql(connection, table, now, rows)
    pk_field = DataKey._meta.pk
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET kek_id = %s, wrapped = %s, rotated_at = %s "
            "WHERE id = %s AND kek_id = %s AND shredded_at IS NULL",
            [
                (new_kek, new_wrapped, now, pk_field.get_db_prep_value(pk, connection), old)
                for pk, old, new_kek, new_wrapped in rows
            ],
        )
        return cursor.rowcount


def _write_postgresql(connection, table: str, now, rows: list[tuple]) -> int:
    """One UPDATE ... FROM unnest() of four arrays, on a cursor that binds its
    parameters on the server, the arrays in binary (%b): Django's cursor binds on the
    client, spelling 2,000 keys out as hex in the statement's text, and even a text
    array costs more to build than the update takes."""
    import psycopg

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"UPDATE {table} AS d SET kek_id = u.new_kek, wrapped = u.wrapped, rotated_at = %s "
            "FROM unnest(%b::uuid[], %b::varchar[], %b::varchar[], %b::bytea[]) "
            "AS u(id, old_kek, new_kek, wrapped) "
            "WHERE d.id = u.id AND d.kek_id = u.old_kek AND d.shredded_at IS NULL "
            # The batch's key range (it is a page in key order): the rows are read by the
            # primary key, not by a scan of the whole table, however large it grows.
            "AND d.id BETWEEN %s AND %s",
            [now, *map(list, zip(*rows, strict=True)), rows[0][0], rows[-1][0]],
        )
        return cursor.rowcount


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
