import datetime
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from casework import vault
from casework.models import BlindIndexEntry, DataKey, Job
from tests.base import at_once, run_benchmark
from tests.vaulttest.models import Diary, Person

pytestmark = pytest.mark.django_db
CANARY = "Zarathustra-Canary-7Q2X"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keyfile(tmp_path, settings, monkeypatch):
    """A keyring in a file of its own, so commands can change it."""
    path = tmp_path / "keyring.json"
    vault.write_keyring(vault.Keyring.generate(), path)
    monkeypatch.delenv("PASSAGE_KEYRING_JSON")
    settings.PASSAGE_KEYRING = str(path)
    vault.reset_keyring()
    yield path
    vault.reset_keyring()


def raw(table, column, pk):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {table} WHERE id = %s",
            [pk.hex if connection.vendor == "sqlite" else pk],
        )
        value = cursor.fetchone()[0]
    return None if value is None else bytes(value)


def fresh(person):
    return Person.objects.select_related("data_key").get(pk=person.pk)


def test_values_round_trip_and_raw_columns_hold_no_plaintext():
    p = Person.objects.create(
        name=CANARY,
        aliases=["Ahmad", "احمد"],
        story="Left in 2019. " + CANARY,
        born=datetime.date(1990, 2, 3),
        photo=b"\x00\x01" + CANARY.encode(),
        extra={"k": 0},
    )
    q = fresh(p)
    assert (q.name, q.aliases, q.born, q.photo, q.extra) == (
        CANARY,
        ["Ahmad", "احمد"],
        datetime.date(1990, 2, 3),
        b"\x00\x01" + CANARY.encode(),
        {"k": 0},
    )
    for column in ("name", "aliases", "story", "born", "photo"):
        blob = raw("vaulttest_person", column, p.pk)
        assert blob[:1] == vault.VERSION
        assert CANARY.encode() not in blob and b"Ahmad" not in blob


@pytest.mark.parametrize("value", ["", "0", 0, False, [], {}, 0.0])
def test_falsy_values_round_trip_and_are_not_null(value):
    field = "name" if isinstance(value, str) else "extra"
    p = Person.objects.create(**{field: value})
    q = fresh(p)
    assert getattr(q, field) == value and type(getattr(q, field)) is type(value)
    assert raw("vaulttest_person", field, p.pk) is not None


def test_none_stays_null():
    p = Person.objects.create(name=None)
    assert raw("vaulttest_person", "name", p.pk) is None
    assert fresh(p).name is None
    assert Person.objects.filter(name__isnull=True).count() == 1


def test_every_write_uses_a_fresh_nonce():
    p = Person.objects.create(name="same")
    first = raw("vaulttest_person", "name", p.pk)
    p.name = "same"
    p.save()
    assert raw("vaulttest_person", "name", p.pk) != first


def _copy(column_from, pk_from, column_to, pk_to):
    blob = raw("vaulttest_person", column_from, pk_from)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE vaulttest_person SET {column_to} = %s WHERE id = %s",
            [blob, pk_to.hex if connection.vendor == "sqlite" else pk_to],
        )


def test_ciphertext_moved_to_another_row_fails():
    # Two rows under the same data key: only the associated data tells them apart.
    p = Person.objects.create(name="Alice")
    a = Diary.objects.create(person=p, entry="first entry")
    b = Diary.objects.create(person=p, entry="second entry")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE vaulttest_diary SET entry = %s WHERE id = %s",
            [
                raw("vaulttest_diary", "entry", a.pk),
                b.pk.hex if connection.vendor == "sqlite" else b.pk,
            ],
        )
    with pytest.raises(vault.DecryptionError):
        Diary.objects.get(pk=b.pk).entry


def test_ciphertext_moved_to_another_field_fails():
    p = Person.objects.create(name="Alice", story="a story")
    _copy("name", p.pk, "story", p.pk)
    with pytest.raises(vault.DecryptionError):
        fresh(p).story


