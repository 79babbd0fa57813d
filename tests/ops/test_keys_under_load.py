"""Key rotation under load, with real processes: gunicorn (two workers) and a Celery
worker serve families and staff while `keyring add`, `rotate_keys` and `retire_key`
run as the README says. Nothing may fail, nothing may be wrapped under the old KEK once
the new one is active, and everything must open with the final key file."""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from casework import vault
from casework.models import DataKey
from casework.vault import registry
from families.models import FamilyRequest
from tests.base import grant, login_verified, make_case
from tests.ops.conftest import BROKER, CACHE, ROOT, database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A visitor with its own cookies (urllib; the server is real)."""

    def __init__(self, base, cookies=None):
        self.base, self.jar = base, CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.cookies = cookies or {}

    def request(self, path, data=None):
        body = None
        if data is not None:
            token = next((c.value for c in self.jar if c.name.endswith("csrftoken")), "")
            body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        req = urllib.request.Request(self.base + path, data=body, headers={"Referer": self.base})
        if self.cookies:
            req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""


def up(base) -> bool:
    try:
        return Browser(base).request("/contact/")[0] == 200
    except OSError:
        return False


@pytest.fixture
def keyfile(tmp_path, settings, monkeypatch):
    """The key file every process reads (and the test's database belongs to it)."""
    path = tmp_path / "keyring.json"
    vault.write_keyring(vault.Keyring.generate(), path)
    monkeypatch.delenv("PASSAGE_KEYRING_JSON")
    settings.PASSAGE_KEYRING = str(path)
    vault.reset_keyring()
    vault.keyring()
    yield path
    vault.reset_keyring()


def test_rotation_and_retirement_under_load_fail_nothing_and_wrap_nothing_under_the_old_kek(
    real, keyfile, tmp_path, personas
):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": BROKER,
        "REDIS_URL": CACHE,
        "PASSAGE_VAR_DIR": str(tmp_path),
        "PASSAGE_KEYRING": str(keyfile),
        "PASSAGE_CONTACT_RATE_PER_HOUR": "1000000",
        "PASSAGE_STATUS_RATE_PER_HOUR": "1000000",
        "PASSAGE_FORM_MIN_SECONDS": "0",
    }
    old = vault.keyring().active_kek_id
    cases = [make_case(personas.team, name=f"Load Person {i}") for i in range(3)]
    for case in cases:
        grant(case, personas.caseworker)
    session = login_verified(Client(), personas.caseworker).cookies["sessionid"].value
    worker = real(PASSAGE_KEYRING=str(keyfile))
    port = free_port()
    web_log = open(tmp_path / "gunicorn.log", "w")
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    results, stop, threads = [], threading.Event(), []

    def family(i):
        while not stop.is_set():
            visitor = Browser(base)
            status, html = visitor.request("/contact/")
            started = re.search(r'name="started" value="([^"]+)"', html)
            if status == 200 and started:
                status, html = visitor.request(
                    "/contact/",
                    {
                        "requester_name": f"Parent {i}",
                        "relationship": "mother",
                        "requester_country": "Norway",
                        "sought_names": f"Sought Person {i}",
                        "message": "Hello",
                        "consent_processing": "on",
                        "consent_nothing_shared": "on",
                        "consent_retention": "on",
                        "website": "",
                        "started": started.group(1),
                    },
                )
                status = status if re.search(r"FR-[0-9A-Z]{4}-[0-9A-Z]{4}", html) else -status
            results.append(("family", status, time.monotonic()))

    def staff():
        browser = Browser(base, cookies={"sessionid": session})
        while not stop.is_set():
            for case in cases:
                status, html = browser.request(reverse("case_detail", args=[case.pk]))
                ok = status == 200 and case.legal_name in html
                results.append(("staff", status if ok else -status, time.monotonic()))

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    try:
        wait_until(lambda: up(base), what="gunicorn")
        wait_until(
            lambda: registry.live_processes().filter(role="web").count() >= 2,
            what="both web workers' reports",
        )
        threads = [threading.Thread(target=family, args=(i,)) for i in range(3)]
        threads += [threading.Thread(target=staff) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        manage("keyring", "add", "--wait", "30")
        new = vault.keyring().active_kek_id  # the file this process reads, as the others do
        added = timezone.now()
        manage("rotate_keys")
        time.sleep(2)
        manage("retire_key", old, "--wait", "30")
        retired = time.monotonic()
        time.sleep(3)  # and the site goes on, under the new key only
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        web.terminate()
        web.wait(timeout=30)
        web_log.close()
    log = (tmp_path / "gunicorn.log").read_text()
    failed = [r for r in results if r[1] != 200]
    print(f"{len(results)} requests, {len(failed)} failed")  # `pytest -s` shows it
    assert failed == [], f"{len(failed)} of {len(results)} failed: {failed[:5]}\n{log[-2000:]}"
    assert sum(1 for r in results if r[0] == "family" and r[2] > retired) > 0
    assert sum(1 for r in results if r[0] == "staff" and r[2] > retired) > 0
    # Nothing written under the old KEK once the new one was active, and none left.
    assert not DataKey.objects.filter(created_at__gt=added, kek_id=old).exists()
    assert vault.key_usage() == {new: DataKey.objects.filter(shredded_at__isnull=True).count()}
    assert list(vault.keyring().keks) == [new]
    # The worker followed too: every family request was screened and matched.
    wait_until(
        lambda: not FamilyRequest.objects.filter(processed_at__isnull=True).exists(),
        seconds=120,
        what="the worker to process every request",
        worker=worker,
    )
    assert set(
        registry.live_processes().exclude(role="process").values_list("active_kek_id", flat=True)
    ) == {new}
    check = subprocess.run(
        [sys.executable, "manage.py", "verify_vault"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
