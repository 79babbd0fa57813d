"""`python manage.py benchmark`: speed as ratios against a plain baseline measured in the
same run, in a scratch database created and dropped around the run.

Sections (each registers itself in SECTIONS):
- `vault`: field encryption, key rotation against the crypto-only rate, name search
  through the blind index against decrypting every name;
- `growth`: every page at 1,000, 10,000 and 100,000 cases against plain Django over the
  same data, through the same stack (tooling/bench_pages.py); `cases`, `families` and
  `queues` run some of its pages only;
- `accesslog`: access-log writes per second with 1 and 8 writers, against plain inserts
  (PostgreSQL only);
- `load`: the mixed load and 200 family submissions at once against gunicorn, Passage
  and the plain stack in the same server (tooling/load.py; PostgreSQL only);
- `contacts`: the review warnings on long hostile messages.
The baseline (tooling/plain.py) is served under /plain/ by tooling/urls.py, which the run
puts in place of the project's URL conf: one resolver, one middleware stack.
"""

import contextlib
import datetime
import json
import os
import random
import re
import secrets
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.core import signing
from django.db import close_old_connections, connection, reset_queries, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from casework import vault

from .seeding import fake_names

SECTIONS = {}
GROUPS = {}  # parts of a section, runnable by name, not run by default


def section(name):
    def register(func):
        SECTIONS[name] = func
        return func

    return register


