"""The access log attacked from outside (rows changed, deleted, a tail cut with the
triggers dropped, checkpoints replaced), and written by concurrent writers on a real
PostgreSQL."""

import io
import threading
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import Error, connection, connections, transaction

from casework import audit, transparency, vault
from casework.models import AccessEvent
from casework.transparency import LogLeaf, LogNode, LogState


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.PASSAGE_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.PASSAGE_CHECKPOINT_DIR


def write(n, action="test.event"):
    return [audit.record(None, action, detail={"i": i}) for i in range(n)]


@contextmanager
def triggers_dropped():
    """What an attacker with the database's owner rights does first."""
    tables = audit.append_only_tables()
    for table, _pk in tables:
        audit.drop_triggers(connection, table)
    try:
        yield connection.cursor()
    finally:
        for table, pk in tables:
            audit.install_triggers(connection, table, pk)


def cut_tree(cursor, size):
    """Remove the leaves from `size` on and every node not wholly below it."""
    cursor.execute("DELETE FROM casework_logleaf WHERE position >= %s", [size])
    for level in range(1, 48):
        cursor.execute(
            "DELETE FROM casework_lognode WHERE key >= %s AND key < %s",
            [transparency.node_key(level, size >> level), transparency.node_key(level + 1, 0)],
        )


def restore_an_older_backup():
    """4 events checkpointed (what the backup holds), 3 more checkpointed (7), then the
    database put back as the backup had it: its events, its tree, its sequencer row."""
    write(4)
    ok()
    backup = max(AccessEvent.objects.values_list("seq", flat=True))
    state = LogState.objects.get()
    write(3)
    ok()  # checkpoint of 7
    with triggers_dropped() as cursor:
        cursor.execute(f"DELETE FROM {audit.TABLE} WHERE seq > %s", [backup])
        cut_tree(cursor, 4)
    state.save()


def broken() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", stdout=io.StringIO())
    return str(failure.value)


def ok() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


# --- Attacks ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_dropping_the_triggers_and_deleting_the_newest_events_fails_verification(checkpoints):
    write(10)
    ok()  # integrated and checkpointed
    newest = list(AccessEvent.objects.order_by("-seq").values_list("seq", flat=True)[:3])
    with triggers_dropped() as cursor:
        cursor.execute(f"DELETE FROM {audit.TABLE} WHERE seq >= %s", [min(newest)])
    assert broken() == (
        f"BROKEN: event #{min(newest)} (position 7): it is missing (deleted) (7 events verified)."
    )


@pytest.mark.django_db
def test_a_tail_cut_from_the_log_and_its_tree_is_caught_by_the_checkpoint(checkpoints):
    """The thorough attacker: the rows, their leaves and nodes, and the sequencer's state,
    all put back as they were before the last three events. Only the checkpoint outside
    the database remembers."""
    write(7)
    ok()
    kept = list(AccessEvent.objects.order_by("seq").values_list("seq", flat=True))[4]
    with triggers_dropped() as cursor:
        cursor.execute(f"DELETE FROM {audit.TABLE} WHERE seq > %s", [kept])
        cut_tree(cursor, 5)
    LogState.objects.update(
        size=5, root=transparency.root_at(5), scanned_to=kept, checkpointed_size=0
    )
    assert "the tree holds 5 events but checkpoint 1 (" in broken()
    assert "the log's newest events were removed" in broken()


@pytest.mark.django_db
def test_a_changed_event_and_a_changed_leaf_fail(checkpoints):
    write(5)
    ok()
    third = AccessEvent.objects.order_by("seq")[2]
    with triggers_dropped() as cursor:
        cursor.execute(
            f"UPDATE {audit.TABLE} SET action = 'test.other' WHERE seq = %s", [third.seq]
        )
    assert "it does not match its MAC" in broken()
    with triggers_dropped() as cursor:  # back, and the leaf changed instead
        cursor.execute(
            f"UPDATE {audit.TABLE} SET action = 'test.event' WHERE seq = %s", [third.seq]
        )
        cursor.execute("UPDATE casework_logleaf SET hash = %s WHERE position = 2", [bytes(32)])
    assert broken() == (
        f"BROKEN: event #{third.seq} (position 2): it differs from its leaf in the tree "
        "(2 events verified)."
    )


@pytest.mark.django_db
def test_a_changed_tree_node_fails(checkpoints):
    write(6)
    ok()
    with triggers_dropped() as cursor:
        cursor.execute(
            "UPDATE casework_lognode SET hash = %s WHERE key = %s",
            [bytes(32), transparency.node_key(1, 2)],
        )
    assert "the stored tree's node at level 1, index 2 is wrong or missing" in broken()