def test_a_flipped_bit_fails_closed():
    p = Person.objects.create(name="Alice")
    blob = bytearray(raw("vaulttest_person", "name", p.pk))
    blob[-5] ^= 0x01
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE vaulttest_person SET name = %s WHERE id = %s",
            [bytes(blob), p.pk.hex if connection.vendor == "sqlite" else p.pk],
        )
    q = fresh(p)
    with pytest.raises(vault.DecryptionError):
        q.name
    assert q.__dict__.get("_plain_name") is None  # nothing half-read is kept


def test_a_wrong_key_fails_closed(monkeypatch):
    p = Person.objects.create(name="Alice")
    ring = vault.keyring()
    wrong = vault.Keyring(
        keks={ring.active_kek_id: os.urandom(32)},
        index_key=ring.index_key,
        audit_key=ring.audit_key,
    )
    monkeypatch.setattr(vault, "_keyring_cache", wrong)
    with pytest.raises(vault.DecryptionError):
        fresh(p).name


def test_a_missing_kek_raises_a_clear_error(monkeypatch):
    p = Person.objects.create(name="Alice")
    ring = vault.keyring()
    other = vault.Keyring(
        keks={"kek-other": os.urandom(32)}, index_key=ring.index_key, audit_key=ring.audit_key
    )
    monkeypatch.setattr(vault, "_keyring_cache", other)
    with pytest.raises(vault.KeyringError, match="not in the keyring"):
        fresh(p).name


def test_encrypted_fields_refuse_lookups_ordering_and_bulk_writes():
    Person.objects.create(name="Alice")
    with pytest.raises(vault.EncryptedFieldError):
        list(Person.objects.filter(name="Alice"))
    with pytest.raises(vault.EncryptedFieldError):
        list(Person.objects.filter(name__icontains="Ali"))
    with pytest.raises(vault.EncryptedFieldError):
        list(Person.objects.exclude(story__startswith="x"))
    with pytest.raises(vault.EncryptedFieldError):
        Person.objects.order_by("-name")
    with pytest.raises(vault.EncryptedFieldError):
        Diary.objects.order_by("person__name")
    with pytest.raises(vault.EncryptedFieldError):
        Person.objects.update(name="Mallory")
    with pytest.raises(vault.EncryptedFieldError):
        Person.objects.bulk_update(list(Person.objects.all()), ["name"])
    assert Person.objects.order_by("label").count() == 1  # plain fields still work


def test_values_never_decrypt():
    Person.objects.create(name=CANARY)
    row = Person.objects.values("name").get()
    assert CANARY.encode() not in bytes(row["name"])


def test_children_use_their_owners_key():
    p = Person.objects.create(name="Alice")
    d = Diary.objects.create(person=p, entry=CANARY)
    assert Diary.objects.get(pk=d.pk).entry == CANARY
    assert CANARY.encode() not in raw("vaulttest_diary", "entry", d.pk)


# --- Normalisation and blind indexes --------------------------------------------------------
def test_normalisation_unifies_persian_arabic_and_latin_variants():
    assert vault.normalise("مُحَمَّد كريمي") == vault.normalise("محمد کریمی")
    assert vault.normalise("José García") == vault.normalise("jose garcia")
    assert vault.normalise("Jean-Pierre  O’Neil") == "jean pierre oneil"
    assert vault.normalise("علی\u200cرضا") == vault.normalise("علی رضا")
    assert vault.normalise("\u202eMaryam\u202c") == "maryam"
    assert vault.normalise("فاطمة") == vault.normalise("فاطمه")
    assert vault.normalise("آرش") == vault.normalise("ارش")
    assert vault.normalise("رضـــا") == "رضا"
    assert vault.normalise("۱۹۸۵ ١٩٨٥") == "1985 1985"
    assert vault.normalise("ﻣﺤﻤﺪ") == vault.normalise("محمد")  # presentation forms
    assert vault.normalise("\x00Ali\u200d") == "ali"