def timed(func, repeat=5) -> float:
    """Median wall time of `func()` over `repeat` runs, in seconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# --- Measuring a page against its baseline ----------------------------------------------------
TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT)\b", re.I
)


def count_statements(captured) -> tuple[int, int]:
    """(statements, transaction control): BEGIN, COMMIT, ROLLBACK and savepoints apart."""
    control = sum(1 for q in captured if TRANSACTION_CONTROL.match(q["sql"]))
    return len(captured) - control, control


@dataclass
class Sample:
    seconds: float  # median
    statements: int
    transaction_control: int
    size: int  # bytes of the page (0: not a page)


def compare(ours, theirs, check=None, prepare=None, *, repeat: int) -> tuple[Sample, Sample]:
    """Passage's call and the baseline's: one warm-up call each (templates, the session's
    last-seen time, as a running server would have them), one counted (and checked), then
    `repeat` timed calls, alternating, so a busy machine slows both alike. With `prepare`
    (a pair of functions), each call gets a fresh argument made before its timing starts."""
    calls = (ours, theirs)
    makers = prepare or (None, None)

    def call(k):
        arg = (makers[k](),) if makers[k] else ()
        start = time.perf_counter()
        result = calls[k](*arg)
        return time.perf_counter() - start, result

    counted = []
    for k in (0, 1):
        call(k)
        # With DEBUG on every query is logged, and the log is a bounded deque: once full
        # its length stops growing and the context would count nothing. Empty it first.
        reset_queries()
        with CaptureQueriesContext(connection) as queries:
            _seconds, result = call(k)
        status = getattr(result, "status_code", 200)
        if status != 200:
            raise RuntimeError(f"benchmark page answered {status}")
        if check:
            check(result)
        size = len(result.content) if hasattr(result, "content") else 0
        counted.append((*count_statements(queries.captured_queries), size))
    times = ([], [])
    for _ in range(repeat):
        for k in (0, 1):
            times[k].append(call(k)[0])
    return tuple(Sample(statistics.median(times[k]), *counted[k]) for k in (0, 1))


def verified_client(user) -> Client:
    """A client logged in as `user` with a confirmed device verified in the session."""
    from django_otp import DEVICE_ID_SESSION_KEY

    from casework.models import VaultTOTPDevice

    device, _ = VaultTOTPDevice.objects.get_or_create(
        user=user, confirmed=True, defaults={"name": "benchmark"}
    )
    # 127.0.0.1: the development profile's ALLOWED_HOSTS (run() sets up no test
    # environment, so "testserver" is not allowed).
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


# --- The report ---------------------------------------------------------------------------------
class Report:
    def __init__(self, out):
        self.out = out
        self.rows = []
        self.database = ""  # what the sections ran on, for the README's tables

    def add(self, section, name, value, unit, baseline=None, note="", **extra):
        ratio = (value / baseline) if baseline else None
        self.rows.append(
            {
                "section": section,
                "name": name,
                "value": value,
                "unit": unit,
                "ratio": ratio,
                "baseline": baseline,
                "note": note,
                **extra,
            }
        )
        ratio_s = f"{ratio:8.2f}x" if ratio is not None else " " * 9
        self.out.write(f"  {name:<62}{value:>14,.1f} {unit:<10}{ratio_s}  {note}")

    def skip(self, section, name, why):
        self.rows.append(
            {"section": section, "name": name, "value": None, "unit": "skipped", "ratio": None,
             "note": why}
        )  # fmt: skip
        self.out.write(f"  {name:<62}{'skipped':>14}  {why}")

    def pair(self, section, label, n, ours: Sample, theirs: Sample):
        """A page at a size: its time against the baseline's, and its statements."""
        kb = (
            f"; page {ours.size / 1024:.1f} kB, plain {theirs.size / 1024:.1f} kB"
            if ours.size
            else ""
        )
        common = {"page": label, "cases": n}
        self.add(
            section,
            f"{label} ({n:,} cases)",
            ours.seconds * 1000,
            "ms median",
            theirs.seconds * 1000,
            f"plain Django: {theirs.seconds * 1000:.1f} ms{kb}",
            **common,
            bytes=ours.size,
            baseline_bytes=theirs.size,
        )
        self.add(
            section,
            f"{label} ({n:,} cases), statements",
            ours.statements,
            "statements",
            theirs.statements,
            f"plain Django: {theirs.statements}; transaction control apart: "
            f"{ours.transaction_control}, plain {theirs.transaction_control}",
            **common,
            transaction_control=ours.transaction_control,
            baseline_transaction_control=theirs.transaction_control,
        )

    def growth_table(self, labels, sizes):
        """Every page at every size: ms median and the ratio to plain Django, statements
        (plain's in brackets)."""
        cell = {}
        for row in self.rows:
            if row.get("page") and row["unit"] in ("ms median", "statements"):
                cell[(row["page"], row["cases"], row["unit"])] = row
        width = 26
        self.out.write("\n  growth: ms median (x plain Django), statements (plain), "
                       "transaction control not counted")  # fmt: skip
        self.out.write("  " + f"{'page':<38}" + "".join(f"{n:>{width},}" for n in sizes))
        for label in labels:
            line = f"  {label:<38}"
            for n in sizes:
                t, s = cell.get((label, n, "ms median")), cell.get((label, n, "statements"))
                text = ""
                if t and s:
                    text = (f"{t['value']:.1f} ({t['ratio']:.1f}x) {s['value']:.0f} "
                            f"({s['value'] / s['ratio'] if s['ratio'] else 0:.0f})")  # fmt: skip
                line += f"{text:>{width}}"
            self.out.write(line)

    def json(self):
        return json.dumps(self.rows, indent=2, default=str)

    def markdown(self) -> str:
        """The README's tables, from this run: the growth table (each cell Passage's
        median, plain Django's, the ratio, then statements, plain's in brackets), and
        every other measure, under the date and the machine they were measured on."""
        import platform

        lines = [
            f"Measured on {datetime.date.today():%Y-%m-%d} with `manage.py benchmark` "
            f"({', '.join(dict.fromkeys(r['section'] for r in self.rows))}): "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, {self.database}.",
            "",
        ]
        growth = [r for r in self.rows if r.get("page") and r["unit"] == "ms median"]
        if growth:
            sizes = sorted({r["cases"] for r in growth})
            counts = {(r["page"], r["cases"]): r for r in self.rows if r["unit"] == "statements"}
            lines += [
                "| page | " + " | ".join(f"{n:,} cases" for n in sizes) + " |",
                "|---|" + "---|" * len(sizes),
            ]
            for label in dict.fromkeys(r["page"] for r in growth):
                cells = []
                for n in sizes:
                    t = next((r for r in growth if r["page"] == label and r["cases"] == n), None)
                    c = counts.get((label, n))
                    cells.append(
                        f"{t['value']:.1f} ms vs {t['baseline']:.1f} ms = **{t['ratio']:.1f}×**; "
                        f"{c['value']:.0f} statements ({c['baseline']:.0f})"
                        if t and c
                        else ""
                    )
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
        rest = [r for r in self.rows if not r.get("page") and r["unit"] != "skipped"]
        if rest:
            lines += [
                "| section | measure | value | baseline | ratio | note |",
                "|---|---|---|---|---|---|",
            ]
            for r in rest:
                base = f"{r['baseline']:,.1f}" if r["baseline"] is not None else ""
                ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else ""
                lines.append(
                    f"| {r['section']} | {r['name']} | {r['value']:,.1f} {r['unit']} | {base} "
                    f"| {ratio} | {r['note']} |"
                )
        for r in self.rows:
            if r["unit"] == "skipped":
                lines.append(f"\n{r['name']}: skipped ({r['note']}).")
        return "\n".join(lines) + "\n"


