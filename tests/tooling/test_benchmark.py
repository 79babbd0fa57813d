"""`manage.py benchmark` and `manage.py loadtest`: every baseline is plain Django of the
same shape through the same stack, statements are counted apart from transaction control,
the growth table covers every page, and (PostgreSQL pass) the access-log writers and the
load against gunicorn run with zero errors and every submission saved."""

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from casework.models import Role
from tests.base import login_verified, make_user, run_benchmark

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "search, caseworker",
    "search, coordinator",
    "case list, caseworker",
    "case list, coordinator",
    "case detail, caseworker",
    "case detail, coordinator",
    "my queue, caseworker",
    "board, coordinator",
    "triage, coordinator",
    "contact form POST",
]
JOBS = ["matching, a consenting case's name", "matching, a name that matches nothing"]


@pytest.fixture(scope="module")
def growth(tmp_path_factory) -> dict:
    """`benchmark growth --quick` (200 and 1,000 cases), once for the tests below."""
    return run_benchmark(tmp_path_factory.mktemp("growth"), "growth")


def test_growth_measures_every_page_at_each_size_against_plain_django(growth):
    assert {r["section"] for r in growth.values()} == {"growth"}
    for n in ("200", "1,000"):
        for page in PAGES + JOBS:
            timing = growth[f"{page} ({n} cases)"]
            assert timing["unit"] == "ms median" and timing["value"] > 0, page
            assert timing["baseline"] > 0 and timing["ratio"] > 0, page
            counted = growth[f"{page} ({n} cases), statements"]
            assert counted["unit"] == "statements" and counted["value"] > 0, page
        seeded = growth[f"seed cases {'1' if n == '200' else '201'}-{n}"]
        assert seeded["unit"] == "cases/s" and seeded["value"] > 0


def test_the_plain_pages_have_the_shape_of_passage_s_and_go_through_the_whole_stack(growth):
    for page in PAGES[:-1]:
        timing = growth[f"{page} (1,000 cases)"]
        # The same page: within a third of each other's size.
        assert 0.67 < timing["baseline_bytes"] / timing["bytes"] < 1.5, page
        # Session, user and second-factor device, then the page's own reads: the
        # baseline is never a view called bare.
        assert growth[f"{page} (1,000 cases), statements"]["baseline"] >= 5, page


def test_transaction_control_is_counted_apart_from_statements(growth):
    post = growth["contact form POST (1,000 cases), statements"]
    # Passage saves the request, its data key, its index entries and its event in one
    # transaction: BEGIN and COMMIT (SQLite) are there, and not among the statements.
    assert post["transaction_control"] >= 2
    assert post["baseline_transaction_control"] == 0  # plain: autocommit inserts
    assert post["value"] >= post["baseline"] >= 1


def test_the_old_section_names_run_their_pages_of_the_growth_table(tmp_path):
    rows = run_benchmark(tmp_path, "queues")
    assert {r["page"] for r in rows.values() if "page" in r} == {
        "my queue, caseworker",
        "board, coordinator",
    }


def test_access_log_writers_and_the_load_are_skipped_on_sqlite_with_a_reason(tmp_path):
    rows = run_benchmark(tmp_path, "accesslog")
    skipped = rows["access-log writes, 1 and 8 writers"]
    assert skipped["unit"] == "skipped" and "PostgreSQL" in skipped["note"]


@pytest.mark.django_db
def test_the_plain_baseline_is_never_served_by_the_product(client):
    # Its tables hold names in the clear: only tooling/urls.py (the benchmark's) has it.
    user = make_user("caseworker-plain", Role.CASEWORKER)
    login_verified(client, user)
    for path in ("/plain/cases/", "/plain/contact/", "/plain/tasks/board/"):
        assert client.get(path).status_code == 404, path
    assert Client().get("/plain/contact/").status_code == 404


@pytest.mark.django_db
def test_loadtest_refuses_sqlite_with_a_reason():
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite pass checks the refusal")
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("loadtest", "--seconds", "1")


# --- PostgreSQL pass ---------------------------------------------------------------------------
def run_on_postgres(tmp_path, *sections) -> dict:
    """`benchmark SECTIONS --quick` in a subprocess on the suite's PostgreSQL server, in
    scratch databases of its own (named apart from the suite's test database)."""
    url = os.environ.get("DATABASE_URL", "")
    if connection.vendor != "postgresql" or not url.startswith("postgres"):
        pytest.skip("needs PostgreSQL (CI's second pass)")
    parts = urllib.parse.urlsplit(url)
    name = parts.path.strip("/") or "passage"
    env = {
        **os.environ,
        "DEBUG": "1",
        "PASSAGE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": urllib.parse.urlunsplit(parts._replace(path=f"/{name}_benchmark")),
    }
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "manage.py", "benchmark", *sections, "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {row["name"]: row for row in json.loads(out.read_text())}


def test_access_log_writers_and_the_load_against_plain_on_postgres(tmp_path):
    rows = run_on_postgres(tmp_path, "accesslog", "load")
    for writers in ("1 writer", "8 writers"):
        row = rows[f"access-log writes, {writers}"]
        assert row["unit"] == "writes/s" and row["value"] > 0 and row["baseline"] > 0
    mixed = rows["mixed load, 5 s, 6 families + 4 staff"]
    assert mixed["unit"] == "req/s" and mixed["value"] > 0 and mixed["baseline"] > 0
    assert (mixed["errors"], mixed["missing"], mixed["baseline_errors"]) == (0, 0, 0)
    for label in ("Passage", "plain stack"):
        burst = rows[f"20 family submissions at once, {label}, p95"]
        assert (burst["saved"], burst["errors"]) == (20, 0), label
