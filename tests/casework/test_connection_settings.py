"""Persistent database connections (issue 14, item 6): on PostgreSQL a process keeps its
connection for a minute instead of opening one per request, checked before reuse; SQLite
(`make run`) keeps opening one per request; DATABASE_CONN_MAX_AGE overrides both."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def database_settings(tmp_path, **env) -> dict:
    """CONN_MAX_AGE and CONN_HEALTH_CHECKS as config/settings.py makes them, in a fresh
    process with this environment."""
    base = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_CONN_MAX_AGE")
    }
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "d = settings.DATABASES['default']; "
        "print(json.dumps([d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS']]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **base,
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PASSAGE_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    max_age, checks = json.loads(result.stdout.strip().splitlines()[-1])
    return {"max_age": max_age, "checks": checks}


@pytest.mark.parametrize(
    "env, max_age",
    [
        ({"DATABASE_URL": "postgres://passage@127.0.0.1:5432/passage"}, 60),
        ({}, 0),  # SQLite, the default of `make run`
        (
            {
                "DATABASE_URL": "postgres://passage@127.0.0.1:5432/passage",
                "DATABASE_CONN_MAX_AGE": "0",
            },
            0,
        ),
        ({"DATABASE_CONN_MAX_AGE": "30"}, 30),
    ],
)
def test_connections_are_kept_on_postgresql_and_checked_before_reuse(tmp_path, env, max_age):
    assert database_settings(tmp_path, **env) == {"max_age": max_age, "checks": True}