@hsettings(max_examples=300, deadline=None)
@given(st.text())
def test_normalisation_is_idempotent(text):
    once = vault.normalise(text)
    assert vault.normalise(once) == once


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(
        alphabet=st.one_of(
            st.characters(),
            st.sampled_from(["\u202e", "\u202d", "\u200c", "\u200d", "\x00", "ي", "ی", "\ufeff"]),
        )
    )
)
def test_any_text_round_trips(text):
    p = Person.objects.create(name=text, story=text)
    q = fresh(p)
    assert q.name == text and q.story == text


def test_search_finds_persian_and_latin_variants_by_whole_name_and_token():
    target = Person.objects.create(name="محمد کریمی", aliases=["José García", "Brother Light"])
    Person.objects.create(name="Someone Else", aliases=[])
    names = lambda term: [p.pk for p in vault.search(Person.objects.all(), "vaulttest.names", term)]  # noqa: E731
    assert names("مُحَمَّد كريمي") == [target.pk]
    assert names("كريمي") == [target.pk]
    assert names("jose garcia") == [target.pk]
    assert names("GARCÍA") == [target.pk]
    assert names("brother light") == [target.pk]
    assert names("light garcia") == [target.pk]  # every token present
    assert names("Nobody") == []
    assert names("   ") == []


def test_index_is_updated_on_save_and_holds_no_plaintext():
    p = Person.objects.create(name="Alice Smith")
    p.name = "Alice Jones"
    p.save()
    assert vault.search(Person.objects.all(), "vaulttest.names", "smith") == []
    assert [x.pk for x in vault.search(Person.objects.all(), "vaulttest.names", "jones")] == [p.pk]
    values = list(BlindIndexEntry.objects.values_list("value", flat=True))
    index = Person.blind_indexes[0]
    assert all(0 <= v < 2**index.bits for v in values)


def test_plan_bits_keeps_false_matches_between_two_and_root_r():
    for rows in (100, 1000, 100_000, 10**6, 10**8):
        bits = vault.plan_bits(rows)
        expected = rows / 2**bits
        assert 2 <= expected <= rows**0.5, (rows, bits, expected)


def test_unrelated_names_collide_only_at_the_planned_rate():
    index = vault.BlindIndex("rate.test", ("name",), rows=4096)  # 11 bits
    key = index.key()
    rng = random.Random(7)
    stored = {index.hash(f"stored-{i}", "w", key) for i in range(4096)}
    probes = [index.hash(f"probe-{rng.random()}", "w", key) for _ in range(2000)]
    rate = sum(p in stored for p in probes) / len(probes)
    planned = 1 - (1 - 2**-index.bits) ** 4096  # chance a probe hits any stored value
    assert planned * 0.7 < rate < planned * 1.3, (rate, planned)


def test_false_candidates_are_dropped_by_confirmation(monkeypatch):
    for i in range(30):
        Person.objects.create(name=f"Person {i}")
    # A 1-bit index: nearly everything is a candidate; confirmation must filter.
    monkeypatch.setattr(vault.BlindIndex, "bits", property(lambda self: 1))
    vault.reindex()
    found = vault.search(Person.objects.all(), "vaulttest.names", "person 7")
    assert [p.name for p in found] == ["Person 7"]


# --- Shredding ---------------------------------------------------------------------------------
def test_a_shredded_record_cannot_be_read_with_any_key():
    p = Person.objects.create(name=CANARY, aliases=["x"])
    Diary.objects.create(person=p, entry="secret")
    vault.shred(p)
    q = fresh(p)
    assert q.is_shredded
    with pytest.raises(vault.Shredded):
        q.name
    key = DataKey.objects.get(pk=p.data_key_id)
    assert bytes(key.wrapped) == b"" and key.kek_id == ""
    for kek_id in vault.keyring().keks:
        with pytest.raises((vault.DecryptionError, vault.KeyringError)):
            vault.unwrap_dek(b"", purpose="vaulttest", owner_id=p.pk, kek_id=kek_id)
    assert not BlindIndexEntry.objects.filter(data_key_id=p.data_key_id).exists()
    assert vault.search(Person.objects.all(), "vaulttest.names", CANARY) == []


