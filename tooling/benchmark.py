"""`python manage.py benchmark`: speed measured as ratios against a plain baseline in
the same run, in a scratch database that is created and dropped around the run.

Sections register themselves in SECTIONS: `vault` (field encryption, key rotation, name
search), `cases` (the case list and a case page against plain Django), `families` (the
public form against plain Django, matching against a decrypt-and-scan), `queues` (my queue
and the coordinator's board against plain Django), `contacts` (the review warnings on long
hostile messages); later issues add theirs.
"""

import contextlib
import datetime
import functools
import itertools
import json
import random
import re
import secrets
import statistics
import time
import uuid
from unittest import mock

from django.conf import settings
from django.core import signing
from django.core.paginator import Paginator
from django.db import connection, models, reset_queries
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from casework import vault
from casework.models import (
    ACTIVE_STATUSES,
    Aim,
    CaseUserObjectPermission,
    Priority,
    Risk,
    Role,
    Stage,
    TaskAim,
    TaskStatus,
    Team,
    User,
)

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
    from casework.models import DataKey

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


# --- cases ---------------------------------------------------------------------------------------
class PlainCase(models.Model):
    """The same case in plain columns, nothing encrypted: the baseline (scratch table)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reference = models.CharField(max_length=20, unique=True)
    team = models.ForeignKey("casework.Team", on_delete=models.PROTECT, related_name="+")
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.INTAKE)
    aims = models.JSONField(default=list)
    risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.MEDIUM)
    sealed = models.BooleanField(default=False)
    opened_on = models.DateField()
    closed_on = models.DateField(null=True)
    legal_name = models.CharField(max_length=200)
    other_names = models.TextField(blank=True)
    birth_date = models.DateField(null=True)
    birth_year = models.IntegerField(null=True)
    gender = models.CharField(max_length=60, blank=True)
    nationalities = models.CharField(max_length=200, blank=True)
    languages = models.CharField(max_length=200, blank=True)
    left_on = models.DateField(null=True)
    circumstances = models.TextField(blank=True)
    needs = models.TextField(blank=True)
    safety_notes = models.TextField(blank=True)

    class Meta:
        app_label = "casework"
        managed = False
        db_table = "benchmark_plain_case"

    def __str__(self):
        return self.reference


PLAIN_LIST = """<table>{% for case in page.object_list %}<tr>
<td><a href="/plain/{{ case.pk }}/">{{ case.reference }}</a>{% if case.sealed %} sealed{% endif %}</td>
<td><bdi>{{ case.legal_name }}</bdi></td><td>{{ case.get_stage_display }}</td>
<td>{{ case.get_risk_display }}</td><td>{{ case.team.name }}</td>
<td>{{ case.opened_on|date:"Y-m-d" }}</td></tr>{% endfor %}</table>
{% if page.has_next %}<a href="?page={{ page.next_page_number }}">next</a>{% endif %}"""

PLAIN_DETAIL = """<h1>{{ case.reference }} <bdi>{{ case.legal_name }}</bdi></h1>
<p>{{ case.get_stage_display }} {{ case.get_risk_display }} {{ case.team.name }}
{{ case.opened_on|date:"Y-m-d" }} {{ case.closed_on|date:"Y-m-d" }} {{ case.aims|join:", " }}</p>
<dl><dt>Other names</dt><dd>{{ case.other_names|linebreaksbr }}</dd>
<dt>Born</dt><dd>{{ case.birth_date|date:"Y-m-d" }} {{ case.birth_year|default:"" }}</dd>
<dt>Gender</dt><dd>{{ case.gender }}</dd><dt>Nationalities</dt><dd>{{ case.nationalities }}</dd>
<dt>Languages</dt><dd>{{ case.languages }}</dd><dt>Left</dt><dd>{{ case.left_on|date:"Y-m-d" }}</dd>
<dt>Circumstances</dt><dd>{{ case.circumstances }}</dd><dt>Needs</dt><dd>{{ case.needs }}</dd>
<dt>Safety notes</dt><dd>{{ case.safety_notes }}</dd></dl>"""


@functools.cache
def _template(source: str) -> Template:
    # Compiled once, as Django's cached template loader would.
    return Template(source)


def plain_case_list(request, ids):
    """What a case list costs in plain Django: one filter, one page, one template."""
    cases = (
        PlainCase.objects.filter(pk__in=ids)
        .select_related("team")
        .order_by("-opened_on", "reference")
    )
    page = Paginator(cases, settings.PASSAGE_CASES_PER_PAGE).get_page(request.GET.get("page"))
    return HttpResponse(_template(PLAIN_LIST).render(Context({"page": page})))


def plain_case_detail(request, pk):
    case = get_object_or_404(PlainCase.objects.select_related("team"), pk=pk)
    return HttpResponse(_template(PLAIN_DETAIL).render(Context({"case": case})))


NEEDS = [
    "Safe housing and counselling.",
    "A new passport; help with the bank and the tax office.",
    "School places for the children, a flat, work.",
    "Contact with family members still inside.",
]
CIRCUMSTANCES = [
    "Left the community house at night with one bag after eleven years in the group.",
    "Born into the group; left with help from a school friend.",
    "Worked unpaid for the group's businesses for fifteen years.",
    "Left after the group told her to divorce her husband.",
]


def fake_cases(n, seed=3) -> list[dict]:
    """`n` cases as plain values, shared by the encrypted rows and the baseline."""
    rng = random.Random(seed)
    first_day = datetime.date(2020, 1, 1)
    out = []
    for i, name in enumerate(fake_names(n, seed)):
        opened = first_day + datetime.timedelta(days=rng.randrange(2_500))
        stage = rng.choice(Stage.values)
        out.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "reference": f"P-{opened.year}-{i + 1:06d}",
                "stage": stage,
                "risk": rng.choice(Risk.values),
                "aims": rng.sample(Aim.values, rng.randint(1, 2)),
                "opened_on": opened,
                "closed_on": opened + datetime.timedelta(days=300)
                if stage == Stage.CLOSED
                else None,
                "legal_name": name,
                "other_names": [f"{rng.choice(FIRST)} {rng.choice(LAST)}", "برادر نور"],
                "birth_date": None,
                "birth_year": rng.randint(1950, 2006),
                "gender": rng.choice(["female", "male", ""]),
                "nationalities": rng.choice(["Iranian", "Swedish", "German", "Spanish, Turkish"]),
                "languages": rng.choice(["Persian, English", "Swedish", "German, Turkish"]),
                "left_on": opened - datetime.timedelta(days=rng.randrange(90)),
                "circumstances": rng.choice(CIRCUMSTANCES),
                "needs": rng.choice(NEEDS),
                "safety_notes": "",
            }
        )
    return out


@section("cases")
def cases_section(report, *, quick=False, **_options):
    """1. Load the cases: encrypted, each under its own data key, and the plain baseline.
    2. A caseworker is granted `visible` of them (no coordinator role: grants only).
    3. Median time and queries of the case list and a case detail through the whole
       stack (middleware, second factor, access check, decryption, access log), against
       plain function views over the plain table called through RequestFactory.
    """
    # 100,000 load and measure in under a minute (SQLite in memory); --quick: seconds.
    n, visible, repeat = (2_000, 200, 5) if quick else (100_000, 200, 21)
    team = Team.objects.create(name="Benchmark team")
    cases = fake_cases(n)
    encrypted = _load_encrypted_cases(cases, team)
    plain = _load_plain_cases(cases, team)
    report.add(
        "cases",
        f"load {n:,} encrypted cases",
        n / encrypted,
        "rows/s",
        None,
        f"plain rows: {n / plain:,.0f} rows/s (no blind index)",
    )

    ids = [c["id"] for c in random.Random(4).sample(cases, visible)]
    client = _caseworker_client(team, ids)
    factory = RequestFactory(HTTP_HOST="127.0.0.1")
    # The first row of the list: the page a caseworker would open next.
    granted = set(ids)
    first = min(
        (c for c in cases if c["id"] in granted),
        key=lambda c: (-c["opened_on"].toordinal(), c["reference"]),
    )["id"]
    pages = {
        f"case list, page 1 of {visible} visible": (
            lambda: client.get("/cases/"),
            lambda: plain_case_list(factory.get("/plain/"), ids),
        ),
        "case detail": (
            lambda: client.get(f"/cases/{first}/"),
            lambda: plain_case_detail(factory.get(f"/plain/{first}/"), first),
        ),
    }
    for label, (passage, baseline) in pages.items():
        ours, our_queries = _measure(passage, repeat)
        theirs, their_queries = _measure(baseline, repeat)
        report.add(
            "cases",
            f"{label} ({n:,} cases)",
            ours * 1000,
            "ms median",
            theirs * 1000,
            f"plain Django: {theirs * 1000:.1f} ms",
        )
        report.add(
            "cases",
            f"{label}, queries",
            our_queries,
            "queries",
            their_queries,
            f"plain Django: {their_queries}",
        )
    with connection.schema_editor() as editor:
        editor.delete_model(PlainCase)


def _load_encrypted_cases(cases, team, *, indexed=False, keep=None) -> float:
    """Bulk insert as `_index_against_scan` does; pre_save encrypts each field.
    bulk_create skips save(), so the reference is set here, and the blind-index entries
    ("case.names") are written only if `indexed`: the case pages do not read them.
    The saved rows, each with its data key attached, are appended to `keep` if given."""
    from casework.models import BlindIndexEntry, Case, DataKey

    index = Case.blind_indexes[0]
    key = index.key()
    start = time.perf_counter()
    for chunk in range(0, len(cases), 5_000):
        keys, rows, entries = [], [], []
        for values in cases[chunk : chunk + 5_000]:
            row = Case(team=team, **values)
            row.data_key = DataKey(id=uuid.uuid4(), purpose="case", owner_id=row.pk)
            row.data_key.kek_id, row.data_key.wrapped = vault.wrap_dek(
                secrets.token_bytes(vault.KEY_BYTES), purpose="case", owner_id=row.pk
            )
            keys.append(row.data_key)
            rows.append(row)
        DataKey.objects.bulk_create(keys)
        Case.objects.bulk_create(rows)
        if keep is not None:
            keep.extend(rows)
        if indexed:
            for row in rows:
                entries.extend(
                    BlindIndexEntry(
                        index=index.name, kind=k, value=v, row_id=row.pk, data_key=row.data_key
                    )
                    for k, v in index.entries(row, key)
                )
            BlindIndexEntry.objects.bulk_create(entries, batch_size=5_000)
    return time.perf_counter() - start


def _load_plain_cases(cases, team) -> float:
    with connection.schema_editor() as editor:
        editor.create_model(PlainCase)
    start = time.perf_counter()
    for chunk in range(0, len(cases), 5_000):
        PlainCase.objects.bulk_create(
            PlainCase(team=team, **{**values, "other_names": "\n".join(values["other_names"])})
            for values in cases[chunk : chunk + 5_000]
        )
    return time.perf_counter() - start


def _caseworker_client(team, ids) -> Client:
    """A caseworker with `ids` granted (view and work), logged in with both factors."""
    user = User.objects.create_user(username="benchmark-caseworker")
    user.groups.add(Role.group(Role.CASEWORKER))
    team.members.add(user)
    _grant_work({user: ids})
    return _verified_client(user)


def _grant_work(grants: dict) -> None:
    """ "view_case" and "change_case" on each user's case ids, in one bulk insert."""
    from django.contrib.auth.models import Permission

    perms = Permission.objects.filter(
        content_type__app_label="casework", codename__in=["view_case", "change_case"]
    )
    CaseUserObjectPermission.objects.bulk_create(
        (
            CaseUserObjectPermission(user=user, permission=perm, content_object_id=pk)
            for user, ids in grants.items()
            for pk in ids
            for perm in perms
        ),
        batch_size=5_000,
    )