# --- The public form's data and a family's request -------------------------------------------
def contact_form_data() -> dict:
    """A valid submission, started a minute ago (so neither the timing check nor the
    honeypot drops it)."""
    from families.forms import SIGNER_SALT

    return {
        "requester_name": "Parvin Rahimi",
        "relationship": "mother",
        "requester_country": "Iran",
        "requester_email": "parvin.demo@example.org",
        "requester_phone": "+44 7700 900311",
        "sought_names": "سارا رحیمی\nSara Rahimi",
        "sought_birth_year": "1990",
        "last_place": "Shiraz",
        "last_year": "2012",
        "other_details": "",
        "message": "We love you and think of you every day. " * 5,
        "consent_processing": "on",
        "consent_nothing_shared": "on",
        "consent_retention": "on",
        "website": "",
        "started": signing.dumps(time.time() - 60, salt=SIGNER_SALT),
    }


# The requester of the timed matching: the same family each time (a family writing again
# is no hunting pattern, so screening flags nothing).
REQUEST = {
    "requester_name": "Parvin Rahimi",
    "relationship": "mother",
    "requester_country": "Iran",
    "requester_email": "",
    "requester_phone": "+44 7700 900311",
    "last_place": "",
    "last_year": None,
    "other_details": "",
    "message": "We love you and think of you every day.",
}


# --- vault ---------------------------------------------------------------------------------------
class BenchName(vault.DataKeyOwner, vault.VaultModel):
    """A person's name under their own data key, as a case will hold it (scratch table)."""

    vault_purpose = "benchmark"
    name = vault.EncryptedCharField()
    blind_indexes = [vault.BlindIndex("benchmark.names", ("name",), rows=100_000)]

    class Meta:
        app_label = "casework"
        managed = False
        db_table = "benchmark_name"


@section("vault")
def vault_section(report, *, names=100_000, quick=False, **_options):
    _field_throughput(report, n=2_000 if quick else 20_000)
    _rotation(report, n=2_000 if quick else 100_000)
    _index_against_scan(report, n=min(names, 5_000) if quick else names)


def _field_throughput(report, n):
    dek = bytes(32)
    samples = {
        "short text": (vault.EncryptedCharField(), "Maryam Karimi-Tehrani"),
        "text (1 KB)": (vault.EncryptedTextField(), "سلام " * 200),
        "date": (vault.EncryptedDateField(), datetime.date(1987, 6, 5)),
        "JSON (aliases)": (vault.EncryptedJSONField(), ["Brother Light", "نور", "M. K."]),
        "binary (4 KB)": (vault.EncryptedBinaryField(), bytes(4096)),
    }
    for label, (field, value) in samples.items():
        _measure_field(report, label, field, value, dek, n)