def test_shredding_can_keep_index_tombstones():
    p = Person.objects.create(name="Tomb Stone")
    vault.shred(p, keep_index=True)
    assert BlindIndexEntry.objects.filter(data_key_id=p.data_key_id).exists()
    assert vault.search(Person.objects.all(), "vaulttest.names", "tomb stone") == []


def test_views_show_a_clear_page_for_shredded_and_broken_records(rf):
    from casework.security import VaultErrorMiddleware

    middleware = VaultErrorMiddleware(lambda r: None)
    request = rf.get("/")
    request.resolver_match = None
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    gone = middleware.process_exception(request, vault.Shredded("x"))
    assert gone.status_code == 410 and b"shredded" in gone.content
    broken = middleware.process_exception(request, vault.DecryptionError("x"))
    assert broken.status_code == 500 and b"cannot be opened" in broken.content


# --- Files -------------------------------------------------------------------------------------
def test_files_are_encrypted_with_random_names(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    p = Person.objects.create(name="x")
    data = b"%PDF scanned consent form of " + CANARY.encode()
    name = vault.save_file(p.data_key, data)
    path = next(tmp_path.rglob(name))
    assert CANARY.encode() not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    assert vault.open_file(p.data_key, name) == data
    other = Person.objects.create(name="y")
    with pytest.raises(vault.DecryptionError):
        vault.open_file(other.data_key, name)
    with pytest.raises(vault.DecryptionError):
        vault.open_file(p.data_key, "../../etc/passwd")


# --- Rotation -----------------------------------------------------------------------------------
def test_rotation_rewraps_everything_and_the_old_kek_can_be_retired(keyfile):
    people = [Person.objects.create(name=f"P{i}", story="s") for i in range(7)]
    old = vault.keyring().active_kek_id
    with pytest.raises(CommandError, match="active"):
        call_command("retire_key", old)
    call_command("keyring", "add", stdout=open(os.devnull, "w"))
    new = vault.keyring().active_kek_id
    assert new != old
    with pytest.raises(CommandError, match="still wraps 7"):
        call_command("retire_key", old)
    call_command("rotate_keys", "--batch-size", "3", stdout=open(os.devnull, "w"))
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {new}
    job = Job.objects.get(kind="rotate_keys")
    assert (job.status, job.done, job.total) == ("done", 7, 7)
    call_command("retire_key", old, stdout=open(os.devnull, "w"))
    assert old not in json.loads(keyfile.read_text())["keks"][0]["id"]
    assert [k["id"] for k in json.loads(keyfile.read_text())["keks"]] == [new]
    for p in people:
        assert fresh(p).name == p.name
    before = list(DataKey.objects.order_by("pk").values_list("wrapped", flat=True))
    assert vault.rotate() == 0  # a second run changes nothing
    assert list(DataKey.objects.order_by("pk").values_list("wrapped", flat=True)) == before


def test_an_interrupted_rotation_resumes(keyfile):
    for i in range(10):
        Person.objects.create(name=f"P{i}")
    call_command("keyring", "add", stdout=open(os.devnull, "w"))
    new = vault.keyring().active_kek_id

    def crash_after_first_batch(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vault.rotate(batch_size=4, progress=crash_after_first_batch)
    assert DataKey.objects.filter(kek_id=new).count() == 4  # the first batch committed
    assert vault.rotate(batch_size=4) == 6
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {new}
    assert all(fresh(p).name.startswith("P") for p in Person.objects.all())


def test_rotation_runs_as_a_background_job_with_progress(keyfile):
    for i in range(3):
        Person.objects.create(name=f"P{i}")
    call_command("keyring", "add", stdout=open(os.devnull, "w"))
    call_command("rotate_keys", "--background", stdout=open(os.devnull, "w"))  # eager in tests
    job = Job.objects.get(kind="rotate_keys")
    assert (job.status, job.done, job.total, job.percent) == ("done", 3, 3, 100)


def test_rotation_writes_each_batch_at_once_and_keeps_every_data_key(keyfile):
    people = [Person.objects.create(name=f"P{i}", story="s") for i in range(10)]
    gone = Person.objects.create(name="shredded")
    vault.shred(gone)
    before = {k.pk: k.dek() for k in DataKey.objects.filter(shredded_at__isnull=True)}
    call_command("keyring", "add", stdout=open(os.devnull, "w"))
    new = vault.keyring().active_kek_id
    seen = []
    assert vault.rotate(batch_size=4, progress=lambda done, total: seen.append((done, total))) == 10
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]
    live = list(DataKey.objects.filter(shredded_at__isnull=True))
    assert {k.kek_id for k in live} == {new}
    # The same data keys, wrapped anew: every value still opens.
    assert {k.pk: k.dek() for k in live} == before
    assert [fresh(p).name for p in people] == [f"P{i}" for i in range(10)]
    # One statement per batch: each batch's rows carry that batch's time.
    assert len({k.rotated_at for k in live}) == 3 and None not in {k.rotated_at for k in live}
    shredded = DataKey.objects.get(pk=gone.data_key_id)
    assert (shredded.kek_id, bytes(shredded.wrapped), shredded.rotated_at) == ("", b"", None)


def test_rotation_with_nothing_to_do_writes_nothing(keyfile):
    Person.objects.create(name="a")
    seen = []
    assert vault.rotate(progress=lambda done, total: seen.append((done, total))) == 0
    assert seen == [(0, 0)]
    assert DataKey.objects.get().rotated_at is None


@pytest.fixture
def pg_threads(django_db_serialized_rollback, transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections need PostgreSQL (CI's second pass)")


def test_rotation_skips_keys_another_transaction_holds_and_a_rerun_takes_them(pg_threads, keyfile):
    import threading

    from django.db import transaction

    for i in range(12):
        Person.objects.create(name=f"P{i}")
    call_command("keyring", "add", stdout=open(os.devnull, "w"))
    new = vault.keyring().active_kek_id
    held = sorted(DataKey.objects.values_list("pk", flat=True))[3:6]
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                list(DataKey.objects.select_for_update().filter(pk__in=held))
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        # Neither waits for the held keys nor fails on them: the rest is done.
        assert vault.rotate(batch_size=4) == 9
        assert set(DataKey.objects.exclude(kek_id=new).values_list("pk", flat=True)) == set(held)
    finally:
        release.set()
        holder.join(30)
    assert vault.rotate(batch_size=4) == 3
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {new}


def test_two_rotations_at_once_share_the_keys_and_rewrap_each_once(
    pg_threads, keyfile, monkeypatch
):
    import time

    from casework.vault import upkeep

    for i in range(20):
        Person.objects.create(name=f"P{i}")
    before = {k.pk: k.dek() for k in DataKey.objects.all()}
    call_command("keyring", "add", stdout=open(os.devnull, "w"))
    new = vault.keyring().active_kek_id
    real, written = upkeep._rewrap, []

    def slow_rewrap(batch):
        time.sleep(0.2)  # holds its batch's locks while the other run takes the next
        n = real(batch)
        written.append(n)
        return n

    monkeypatch.setattr(upkeep, "_rewrap", slow_rewrap)
    done = at_once(lambda: vault.rotate(batch_size=3))
    assert sum(done) == 20 and min(done) > 0  # both worked, no key twice
    assert sum(written) == 20
    keys = list(DataKey.objects.all())
    assert {k.kek_id for k in keys} == {new}
    assert {k.pk: k.dek() for k in keys} == before


def test_reindex_after_a_new_index_key(keyfile):
    p = Person.objects.create(name="Reza Tehrani")
    call_command("keyring", "replace-index-key", stdout=open(os.devnull, "w"))
    assert vault.search(Person.objects.all(), "vaulttest.names", "reza") == []
    call_command("reindex", stdout=open(os.devnull, "w"))
    assert [x.pk for x in vault.search(Person.objects.all(), "vaulttest.names", "reza")] == [p.pk]


def test_keyring_status_counts_data_keys_per_kek(keyfile, capsys):
    Person.objects.create(name="a")
    Person.objects.create(name="b")
    call_command("keyring", "status")
    out = capsys.readouterr().out
    active = vault.keyring().active_kek_id
    assert f"{active}" in out and "2  (active)" in out


def test_a_missing_keyring_stops_the_app_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PASSAGE_KEYRING_JSON"}
    env.update(
        DEBUG="1", PASSAGE_KEYRING=str(tmp_path / "absent.json"), PASSAGE_VAR_DIR=str(tmp_path)
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "cannot be read" in result.stderr and "keyring generate" in result.stderr
    (tmp_path / "bad.json").write_text("{not json")
    env["PASSAGE_KEYRING"] = str(tmp_path / "bad.json")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "not valid" in result.stderr


def database_bytes(tmp_path) -> bytes:
    """Everything the database holds, as a thief of the file or a dump would see it."""
    if connection.vendor == "sqlite":
        copy = tmp_path / "copy.sqlite3"
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM INTO '{copy}'")
        return copy.read_bytes()
    s = connection.settings_dict
    result = subprocess.run(
        [
            "pg_dump",
            "-h",
            s["HOST"] or "127.0.0.1",
            "-p",
            str(s["PORT"] or 5432),
            "-U",
            s["USER"] or "postgres",
            s["NAME"],
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PGPASSWORD": s["PASSWORD"] or ""},
    )
    return result.stdout


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_no_canary_in_the_database_file_or_dump(tmp_path):
    p = Person.objects.create(
        name=CANARY, aliases=[CANARY, "کاناری"], story=f"Lives at {CANARY} street"
    )
    Diary.objects.create(person=p, entry=CANARY)
    data = database_bytes(tmp_path)
    assert len(data) > 10_000  # a real dump, not an empty string
    for needle in (CANARY, CANARY.lower(), vault.normalise(CANARY), "کاناری"):
        assert needle.encode() not in data, needle


def test_benchmark_vault_section_runs_in_a_scratch_database(tmp_path):
    rows = run_benchmark(tmp_path, "vault")
    scan = rows["name search, decrypt-and-scan (5,000 names)"]
    assert scan["ratio"] is not None and scan["value"] > 0
    assert any(name.startswith("DEK re-wraps") for name in rows)
    # Rotation against the same unwrap and wrap without the database, in the same run.
    rotation, crypto = rows["DEK re-wraps (rotate_keys)"], rows["DEK unwrap + wrap, crypto only"]
    assert rotation["unit"] == crypto["unit"] == "keys/s"
    assert rotation["baseline"] == crypto["value"] and rotation["ratio"] > 0


def test_serializers_emit_no_encrypted_values():
    from django.core import serializers

    Person.objects.create(name=CANARY, label="visible")
    data = serializers.serialize("json", Person.objects.all())
    assert CANARY not in data and "visible" in data
    assert '"name"' not in data


def test_ordering_on_an_encrypted_field_is_a_system_check_error():
    class Meta:
        app_label = "vaulttest"
        ordering = ["name"]

    attrs = {"__module__": __name__, "Meta": Meta, "name": vault.EncryptedCharField()}
    bad = type("BadOrdering", (vault.VaultModel,), attrs)
    assert any(e.id == "passage.E002" for e in bad.check())