def _verified_client(user) -> Client:
    """A client logged in as `user` with a confirmed TOTP device verified in the session."""
    from django_otp import DEVICE_ID_SESSION_KEY

    from casework.models import VaultTOTPDevice

    device = VaultTOTPDevice.objects.create(user=user, name="benchmark", confirmed=True)
    # 127.0.0.1: the development profile's ALLOWED_HOSTS (run() sets up no test
    # environment, so "testserver" is not allowed).
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def _measure(get, repeat) -> tuple[float, int]:
    """(median seconds, queries) of one page; one warm-up call first (templates,
    content types, the session's last-seen time), as a running server would have."""
    get()
    # With DEBUG on every query is logged, and the log is a bounded deque: once full its
    # length stops growing and the context would count nothing. Empty it first.
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        response = get()
    if response.status_code != 200:
        raise RuntimeError(f"benchmark page answered {response.status_code}")
    return timed(get, repeat), len(queries.captured_queries)


# --- families -----------------------------------------------------------------------------------
class PlainFamilyRequest(models.Model):
    """A family request in plain columns, nothing encrypted: the form's baseline (scratch table)."""

    reference = models.CharField(max_length=14, unique=True)
    requester_name = models.CharField(max_length=200)
    relationship = models.CharField(max_length=100)
    requester_country = models.CharField(max_length=100)
    requester_email = models.CharField(max_length=254, blank=True)
    requester_phone = models.CharField(max_length=60, blank=True)
    sought_names = models.JSONField(default=list)
    sought_birth_year = models.IntegerField(null=True)
    last_place = models.CharField(max_length=200, blank=True)
    last_year = models.IntegerField(null=True)
    other_details = models.TextField(blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "casework"
        managed = False
        db_table = "benchmark_plain_family_request"

    def __str__(self):
        return self.reference


PLAIN_THANKS = """<h1>Thank you. Your request was received.</h1>
<dl><dt>Reference</dt><dd><code>{{ reference }}</code></dd>
<dt>Secret</dt><dd><code>{{ secret }}</code></dd></dl>"""


def plain_contact_form(request):
    """What the public form costs in plain Django: validate, save one row, thank."""
    from families.forms import ContactRequestForm
    from families.models import new_reference, new_secret

    form = ContactRequestForm(request.POST)
    if not form.is_valid():
        return HttpResponse(status=400)
    saved = PlainFamilyRequest.objects.create(reference=new_reference(), **form.request_data())
    context = Context({"reference": saved.reference, "secret": new_secret()})
    return HttpResponse(_template(PLAIN_THANKS).render(context))


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


@contextlib.contextmanager
def queued_not_run():
    """Screening and matching are queued after the commit and run in the worker. Here
    they are only counted, so the form is measured alone (matching is timed apart)."""
    from celery import current_app

    from families import tasks

    queued = []

    def apply_async(args=None, kwargs=None, **options):
        queued.append(args[0])

    # The registered task itself, however the services send it (after the commit).
    task = current_app.tasks[tasks.process_request.name]
    with mock.patch.object(task, "apply_async", apply_async):
        yield queued


@section("families")
def families_section(report, *, quick=False, **_options):
    """1. The public form: a valid POST through the whole stack (a fresh client and
       address each time, as rate limits are per address) against a plain view that
       validates the same form and saves one unencrypted row.
    2. Matching: `n` encrypted cases with their name index, 10% with tracing consent;
       process() for three requests against one decrypt-and-scan of every case.
    """
    # About two minutes in all, on SQLite (in memory) as on PostgreSQL: loading 100,000
    # cases with their index takes most of it, the matching and the scan seconds.
    # --quick: seconds in all.
    n, repeat = (2_000, 3) if quick else (100_000, 5)
    _contact_form(report, repeat=5 if quick else 21)
    _matching(report, n=n, repeat=repeat)


def _contact_form(report, repeat):
    from families.models import FamilyRequest

    data = contact_form_data()
    addresses = (f"10.{i // 65_536 % 256}.{i // 256 % 256}.{i % 256}" for i in itertools.count(1))
    factory = RequestFactory(HTTP_HOST="127.0.0.1")
    with connection.schema_editor() as editor:
        editor.create_model(PlainFamilyRequest)
    before = FamilyRequest.objects.count()
    with queued_not_run() as queued:
        ours, our_queries = _measure(
            lambda: Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR=next(addresses)).post(
                "/contact/", data
            ),
            repeat,
        )
    theirs, their_queries = _measure(
        lambda: plain_contact_form(factory.post("/contact/", data)), repeat
    )
    # Every answer looks alike, kept or dropped: count the rows to be sure each was kept.
    saved = FamilyRequest.objects.count() - before
    if saved != repeat + 2 or len(queued) != saved:
        raise RuntimeError(f"{repeat + 2} form posts kept {saved} requests, queued {len(queued)}")
    with connection.schema_editor() as editor:
        editor.delete_model(PlainFamilyRequest)
    report.add(
        "families",
        "contact form, valid POST",
        ours * 1000,
        "ms median",
        theirs * 1000,
        f"plain Django: {theirs * 1000:.1f} ms; matching queued, not run",
    )
    report.add(
        "families",
        "contact form, valid POST, queries",
        our_queries,
        "queries",
        their_queries,
        f"plain Django: {their_queries}",
    )


