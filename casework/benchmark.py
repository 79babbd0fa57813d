"""`python manage.py benchmark`: speed measured as ratios against a plain baseline in
the same run, in a scratch database that is created and dropped around the run.

Sections register themselves in SECTIONS; later issues add theirs (cases, queues, ...).
"""

import datetime
import json
import random
import secrets
import statistics
import time
import uuid

from django.db import connection

from . import vault

SECTIONS = {}


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


class Report:
    def __init__(self, out):
        self.out = out
        self.rows = []

    def add(self, section, name, value, unit, baseline=None, note=""):
        ratio = (value / baseline) if baseline else None
        self.rows.append(
            {
                "section": section,
                "name": name,
                "value": value,
                "unit": unit,
                "ratio": ratio,
                "note": note,
            }
        )
        ratio_s = f"{ratio:8.2f}x" if ratio is not None else " " * 9
        self.out.write(f"  {name:<46}{value:>14,.1f} {unit:<10}{ratio_s}  {note}")

    def json(self):
        return json.dumps(self.rows, indent=2)


# --- Names for realistic data ----------------------------------------------------------------
FIRST = [
    "محمد",
    "علی",
    "فاطمه",
    "زهرا",
    "رضا",
    "مریم",
    "حسین",
    "سارا",
    "Maryam",
    "Reza",
    "Anna",
    "José",
    "Lukas",
    "Amira",
    "Yusuf",
    "Elif",
    "Daniel",
    "Sofia",
    "Omid",
    "Leyla",
]
LAST = [
    "کریمی",
    "حسینی",
    "احمدی",
    "رضایی",
    "موسوی",
    "Karimi",
    "Hosseini",
    "García",
    "Berg",
    "Novak",
    "Haddad",
    "Yilmaz",
    "Schmidt",
    "Rossi",
    "Tehrani",
    "Nazari",
    "Sadeghi",
]


def fake_names(n, seed=1):
    rng = random.Random(seed)
    return [f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.randrange(10**6):06d}" for _ in range(n)]


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
def vault_section(report, *, names=100_000, quick=False):
    _field_throughput(report, n=2_000 if quick else 20_000)
    _rewrap_rate(report, n=500 if quick else 5_000)
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


def _rewrap_rate(report, n):
    from .models import DataKey

    DataKey.objects.bulk_create(
        DataKey(purpose="benchmark-rewrap", owner_id=owner, kek_id=kek, wrapped=wrapped)
        for owner in (uuid.uuid4() for _ in range(n))
        for kek, wrapped in [
            vault.wrap_dek(secrets.token_bytes(32), purpose="benchmark-rewrap", owner_id=owner)
        ]
    )
    ring = vault.keyring()
    vault._keyring_cache = vault.Keyring(
        keks={"kek-benchmark": secrets.token_bytes(32), **ring.keks},
        index_key=ring.index_key,
        audit_key=ring.audit_key,
    )
    try:
        start = time.perf_counter()
        done = vault.rotate(batch_size=500)
        elapsed = time.perf_counter() - start
    finally:
        vault.reset_keyring()
        vault._keyring_cache = ring
    report.add(
        "vault",
        "DEK re-wraps (rotate_keys)",
        done / elapsed,
        "keys/s",
        None,
        f"{done} keys, batches of 500",
    )


def _index_against_scan(report, n):
    from .models import BlindIndexEntry, DataKey

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


def run(sections, out, **options):
    """Create a scratch database, run the sections, drop it."""
    from django.test.utils import setup_databases, teardown_databases

    old = setup_databases(verbosity=0, interactive=False)
    report = Report(out)
    try:
        out.write(f"database: {connection.vendor}  ({connection.settings_dict['NAME']})")
        for name in sections:
            out.write(f"[{name}]")
            SECTIONS[name](report, **options)
    finally:
        teardown_databases(old, verbosity=0)
    return report