@pytest.mark.django_db
def test_an_event_written_without_the_key_fails():
    from django.utils import timezone

    write(2)
    forged = AccessEvent(
        at=timezone.now(), action="case.viewed", fields=[], detail={}, mac="0" * 64
    )
    forged.save(force_insert=True)  # an INSERT: the triggers do not stop those
    assert audit.verify()[1] == forged.seq


@pytest.mark.django_db
def test_a_copied_event_fails():
    original = write(3)[1]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {audit.TABLE} (at, actor_id, action, case_id, object_type, object_id,"
            " fields, detail, flagged, request_id, ip, mac) SELECT at, actor_id, action, case_id,"
            f" object_type, object_id, fields, detail, flagged, request_id, ip, mac FROM {audit.TABLE}"
            " WHERE seq = %s",
            [original.seq],
        )
    copy = AccessEvent.objects.order_by("-seq").first()
    assert audit.verify() == (4, copy.seq)  # its MAC holds (the seq is not in it): a copy
    report = transparency.verify_log()
    assert report.problem == f"repeats event #{original.seq} (the same MAC: a copied row)"


@pytest.mark.django_db
def test_checkpoints_replaced_by_another_keys_fail(checkpoints):
    write(3)
    ok()
    stranger = transparency.signing_key(vault.Keyring.generate().audit_key)
    name = "127.0.0.1/access-log"
    forged = transparency.note_body(name, 3, transparency.root_at(3), "2026-01-01T00:00:00Z")
    (checkpoints / "checkpoints.txt").write_text(
        transparency.sign_note(forged, name, stranger) + "\n"
    )
    assert "checkpoint 1 in " in broken() and "is not signed by this log's key" in broken()
    (checkpoints / "log.pub").write_text(
        transparency.verifier_key(name, transparency.public_bytes(stranger)) + "\n"
    )
    assert "holds another key than this log's" in broken()


@pytest.mark.django_db
def test_checkpoints_removed_from_the_file_fail(checkpoints):
    write(3)
    ok()
    write(2)
    ok()
    text = (checkpoints / "checkpoints.txt").read_text()
    first = text.split("\n\n")[:2]
    (checkpoints / "checkpoints.txt").write_text("\n\n".join(first) + "\n")  # the newest gone
    assert "a checkpoint of 5 events was written to" in broken()
    # Nor does the sequencer sign over the gap (a cut tail would then look checkpointed).
    with pytest.raises(transparency.CheckpointError, match="was replaced or cut short"):
        transparency.sequence()


@pytest.mark.django_db
def test_a_restore_from_an_older_backup_is_recorded_and_named_ever_after(checkpoints):
    """A restore is a cut tail too: verification fails until the loss is recorded, and
    names it from then on."""
    restore_an_older_backup()
    assert "the log's newest events were removed" in broken()
    out = io.StringIO()
    call_command("verify_audit", "--after-restore", stdout=out)
    assert "OK: 4 events" in out.getvalue()
    assert "Lost in a restore: events 5 to 7 of the log before the restore" in out.getvalue()
    write(5)
    again = ok()
    assert "OK: 9 events" in again and "Lost in a restore: events 5 to 7" in again


@pytest.mark.django_db
def test_a_restored_log_that_grew_past_its_old_checkpoints_is_never_signed_over_them(
    checkpoints,
):
    """Processes started after a restore before the loss was recorded: the restored log
    grows past the old checkpoints' size with another history. The sequencer refuses to
    sign a tree that does not extend the newest checkpoint (a conflicting signature would
    hide the fork); the loss, once recorded, is named and verification passes again."""
    restore_an_older_backup()
    write(6)  # the restored site at work: 10 events, another history from the 5th
    transparency.integrate()
    with pytest.raises(transparency.CheckpointError, match="does not extend"):
        transparency.checkpoint()
    assert len(transparency.read_checkpoints()) == 2  # nothing signed over the old history
    assert "does not match the log" in broken()
    out = io.StringIO()
    call_command("verify_audit", "--after-restore", stdout=out)
    assert "OK: 10 events" in out.getvalue()
    assert "Lost in a restore: the history checkpointed up to 7 events" in out.getvalue()
    write(2)
    again = ok()
    assert "OK: 12 events" in again and "up to 7 events" in again
    assert transparency.latest_checkpoint().size == 12


@pytest.mark.django_db
def test_an_e_mailed_checkpoint_is_checked_too(checkpoints):
    write(3)
    ok()
    size, root = 3, transparency.root_at(3)
    out = io.StringIO()
    call_command("verify_audit", "--expect", f"{size}:{root.hex()}", stdout=out)
    assert out.getvalue().startswith("OK: 3 events")
    with pytest.raises(CommandError, match="the checkpoint given .3 events. does not match"):
        call_command("verify_audit", "--expect", f"3:{bytes(32).hex()}")