# The requester of the timed requests: the same family each time (a family writing
# again is no hunting pattern, so screening flags nothing).
_REQUEST = {
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


def _matching(report, n, repeat):
    """1. `n` cases as in the `cases` section, with their name index; every tenth gets a
       tracing grant, written straight into the (append-only) ledger.
    2. For each request: submit it (not timed), time process(), count what it did.
    3. The baseline: decrypt every case and compare normalised names, once.
    """
    from casework.models import Case
    from contacts.models import ConsentEvent, Purpose
    from families import matching, services
    from families.models import MatchCandidate

    team = Team.objects.create(name="Benchmark families team")
    # Own references: the `cases` section's rows may be in the same database.
    cases = [{**c, "reference": f"F-{i + 1:07d}"} for i, c in enumerate(fake_cases(n, seed=5))]
    load = _load_encrypted_cases(cases, team, indexed=True)
    consenting = cases[::10]
    ConsentEvent.objects.bulk_create(
        (
            ConsentEvent(
                case_id=c["id"],
                purpose=Purpose.TRACING,
                decision=ConsentEvent.Decision.GRANTED,
                method=ConsentEvent.Method.IN_PERSON,
                notice_sha256="bench",
            )
            for c in consenting
        ),
        batch_size=5_000,
    )
    report.add(
        "families",
        f"load {n:,} encrypted cases with name index",
        n / load,
        "rows/s",
        None,
        f"{len(consenting):,} with tracing consent",
    )

    wanted = random.Random(6).choice(consenting)
    probes = {
        "name of a consenting case": ([wanted["legal_name"]], wanted["birth_year"]),
        # A tenth of the cases carry the first name (in the legal name or an alias).
        "very common first name": ([f"{FIRST[0]} فراهانی"], 1980),
        "name that matches nothing": (["Zbigniew Quartermaine"], 1980),
    }
    scan_name = vault.normalise(wanted["legal_name"])

    def scan():
        return [
            c.pk
            for c in Case.objects.filter(team=team)
            .select_related("data_key")
            .iterator(chunk_size=2_000)
            if any(vault.normalise(x) == scan_name for x in [c.legal_name, *c.other_names])
        ]

    start = time.perf_counter()
    scanned = scan()
    scan_time = time.perf_counter() - start
    if scanned != [wanted["id"]]:
        raise RuntimeError("the decrypt-and-scan baseline did not find the one case named")

    results = {}
    with queued_not_run():
        for label, (names, born) in probes.items():
            samples, queries = [], None
            for _ in range(repeat):
                request, _secret = services.request_submit(
                    data={**_REQUEST, "sought_names": names, "sought_birth_year": born},
                    language="en",
                    notice_sha256="bench",
                )
                reset_queries()
                with CaptureQueriesContext(connection) as captured:
                    start = time.perf_counter()
                    services.process(request)
                    samples.append(time.perf_counter() - start)
                queries = len(captured.captured_queries)
            decrypted = len(matching.candidate_cases(request))
            found = MatchCandidate.objects.filter(request=request)
            results[label] = (statistics.median(samples), queries, decrypted, found)
    if not results["name of a consenting case"][3].filter(case_id=wanted["id"]).exists():
        raise RuntimeError("matching missed the consenting case it was given")
    for label, (seconds, queries, decrypted, found) in results.items():
        report.add(
            "families",
            f"match: {label} ({n:,} cases)",
            seconds * 1000,
            "ms median",
            scan_time * 1000,
            f"decrypted {decrypted:,} consenting cases; candidates: {found.count():,}; "
            f"queries: {queries}",
        )
    report.add(
        "families",
        f"match baseline: decrypt-and-scan ({n:,} cases)",
        scan_time * 1000,
        "ms",
        None,
        "one run, normalised names compared; ratio above: process() / scan",
    )


# --- queues --------------------------------------------------------------------------------------
class PlainTask(models.Model):
    """The same task in plain columns, nothing encrypted: the queues' baseline (scratch
    table, on the plain cases, with the task table's indexes)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    case = models.ForeignKey(PlainCase, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey("casework.Team", on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=200)
    details = models.TextField(blank=True)
    aim = models.CharField(max_length=20, choices=TaskAim.choices, default=TaskAim.SUPPORT)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    due_on = models.DateField(null=True)
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)

    class Meta:
        app_label = "casework"
        managed = False
        db_table = "benchmark_plain_task"
        indexes = [
            models.Index(fields=["assignee", "status", "due_on"], name="bench_plain_task_queue"),
            models.Index(fields=["team", "status"], name="bench_plain_task_team"),
        ]

    def __str__(self):
        return self.title

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_overdue(self) -> bool:
        return self.is_active and self.due_on is not None and self.due_on < timezone.localdate()


PLAIN_QUEUE = """<p>{{ page.paginator.count }} open tasks.</p>
<table>{% for task in tasks %}<tr id="task-{{ task.pk }}"{% if task.is_overdue %} class="overdue"{% endif %}>
<td>{% if task.priority == 0 %}<b>{{ task.get_priority_display }}</b>{% else %}{{ task.get_priority_display }}{% endif %}</td>
<td><a href="/plain/tasks/{{ task.pk }}/"><bdi>{{ task.title }}</bdi></a><div>{{ task.get_aim_display }}</div></td>
<td><a href="/plain/{{ task.case_id }}/">{{ task.case.reference }}</a></td>
<td>{% if task.due_on %}{{ task.due_on|date:"Y-m-d" }}{% if task.is_overdue %} overdue{% elif task.due_on == today %} today{% endif %}{% else %}-{% endif %}</td>
<td><form method="post" action="/plain/tasks/{{ task.pk }}/status/"><select name="status">
{% for value, label in statuses %}<option value="{{ value }}"{% if value == task.status %} selected{% endif %}>{{ label }}</option>{% endfor %}
</select><button>Update</button></form></td></tr>{% endfor %}</table>
{% if page.has_next %}<a href="?page={{ page.next_page_number }}">next</a>{% endif %}"""

PLAIN_BOARD = """<h2>{{ total }} open tasks</h2>
<table>{% for g in groups %}<tr><th><a href="#group-{{ g.assignee.pk|default:'none' }}">{% if g.assignee %}{{ g.assignee.get_full_name|default:g.assignee.get_username }}{% else %}Unassigned{% endif %}</a></th>
<td>{{ g.open }}</td><td>{{ g.overdue }}</td><td>{{ g.week }}</td></tr>{% endfor %}</table>
<form method="post" action="/plain/board/assign/"><select name="assignee"><option value="">Nobody</option>
{% for person in assignees %}<option value="{{ person.pk }}">{{ person.get_full_name|default:person.get_username }}</option>{% endfor %}</select>
{% for g in groups %}<section id="group-{{ g.assignee.pk|default:'none' }}">
<h2>{% if g.assignee %}{{ g.assignee.get_full_name|default:g.assignee.get_username }}{% else %}Unassigned{% endif %}
{{ g.open }} open, {{ g.overdue }} overdue, {{ g.week }} due this week</h2><table>
{% for task in g.tasks %}<tr{% if task.is_overdue %} class="overdue"{% endif %}>
<td><input type="checkbox" name="tasks" value="{{ task.pk }}" id="pick-{{ task.pk }}"></td>
<td><label for="pick-{{ task.pk }}"><bdi>{{ task.title }}</bdi></label> <a href="/plain/tasks/{{ task.pk }}/">open</a><div>{{ task.get_aim_display }}</div></td>
<td>{{ task.case.reference }}</td><td>{{ task.get_priority_display }}</td>
<td>{% if task.due_on %}{{ task.due_on|date:"Y-m-d" }}{% if task.is_overdue %} overdue{% endif %}{% else %}-{% endif %}</td>
<td>{{ task.get_status_display }}</td></tr>{% endfor %}</table></section>{% endfor %}</form>"""


def plain_my_queue(request, user_id):
    """What my queue costs in plain Django: one person's open rows in queue order, a page."""
    from casework.queues import queue_order

    tasks = queue_order(
        PlainTask.objects.filter(assignee_id=user_id, status__in=ACTIVE_STATUSES).select_related(
            "case"
        )
    )
    page = Paginator(tasks, settings.PASSAGE_TASKS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "tasks": list(page.object_list),
        "today": timezone.localdate(),
        "statuses": TaskStatus.choices,
    }
    return HttpResponse(_template(PLAIN_QUEUE).render(Context(context)))


def plain_board(request, team_id):
    """What the board costs in plain Django: a team's open rows grouped by assignee, and
    the people to assign them to."""
    from casework.queues import board_summary, queue_order

    tasks = queue_order(
        PlainTask.objects.filter(team_id=team_id, status__in=ACTIVE_STATUSES).select_related(
            "case", "assignee"
        )
    )
    tasks = list(tasks[:1000])
    assignees = User.objects.filter(teams=team_id, is_active=True).order_by("username")
    context = {
        "groups": board_summary(tasks),
        "assignees": assignees,
        "total": len(tasks),
        "today": timezone.localdate(),
    }
    return HttpResponse(_template(PLAIN_BOARD).render(Context(context)))


TASK_TITLES = [
    "Residence-permit appointment",
    "Housing",
    "Bank account",
    "Doctor registration",
    "Counselling intake",
    "Language course",
    "Agree a safety plan with the person",
    "Arrange safe transport",
    "Find emergency accommodation",
    "Book legal advice on asylum or residence",
    "Replace lost or withheld identity documents",
    "Check-in call",
    "Review risk level",
    "File signed consent forms",
]
# Titles often name people: a third of them do here.
TASK_ABOUT = ["Call back", "Meet", "Write to the lawyer of", "Ask the school about", "Visit"]


def fake_tasks(caseloads, cases, *, per_worker, unassigned, seed=9) -> list[dict]:
    """Open tasks as plain values, shared by the encrypted rows and the baseline.

    `caseloads` maps each caseworker to the indexes (into `cases`) of their caseload;
    each gets `per_worker` tasks on those cases, and `unassigned` more go on any case.
    Mixed priorities; about 12% overdue, 25% undated, the rest due within two months."""
    rng = random.Random(seed)
    today = timezone.localdate()
    now = timezone.now()

    def one(assignee, case_index):
        roll = rng.random()
        if roll < 0.12:
            due = today - datetime.timedelta(days=rng.randint(1, 30))
        elif roll < 0.37:
            due = None
        else:
            due = today + datetime.timedelta(days=rng.randint(0, 60))
        if rng.random() < 1 / 3:
            title = f"{rng.choice(TASK_ABOUT)} {rng.choice(FIRST)} {rng.choice(LAST)}"
        else:
            title = rng.choice(TASK_TITLES)
        if assignee is None:
            status = TaskStatus.OPEN
        else:
            status = rng.choices(ACTIVE_STATUSES, weights=[60, 30, 10])[0]
        return {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "case": case_index,
            "assignee": assignee,
            "title": title,
            "details": rng.choice(["", *NEEDS, *CIRCUMSTANCES]),
            "aim": rng.choice(TaskAim.values),
            "priority": rng.choices(Priority.values, weights=[5, 20, 55, 20])[0],
            "due_on": due,
            "status": status,
            "created_at": now - datetime.timedelta(minutes=rng.randrange(90 * 24 * 60)),
        }

    out = []
    for worker, caseload in caseloads.items():
        out.extend(one(worker, rng.choice(caseload)) for _ in range(per_worker))
    out.extend(one(None, rng.randrange(len(cases))) for _ in range(unassigned))
    return out


@section("queues")
def queues_section(report, *, quick=False, **_options):
    """1. One team: `n` encrypted cases (each under its own data key), 20 caseworkers each
       with a caseload of n/20 cases, a coordinator leading the team.
    2. `per_worker` open tasks per caseworker on their caseload (each granted "view_case"
       and "change_case" on their tasks' cases) and `unassigned` more: bulk-inserted,
       titles and details encrypted under the case's key; the same rows in a plain table.
    3. Median time and queries of GET /tasks/ (one caseworker's queue) and GET
       /tasks/board/ (the coordinator's board, every open task) through the whole stack,
       against plain function views over the plain tables called through RequestFactory.
    """
    # Full size: seconds to load and measure on SQLite; --quick: a second or two.
    n, per_worker, unassigned, repeat = (200, 4, 20, 5) if quick else (2_000, 40, 200, 11)
    workers = 20
    team = Team.objects.create(name="Benchmark queues team")
    rng = random.Random(8)
    caseworkers = [
        User.objects.create_user(
            username=f"benchmark-queues-{i:02d}",
            first_name=rng.choice(FIRST),
            last_name=rng.choice(LAST),
        )
        for i in range(1, workers + 1)
    ]
    Role.group(Role.CASEWORKER).user_set.add(*caseworkers)
    team.members.add(*caseworkers)
    coordinator = User.objects.create_user(username="benchmark-queues-coordinator")
    coordinator.groups.add(Role.group(Role.COORDINATOR))
    team.coordinators.add(coordinator)

    # Own references: the other sections' rows may be in the same database.
    cases = [{**c, "reference": f"Q-{i + 1:07d}"} for i, c in enumerate(fake_cases(n, seed=8))]
    case_rows = []
    _load_encrypted_cases(cases, team, keep=case_rows)
    _load_plain_cases(cases, team)
    caseloads = {w: list(range(i, n, workers)) for i, w in enumerate(caseworkers)}
    tasks = fake_tasks(caseloads, cases, per_worker=per_worker, unassigned=unassigned)
    encrypted = _load_encrypted_tasks(tasks, case_rows, team, coordinator)
    plain = _load_plain_tasks(tasks, cases, team, coordinator)
    grants = {w: set() for w in caseworkers}
    for t in tasks:
        if t["assignee"] is not None:
            grants[t["assignee"]].add(cases[t["case"]]["id"])
    _grant_work(grants)
    report.add(
        "queues",
        f"load {len(tasks):,} encrypted tasks",
        len(tasks) / encrypted,
        "rows/s",
        None,
        f"plain rows: {len(tasks) / plain:,.0f} rows/s; on {n:,} cases, {workers} caseworkers",
    )

    caseworker = caseworkers[0]
    factory = RequestFactory(HTTP_HOST="127.0.0.1")
    worker_client = _verified_client(caseworker)
    coordinator_client = _verified_client(coordinator)
    total = len(tasks)
    pages = {
        f"my queue, {per_worker} tasks": (
            lambda: worker_client.get("/tasks/"),
            lambda: plain_my_queue(factory.get("/plain/tasks/"), caseworker.pk),
            'id="task-',
            per_worker,
        ),
        f"board, {total:,} open tasks": (
            lambda: coordinator_client.get("/tasks/board/"),
            lambda: plain_board(factory.get("/plain/board/"), team.pk),
            'name="tasks" value="',
            total,
        ),
    }
    for label, (passage, baseline, row_mark, rows) in pages.items():
        # Both pages show every row they should (a page that showed none would be fast).
        for get in (passage, baseline):
            shown = get().content.decode().count(row_mark)
            if shown != rows:
                raise RuntimeError(f"{label}: {shown} rows shown, {rows} expected")
        ours, our_queries = _measure(passage, repeat)
        theirs, their_queries = _measure(baseline, repeat)
        report.add(
            "queues",
            f"{label} ({n:,} cases)",
            ours * 1000,
            "ms median",
            theirs * 1000,
            f"plain Django: {theirs * 1000:.1f} ms",
        )
        report.add(
            "queues",
            f"{label}, queries",
            our_queries,
            "queries",
            their_queries,
            f"plain Django: {their_queries}",
        )
    with connection.schema_editor() as editor:
        editor.delete_model(PlainTask)
        editor.delete_model(PlainCase)


def _load_encrypted_tasks(tasks, case_rows, team, creator) -> float:
    """Bulk insert; pre_save encrypts title and details under each case's data key (the
    case rows carry theirs, unwrapped once per case)."""
    from casework.models import Task

    start = time.perf_counter()
    Task.objects.bulk_create(
        (Task(**{**t, "case": case_rows[t["case"]]}, team=team, created_by=creator) for t in tasks),
        batch_size=1_000,
    )
    return time.perf_counter() - start


def _load_plain_tasks(tasks, cases, team, creator) -> float:
    with connection.schema_editor() as editor:
        editor.create_model(PlainTask)
    start = time.perf_counter()
    PlainTask.objects.bulk_create(
        (
            PlainTask(
                **{k: v for k, v in t.items() if k != "case"},
                case_id=cases[t["case"]]["id"],
                team=team,
                created_by=creator,
            )
            for t in tasks
        ),
        batch_size=1_000,
    )
    return time.perf_counter() - start


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
