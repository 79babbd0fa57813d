"""Personas and small helpers shared by the whole suite."""

import uuid

import pytest
from django.urls import URLResolver, get_resolver
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP

from casework.models import Role, Team, User, VaultTOTPDevice

PASSWORD = "correct-horse-battery-9"
SAMPLE_UUID = "6f1c2b1e-8d1a-4f3e-9c55-0b7d3a1e2f40"


def make_user(username, role=None, *, device=True, **extra) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if role:
        user.groups.add(Role.group(role))
    if device:
        VaultTOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user


def make_team(name="Team A", *, coordinators=(), members=(), family_triage=False) -> Team:
    team = Team.objects.create(name=name, family_triage=family_triage)
    team.coordinators.add(*coordinators)
    team.members.add(*members)
    return team


def totp_now(user, offset=0) -> str:
    """The code the user's authenticator shows now (offset in steps)."""
    import time

    device = VaultTOTPDevice.objects.get(user=user, confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset * device.step
    return f"{totp.token():0{device.digits}d}"


def login_verified(client, user):
    """Log in with both factors done (as if the TOTP step had passed)."""
    client.force_login(user)
    device = VaultTOTPDevice.objects.get(user=user, confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def make_case(team, *, actor=None, name="Maryam Karimi", **person):
    """A case opened through the service, as a caseworker or coordinator would."""
    from casework.services import case_open

    actor = actor or team.coordinators.first() or team.members.first()
    return case_open(
        actor=actor,
        team=team,
        person={"legal_name": name, **person},
        aims=["refuge"],
        risk="medium",
    )


def grant(case, user, level="work"):
    from guardian.shortcuts import assign_perm

    from casework.access import GRANTS

    for perm in GRANTS[level]:
        assign_perm(perm, user, case)


def consent_to_relay(case, actor, contact, **extra):
    """The person agrees, in person, to messages relayed with `contact` (current notice)."""
    from contacts.models import NoticeText
    from contacts.services import consent_record

    return consent_record(
        actor=actor,
        case=case,
        purpose="relay",
        decision="granted",
        method="in_person",
        counterpart=contact,
        notice=NoticeText.current("relay", "en"),
        **extra,
    )


class Personas:
    """The people every access test needs, created once per test."""

    def __init__(self):
        self.coordinator = make_user("coordinator", Role.COORDINATOR, first_name="Cora")
        self.other_coordinator = make_user("coordinator2", Role.COORDINATOR, first_name="Cato")
        self.caseworker = make_user("caseworker", Role.CASEWORKER, first_name="Casey")
        self.other_caseworker = make_user("outsider", Role.CASEWORKER, first_name="Otto")
        self.auditor = make_user("auditor", Role.AUDITOR)
        self.administrator = make_user("administrator", Role.ADMINISTRATOR)
        self.superuser = make_user("root", None, is_superuser=True, is_staff=True)
        # A read-only caseworker of Team A: tests grant them "view" on a case.
        self.reader = make_user("reader", Role.CASEWORKER, first_name="Rea")
        # Team A triages unmatched family requests; Team B does not.
        self.team = make_team(
            "Team A",
            coordinators=[self.coordinator],
            members=[self.caseworker, self.reader],
            family_triage=True,
        )
        self.other_team = make_team(
            "Team B", coordinators=[self.other_coordinator], members=[self.other_caseworker]
        )

    # The anonymous visitor: no account, no session (the family, or anyone on the internet).
    anonymous = None

    def client(self, persona):
        """A test client logged in (both factors) as the persona; anonymous for None."""
        from django.test import Client

        return Client() if persona is None else login_verified(Client(), persona)

    def outsiders(self):
        """Staff with no access to a Team A case that only `caseworker` is named on."""
        return [
            self.other_caseworker,
            self.other_coordinator,
            self.auditor,
            self.administrator,
            self.superuser,
        ]

    def staff(self):
        return [
            self.coordinator,
            self.other_coordinator,
            self.caseworker,
            self.other_caseworker,
            self.auditor,
            self.administrator,
            self.superuser,
        ]


@pytest.fixture
def personas(db):
    return Personas()


# Sample values for URL parameters, by name first, then by converter.
PARAM_SAMPLES = {"app_label": "casework", "model_name": "user", "object_id": SAMPLE_UUID}
CONVERTER_SAMPLES = {"UUIDConverter": SAMPLE_UUID, "IntConverter": "1", "PathConverter": "x"}


def url_params(resolver=None):
    """{url name: [parameter names]} for the project's own (non-namespaced) patterns."""
    resolver = resolver or get_resolver()
    out = {}
    for key in resolver.reverse_dict:
        if isinstance(key, str):
            for possibilities, *_ in resolver.reverse_dict.getlist(key):
                for _fmt, params in possibilities:
                    out[key] = list(params)
    return out


def url_patterns(resolver=None, prefix="/", namespace=""):
    """Every URL pattern of the project as (name, sample path), so new ones are covered
    by the tests automatically."""
    resolver = resolver or get_resolver()
    seen = set()
    for key in resolver.reverse_dict:
        if not isinstance(key, str):
            continue
        for possibilities, _pattern, _defaults, converters in resolver.reverse_dict.getlist(key):
            for fmt, params in possibilities:
                values = {
                    p: PARAM_SAMPLES.get(p)
                    or CONVERTER_SAMPLES.get(type(converters.get(p)).__name__, "1")
                    for p in params
                }
                path = prefix + fmt % values
                if path not in seen:
                    seen.add(path)
                    yield namespace + key, path
    for ns, (ns_prefix, sub) in resolver.namespace_dict.items():
        assert isinstance(sub, URLResolver)
        yield from url_patterns(sub, prefix + ns_prefix, namespace + ns + ":")


def new_uuid() -> str:
    return str(uuid.uuid4())


def run_benchmark(tmp_path, section: str) -> dict:
    """`manage.py benchmark SECTION --quick` in a subprocess (its own scratch SQLite,
    whatever the suite runs on); the rows by name."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / f"bench-{section}.json"
    env = {**os.environ, "DEBUG": "1", "PASSAGE_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "benchmark", section, "--quick", "--json", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(out.read_text())}


def form_state(response) -> dict:
    """The hidden `version` (and `loaded`) an edit page gave its form, to post back as a
    browser would (casework/versions.py)."""
    import html
    import re

    page = response.content.decode()
    found = {}
    for name in ("version", "loaded"):
        match = re.search(rf'name="{name}" value="([^"]*)"', page)
        if match:
            found[name] = html.unescape(match[1])
    return found


def at_once(job, n: int = 2) -> list:
    """`job()` in `n` threads started at the same moment, each on its own database
    connection (closed after); their results. Any exception fails the caller."""
    import threading

    from django.db import connection

    start, results, errors = threading.Barrier(n), [], []

    def run():
        try:
            start.wait()
            results.append(job())
        except Exception as exc:  # shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    return results
