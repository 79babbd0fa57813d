"""The demo cases of `seed_demo`, and the `cases` section of `manage.py benchmark`."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from casework.access import cases_for_user
from casework.management.commands.seed_demo import DEMO_CASES
from casework.models import (
    AccessEvent,
    Case,
    CaseUserObjectPermission,
    Note,
    Stage,
    User,
    Whereabouts,
)

ROOT = Path(__file__).resolve().parents[2]


def seed(settings) -> str:
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {
        "cases": Case.objects.count(),
        "notes": Note.objects.count(),
        "whereabouts": Whereabouts.objects.count(),
        "grants": CaseUserObjectPermission.objects.count(),
        "events": AccessEvent.objects.count(),
    }


def granted(username, codename="view_case") -> set:
    return set(
        CaseUserObjectPermission.objects.filter(
            user__username=username, permission__codename=codename
        ).values_list("content_object_id", flat=True)
    )


@pytest.mark.django_db
def test_seed_demo_opens_the_demo_cases_with_notes_whereabouts_and_grants(settings):
    seed(settings)
    cases = list(Case.objects.select_related("team", "data_key"))
    assert len(cases) == len(DEMO_CASES) >= 12
    assert {c.team.name for c in cases} == {
        "Refuge and arrival",
        "Resettlement",
        "Family reunification",
    }
    assert {Stage.INTAKE, Stage.REFUGE, Stage.RESETTLEMENT, Stage.REUNIFICATION, Stage.CLOSED} == {
        c.stage for c in cases
    }
    assert sum(c.sealed for c in cases) == 1
    assert len({c.risk for c in cases}) == 4
    names = {c.legal_name for c in cases}
    assert {"مریم کریمی", "علی رضایی"} <= names  # Persian script, decrypted from the rows
    assert any("برادر نور" in c.other_names for c in cases)
    for case in cases:
        notes = case.notes.all()
        assert notes.count() >= 2, case.reference
        assert case.stage_changes.exists()
    assert Note.objects.filter(restricted=True).exists()
    assert Note.objects.filter(restricted=False).exists()
    assert Whereabouts.objects.count() >= 4
    place = Whereabouts.objects.select_related("case__data_key").first()
    assert place.city and place.phone  # encrypted, and readable under the case's key
    assert AccessEvent.objects.filter(action="case.created").count() == len(cases)
    assert AccessEvent.objects.filter(action="access.granted").exists()
    assert AccessEvent.objects.filter(action="case.sealed").count() == 1


@pytest.mark.django_db
def test_seed_demo_grants_follow_the_caseworkers_teams(settings):
    seed(settings)
    by_team = {
        "caseworker": {"Refuge and arrival", "Resettlement"},
        "caseworker2": {"Resettlement", "Family reunification"},
    }
    for username, teams in by_team.items():
        worked = Case.objects.filter(pk__in=granted(username, "change_case"))
        assert worked.exists(), username
        assert {c.team.name for c in worked} <= teams, username
        assert granted(username, "view_whereabouts"), username


@pytest.mark.django_db
def test_seed_demo_run_twice_adds_nothing(settings):
    seed(settings)
    before = counts()
    out = seed(settings)
    assert counts() == before
    assert "none added" in out


@pytest.mark.django_db
def test_the_demo_caseworker_sees_only_the_cases_granted_to_them(settings):
    seed(settings)
    caseworker = User.objects.get(username="caseworker")
    visible = set(cases_for_user(caseworker).values_list("pk", flat=True))
    assert visible == granted("caseworker")
    assert 0 < len(visible) < Case.objects.count()
    sealed = Case.objects.get(sealed=True)
    assert sealed.pk not in visible
    assert not cases_for_user(caseworker).filter(team__name="Family reunification").exists()


@pytest.mark.django_db
def test_seed_demo_prints_a_summary_and_no_names(settings):
    out = seed(settings)
    assert f"Demo cases: {len(DEMO_CASES)} opened" in out
    words = set()
    for spec in DEMO_CASES:
        person = spec["person"]
        for name in [person["legal_name"], *person["other_names"]]:
            words.add(name)
            words.update(w for w in name.split() if len(w) > 3)
    printed = [w for w in words if w in out]
    assert not printed, printed


def test_benchmark_cases_section_compares_pages_with_plain_django(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "DEBUG": "1", "PASSAGE_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)  # its own scratch SQLite, whatever the suite runs on
    result = subprocess.run(
        [sys.executable, "manage.py", "benchmark", "cases", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(out.read_text())}
    assert {r["section"] for r in rows.values()} == {"cases"}
    for page in ("case list, page 1 of 200 visible", "case detail"):
        timing = rows[f"{page} (2,000 cases)"]
        assert timing["unit"] == "ms median" and timing["value"] > 0
        assert timing["ratio"] > 0
        queries = rows[f"{page}, queries"]
        assert queries["unit"] == "queries"
        # Session, user, device, roles, the page, the access log: never none.
        assert queries["value"] >= 5 and queries["ratio"] > 1
    # The plain list is a count and a page; the plain detail one row.
    assert rows["case list, page 1 of 200 visible, queries"]["note"] == "plain Django: 2"
    assert rows["case detail, queries"]["note"] == "plain Django: 1"
