"""The production profile, run as production runs it: manage.py in a fresh process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from casework.models import Role, Team, User
from config import settings as config_settings

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path, **extra):
    """The production profile: DEBUG off, a secret key of its own, Redis as broker and
    cache (checks do not connect to it). An extra of None removes that variable."""
    import secrets

    drop = (
        "DEBUG",
        "DATABASE_URL",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "PASSAGE_FAULT_DELAY_SECONDS",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="passage.example.org",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        PASSAGE_KEYRING=str(tmp_path / "keyring.json"),
        PASSAGE_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="config.settings",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        REDIS_URL="redis://127.0.0.1:6379/1",
        PASSAGE_BASE_URL="https://passage.example.org",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_check_deploy_is_clean_in_the_production_profile(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# Each is an Error (not a warning) of `check --deploy` in the production profile.
UNSAFE = {
    # No broker: screening and matching would run inside the family's request, so its
    # duration and query count would tell whether the name matched anyone.
    "no broker": ({"CELERY_BROKER_URL": None}, "passage.E010"),
    "the development secret key": (
        {"SECRET_KEY": "dev-only-insecure-key-do-not-use-in-production-" + "x" * 16},
        "passage.E011",
    ),
    "the README's placeholder key": ({"SECRET_KEY": "<50+ random characters>"}, "passage.E011"),
    "any host": ({"ALLOWED_HOSTS": "passage.example.org,*"}, "passage.E012"),
    "a fault-injection delay": ({"PASSAGE_FAULT_DELAY_SECONDS": "0.5"}, "passage.E013"),
    # A local-memory cache: rate limits would count per process.
    "no shared cache": ({"REDIS_URL": None}, "passage.E014"),
    # Links with reset tokens in clear, and passkeys bound to an origin that is not ours.
    "a plain http site": ({"PASSAGE_BASE_URL": "http://passage.example.org"}, "passage.E015"),
}


@pytest.mark.parametrize("unsafe", sorted(UNSAFE))
def test_check_deploy_refuses_an_unsafe_production_setting(tmp_path, unsafe):
    change, code = UNSAFE[unsafe]
    env = production_env(tmp_path, **change)
    result = manage(env, "check", "--deploy", "--fail-level", "ERROR")
    assert result.returncode != 0, result.stdout
    assert f"ERRORS:\n?: ({code})" in result.stderr, result.stderr
    others = set(re.findall(r"\(passage\.E\d+\)", result.stderr)) - {f"({code})"}
    assert others == set(), result.stderr  # that one setting, nothing else


def test_the_deploy_checks_leave_the_development_profile_alone(tmp_path):
    env = production_env(
        tmp_path,
        DEBUG="1",
        SECRET_KEY=None,
        REDIS_URL=None,
        CELERY_BROKER_URL="filesystem://",  # as `make run` starts it
        ALLOWED_HOSTS=None,
    )
    result = manage(env, "check", "--deploy")
    assert "passage.E01" not in result.stderr, result.stderr
    assert manage(env, "check").returncode == 0


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = manage(env, "check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts(tmp_path):
    env = production_env(tmp_path)
    del env["ALLOWED_HOSTS"]
    result = manage(env, "check")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


def test_production_cookies_are_secure_and_host_prefixed(tmp_path):
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.DEBUG)"
    )
    result = manage(production_env(tmp_path), "shell", "--no-imports", "-c", code)
    assert result.stdout.split() == [
        "__Host-sessionid",
        "__Host-csrftoken",
        "True",
        "True",
        "True",
        "False",
    ], result.stderr


def test_argon2_is_the_first_password_hasher():
    # Tests swap in a fast hasher; the configured list is what production uses.
    assert config_settings.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")


def test_passwords_need_twelve_characters():
    with pytest.raises(ValidationError):
        validate_password("Xk7#qPz9!wL")  # 11
    validate_password("Xk7#qPz9!wLm")  # 12


def test_sessions_are_short():
    assert settings.SESSION_IDLE_SECONDS == 30 * 60
    assert settings.SESSION_ABSOLUTE_SECONDS == 8 * 60 * 60
    assert settings.SESSION_COOKIE_AGE <= 8 * 60 * 60
    assert settings.PASSWORD_RESET_TIMEOUT <= 60 * 60


def test_tasks_run_eagerly_in_tests():
    from config.celery import app

    assert app.conf.task_always_eager


@pytest.mark.django_db
def test_roles_exist_after_migrate():
    assert set(Group.objects.values_list("name", flat=True)) >= set(Role.values)
    admin_perms = set(
        Group.objects.get(name=Role.ADMINISTRATOR).permissions.values_list("codename", flat=True)
    )
    assert {"change_user", "add_team", "delete_totpdevice"} <= admin_perms
    for role in (Role.CASEWORKER, Role.COORDINATOR, Role.AUDITOR):
        assert not Group.objects.get(name=role).permissions.exists()


@pytest.mark.django_db
def test_seed_demo_refuses_when_debug_is_off():
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not User.objects.exists()


@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_seed_demo_creates_one_user_per_role_and_can_run_again(capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    for role in Role.values:
        assert User.objects.filter(groups__name=role).exists(), role
    assert User.objects.count() == 5
    assert Team.objects.count() == 3
    coordinator = User.objects.get(username="coordinator")
    assert coordinator.led_teams.count() == 3
    out = capsys.readouterr().out
    assert "passage-demo-2026" in out and "caseworker" in out


def test_keyring_generate_writes_a_private_file_and_never_overwrites(tmp_path):
    path = tmp_path / "keys" / "keyring.json"
    call_command("keyring", "generate", "--path", str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()
    with pytest.raises(CommandError, match="refusing to overwrite"):
        call_command("keyring", "generate", "--path", str(path))
    call_command("keyring", "generate", "--path", str(path), "--if-missing")
    assert path.read_bytes() == before


@pytest.mark.django_db
def test_create_staff_makes_an_account_with_its_role(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-passphrase\n"))
    call_command("create_staff", "alice", "--role", "administrator", "--password-stdin")
    alice = User.objects.get(username="alice")
    assert alice.roles == {"administrator"}
    assert not alice.is_superuser
    assert alice.check_password("a-long-enough-passphrase")


@pytest.mark.django_db
def test_create_staff_refuses_a_short_password(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("create_staff", "bob", "--role", "caseworker", "--password-stdin")
    assert not User.objects.filter(username="bob").exists()


def test_production_requires_passkeys_of_coordinators_and_administrators(tmp_path):
    code = (
        "from django.conf import settings as s;"
        "print(','.join(s.PASSAGE_PASSKEY_ROLES), s.OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN,"
        " s.OTP_WEBAUTHN_RP_ID, ','.join(s.OTP_WEBAUTHN_ALLOWED_ORIGINS))"
    )
    result = manage(production_env(tmp_path), "shell", "--no-imports", "-c", code)
    assert result.stdout.split() == [
        "coordinator,administrator",
        "False",  # a passkey is a second factor, never a login without the password
        "passage.example.org",
        "https://passage.example.org",
    ], result.stderr
    # The organisation can widen (or, knowingly, narrow) it.
    widened = production_env(tmp_path, PASSAGE_PASSKEY_ROLES="coordinator,administrator,caseworker")
    result = manage(widened, "shell", "--no-imports", "-c", code)
    assert result.stdout.split()[0] == "coordinator,administrator,caseworker"