@pytest.mark.django_db
def test_replace_cannot_overwrite_an_event():
    first = write(1)[0]
    with pytest.raises(Error), transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "INSERT OR REPLACE INTO casework_accessevent (seq, at, action, object_type,"
                " object_id, fields, detail, flagged, request_id, mac) SELECT seq, at,"
                " 'test.forged', object_type, object_id, fields, detail, flagged,"
                " request_id, mac FROM casework_accessevent WHERE seq = %s",
                [first.seq],
            )
        else:
            cursor.execute(
                "INSERT INTO casework_accessevent SELECT * FROM casework_accessevent"
                " WHERE seq = %s ON CONFLICT (seq) DO UPDATE SET action = 'test.forged'",
                [first.seq],
            )
    assert AccessEvent.objects.get(seq=first.seq).action == "test.event"


@pytest.mark.django_db
def test_the_trees_tables_refuse_update_and_delete():
    write(4)
    transparency.integrate()
    for sql in (
        "UPDATE casework_logleaf SET hash = hash WHERE position = 0",
        "DELETE FROM casework_logleaf WHERE position = 3",
        "DELETE FROM casework_lognode",
    ):
        with pytest.raises(Error), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert LogLeaf.objects.count() == 4 and LogNode.objects.count() == 3


@pytest.mark.django_db
def test_ipv6_and_odd_detail_keys_keep_the_log_valid(rf):
    from django.http import HttpResponse

    def serve(remote_addr, action, **kwargs):
        """A request through the middleware: its id and address reach the event."""

        def view(request):
            audit.record(None, action, **kwargs)
            return HttpResponse()

        response = audit.RequestIdMiddleware(view)(rf.get("/", REMOTE_ADDR=remote_addr))
        return response["X-Request-ID"]

    request_id = serve("2001:DB8:0:0:0:0:0:1", "test.ipv6", detail={10: 1, 9: 2})
    serve("1.2.3.4:5678", "test.port")
    event = AccessEvent.objects.get(action="test.ipv6")
    assert (event.ip, event.request_id) == ("2001:db8::1", request_id)
    assert AccessEvent.objects.get(action="test.port").ip is None
    audit.record(None, "test.outside_a_request")  # a job: no request id, no address
    outside = AccessEvent.objects.get(action="test.outside_a_request")
    assert (outside.ip, outside.request_id) == (None, "")
    assert audit.verify() == (3, None)


# --- Concurrent writers (PostgreSQL) -----------------------------------------------------------
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need a server database (CI runs this on PostgreSQL)")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_threads_writing_at_once_all_reach_the_tree():
    postgresql_only()
    errors = []

    def writer(n):
        try:
            for i in range(15):
                with transaction.atomic():
                    audit.record(None, "test.concurrent", detail={"writer": n, "i": i})
            transparency.integrate()  # sequencers racing the writers and each other
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AccessEvent.objects.count() == 90
    assert audit.verify() == (90, None)
    assert list(LogLeaf.objects.order_by("position").values_list("position", flat=True)) == list(
        range(90)
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_event_committing_after_a_later_one_takes_the_next_position():
    postgresql_only()
    written, release, done = threading.Event(), threading.Event(), []

    def slow_writer():
        try:
            with transaction.atomic():
                done.append(audit.record(None, "test.slow").seq)
                written.set()
                release.wait(10)
        finally:
            connections.close_all()

    slow = threading.Thread(target=slow_writer)
    slow.start()
    written.wait(10)
    fast = audit.record(None, "test.fast")  # a higher seq, committed first
    transparency.integrate()
    assert LogLeaf.objects.get(event_id=fast.seq).position == 0

    def waited_for(seq):  # (seq values below it were taken by earlier tests: holes too)
        return any(first <= seq <= last for first, last, _ in LogState.objects.get().holes)

    assert waited_for(done[0])
    release.set()
    slow.join()
    transparency.integrate()
    assert LogLeaf.objects.get(event_id=done[0]).position == 1
    assert not waited_for(done[0])
    assert audit.verify() == (2, None)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_no_lock_order_deadlock_between_a_row_lock_and_the_log():
    """Before: A locked a row then waited for the log's lock; B held the log's lock (its
    event written) and waited for the row: a deadlock. Now writers share no lock."""
    postgresql_only()
    from casework.models import User

    user = User.objects.create_user(username="lock-target", password="x" * 20)
    a_locked, b_wrote, errors = threading.Event(), threading.Event(), []

    def a():
        try:
            with transaction.atomic():
                User.objects.select_for_update().get(pk=user.pk)
                a_locked.set()
                b_wrote.wait(5)
                audit.record(None, "test.a")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def b():
        try:
            a_locked.wait(5)
            with transaction.atomic():
                audit.record(None, "test.b")
                b_wrote.set()
                User.objects.select_for_update().get(pk=user.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert set(AccessEvent.objects.values_list("action", flat=True)) == {"test.a", "test.b"}