def _measure_field(report, label, field, value, dek, n):
    aad = vault.field_aad("t", "f", uuid.uuid4())
    blob = vault.encrypt(dek, field.encode(value), aad)
    baseline = timed(lambda: [field.decode(field.encode(value)) for _ in range(n)])
    enc = timed(lambda: [vault.encrypt(dek, field.encode(value), aad) for _ in range(n)])
    dec = timed(lambda: [field.decode(vault.decrypt(dek, blob, aad)) for _ in range(n)])
    for action, seconds in (("encrypt", enc), ("decrypt", dec)):
        report.add(
            "vault",
            f"{action} {label}",
            n / seconds,
            "ops/s",
            None,
            f"{seconds / baseline:.1f}x the plain encode/decode",
        )


def _rotation(report, n):
    """`n` data keys under the active KEK; a new KEK becomes the active one (as `keyring
    add` leaves it) and rotate() re-wraps them all, with its default batch size; against
    the same unwrap and wrap of each key in a loop, without the database."""
    from casework.models import DataKey

    purpose = "benchmark-rewrap"
    for start in range(0, n, 5_000):
        owners = [uuid.uuid4() for _ in range(min(5_000, n - start))]
        DataKey.objects.bulk_create(
            DataKey(purpose=purpose, owner_id=owner, kek_id=kek, wrapped=wrapped)
            for owner in owners
            for kek, wrapped in [
                vault.wrap_dek(secrets.token_bytes(32), purpose=purpose, owner_id=owner)
            ]
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE casework_datakey")  # as autovacuum would have
    rows = list(
        DataKey.objects.filter(purpose=purpose).values_list(
            "purpose", "owner_id", "kek_id", "wrapped"
        )
    )
    ring = vault.keyring()
    new = vault.Keyring(
        keks={f"kek-benchmark-{secrets.token_hex(3)}": secrets.token_bytes(32), **ring.keks},
        index_key=ring.index_key,
        audit_key=ring.audit_key,
    )
    with keyring_source(new):
        vault.reset_keyring()  # the new ring is read, and becomes the database's
        try:
            crypto, done, rate, second = _rotate_and_time(rows)
        finally:
            with connection.cursor() as cursor:  # no ORM cascade: scratch tables may be gone
                cursor.execute("DELETE FROM casework_datakey WHERE purpose = %s", [purpose])
            vault.reset_keyring()
    vault.keyring()  # the process's own ring is the database's again
    report.add(
        "vault",
        "DEK unwrap + wrap, crypto only",
        crypto,
        "keys/s",
        None,
        f"{len(rows):,} keys, no database",
    )
    report.add(
        "vault",
        "DEK re-wraps (rotate_keys)",
        rate,
        "keys/s",
        crypto,
        f"{done:,} keys on {connection.vendor}; ratio: share of the crypto-only rate; "
        f"a second run: {second * 1000:.0f} ms, 0 keys",
    )


@contextlib.contextmanager
def keyring_source(ring):
    """`ring` where this process reads its keyring, as `keyring add` leaves it (each use
    of a key looks at its source, as in production): PASSAGE_KEYRING_JSON if that is
    where it comes from, else a key file of its own."""
    inline = os.environ.get("PASSAGE_KEYRING_JSON")
    if inline:
        os.environ["PASSAGE_KEYRING_JSON"] = ring.to_json()
        try:
            yield
        finally:
            os.environ["PASSAGE_KEYRING_JSON"] = inline
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keyring.json"
        vault.write_keyring(ring, path)
        with override_settings(PASSAGE_KEYRING=str(path)):
            yield


def _rotate_and_time(rows) -> tuple[float, int, float, float]:
    """(crypto-only keys/s, keys rotated, their keys/s, seconds of a second run)."""
    start = time.perf_counter()
    for purpose, owner, kek, wrapped in rows:
        dek = vault.unwrap_dek(wrapped, purpose=purpose, owner_id=owner, kek_id=kek)
        vault.wrap_dek(dek, purpose=purpose, owner_id=owner)
    crypto = len(rows) / (time.perf_counter() - start)
    start = time.perf_counter()
    done = vault.rotate()
    rate = done / (time.perf_counter() - start)
    start = time.perf_counter()
    again = vault.rotate()
    second = time.perf_counter() - start
    if done != len(rows) or again:
        raise RuntimeError(f"rotation re-wrapped {done} of {len(rows)} keys, then {again}")
    return crypto, done, rate, second


def _index_against_scan(report, n):
    from casework.models import BlindIndexEntry, DataKey

    with connection.schema_editor() as editor:
        editor.create_model(BenchName)
    all_names = fake_names(n)
    start = time.perf_counter()
    for chunk in range(0, n, 5_000):
        rows, keys, entries = [], [], []
        for name in all_names[chunk : chunk + 5_000]:
            row = BenchName(name=name)
            row.data_key = DataKey(id=uuid.uuid4(), purpose="benchmark", owner_id=row.pk)
            row.data_key.kek_id, row.data_key.wrapped = vault.wrap_dek(
                secrets.token_bytes(32), purpose="benchmark", owner_id=row.pk
            )
            keys.append(row.data_key)
            rows.append(row)
        DataKey.objects.bulk_create(keys)
        BenchName.objects.bulk_create(rows)
        index = BenchName.blind_indexes[0]
        key = index.key()
        for row in rows:
            entries.extend(
                BlindIndexEntry(
                    index=index.name, kind=k, value=v, row_id=row.pk, data_key=row.data_key
                )
                for k, v in index.entries(row, key)
            )
        BlindIndexEntry.objects.bulk_create(entries, batch_size=5_000)
    load = time.perf_counter() - start
    report.add("vault", f"load {n:,} encrypted, indexed names", n / load, "rows/s")

    rng = random.Random(2)
    probes = [rng.choice(all_names) for _ in range(21)]
    qs = BenchName.objects.select_related("data_key")

    def lookup_times():
        times = []
        for probe in probes:
            t = time.perf_counter()
            found = vault.search(qs, "benchmark.names", probe)
            times.append(time.perf_counter() - t)
            assert any(r.name == probe for r in found)
        return statistics.median(times)

    def scan():
        wanted = vault.normalise(probes[0])
        return [r for r in qs.iterator(chunk_size=2_000) if vault.normalise(r.name) == wanted]

    lookup = lookup_times()
    scan_time = timed(scan, repeat=3)
    report.add("vault", f"name search, blind index ({n:,} names)", lookup * 1000, "ms median")
    report.add(
        "vault",
        f"name search, decrypt-and-scan ({n:,} names)",
        scan_time * 1000,
        "ms median",
        lookup * 1000,
        "ratio: scan time / index time",
    )
    with connection.schema_editor() as editor:
        editor.delete_model(BenchName)


# --- accesslog --------------------------------------------------------------------------------
@section("accesslog")
def accesslog_section(report, *, quick=False, **_options):
    """Access-log writes per second: 1 and 8 threads, each with a connection of its own,
    each write an audit.record() in a transaction of its own (as a page writes its event),
    against plain autocommit inserts of rows of the same shape. PostgreSQL only: SQLite
    lets one writer in at a time, whatever the code does."""
    from casework import audit
    from casework.models import AccessEvent, Role, User

    from . import plain

    if connection.vendor != "postgresql":
        report.skip(
            "accesslog",
            "access-log writes, 1 and 8 writers",
            "SQLite writes one transaction at a time: run on PostgreSQL (DATABASE_URL)",
        )
        return
    seconds = 1.0 if quick else 10.0
    actor = User.objects.create_user(username="benchmark-accesslog")
    actor.groups.add(Role.group(Role.CASEWORKER))

    def ours(i):
        with transaction.atomic():
            audit.record(actor, "benchmark.write", detail={"n": i})

    def theirs(i):
        plain.PlainEvent.objects.create(
            at=datetime.datetime.now(datetime.UTC),
            actor=actor,
            action="benchmark.write",
            detail={"n": i},
        )

    for writers in (1, 8):
        before = AccessEvent.objects.count()
        wrote = _writers(ours, writers, seconds)
        if AccessEvent.objects.count() - before != wrote:
            raise RuntimeError("access-log writers: a write left no row")
        plain_wrote = _writers(theirs, writers, seconds)
        report.add(
            "accesslog",
            f"access-log writes, {writers} writer{'s' if writers > 1 else ''}",
            wrote / seconds,
            "writes/s",
            plain_wrote / seconds,
            f"plain autocommit inserts: {plain_wrote / seconds:,.0f}/s; ratio: share of "
            f"their rate; {seconds:.0f} s each",
            writers=writers,
        )


def _writers(write, n: int, seconds: float) -> int:
    """`n` threads calling write(i) for `seconds`; how many calls finished in time."""
    start, done, errors = threading.Barrier(n + 1), [0] * n, []

    def run(k):
        try:
            start.wait()
            stop = time.monotonic() + seconds
            i = 0
            while time.monotonic() < stop:
                write(i)
                i += 1
            done[k] = i
        except Exception as exc:  # noqa: BLE001  reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"access-log writers failed: {errors[0]!r}")
    close_old_connections()
    return sum(done)


@section("contacts")
def contacts_section(report, *, quick=False, **_options):
    """The review warnings a reviewer sees, on long hostile messages (the kind that made
    the review page cost seconds): each against one plain pass of a regular expression
    over the same text, at 20,000 and 40,000 characters. A linear check keeps the ratio
    flat as the text doubles; a quadratic one doubles it."""
    from casework.models import Case
    from contacts.models import Message
    from contacts.services import review_warnings

    actor = type("Nobody", (), {"pk": None, "is_authenticated": False})()
    case = Case(pk=uuid.uuid4())
    shapes = {
        "word": "a",
        "digits and spaces": "1 ",
        "dots": "x.",
        "at signs": "a@",
        "dashes": "-",
    }
    repeat = 3 if quick else 7
    for label, unit in shapes.items():
        for length in (20_000, 40_000):
            text = unit * (length // len(unit))
            message = Message(body=text)
            cost = timed(
                lambda m=message: review_warnings(actor=actor, case=case, message=m), repeat
            )
            plain = timed(lambda t=text: re.findall(r"\d", t), repeat)
            report.add(
                "contacts",
                f"review warnings, {label}, {length:,} chars",
                cost * 1000,
                "ms median",
                plain * 1000,
                note=f"one regex pass: {plain * 1000:.1f} ms",
            )


def run(sections, out, **options):
    """Each section in a scratch database of its own (created, then dropped), so one
    section's rows never weigh on another's, with the plain baseline served beside
    Passage's pages."""
    from django.test.utils import override_settings, setup_databases, teardown_databases

    from . import plain

    report = Report(out)
    for name in sections:
        old = setup_databases(verbosity=0, interactive=False)
        try:
            out.write(f"[{name}]  {connection.vendor} ({connection.settings_dict['NAME']})")
            report.database = database_name()
            plain.create_tables()
            with override_settings(ROOT_URLCONF="tooling.urls"):
                (SECTIONS.get(name) or GROUPS[name])(report, **options)
        finally:
            _end_other_sessions()
            teardown_databases(old, verbosity=0)
    return report


def database_name() -> str:
    from django.conf import settings

    if connection.vendor != "postgresql":
        return f"SQLite {connection.Database.sqlite_version}"
    broker = " and Redis" if (settings.CELERY_BROKER_URL or "").startswith("redis") else ""
    return f"PostgreSQL {connection.pg_version // 10000}{broker}"


def _end_other_sessions() -> None:
    """A server or thread of the run may still hold the scratch database (PostgreSQL
    refuses to drop it then): end those sessions, then this one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    connection.close()


from . import bench_pages, load  # noqa: E402  sections of their own modules

section("load")(load.load_section)
GROUPS.update({name: bench_pages.group_section(name) for name in bench_pages.GROUPS})
DEFAULT = ["vault", "growth", "accesslog", "load", "contacts"]
