import time

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import resolve, reverse

from casework.models import BackupCode, BackupCodeDevice, Role, VaultTOTPDevice
from tests.base import PASSWORD, login_verified, make_user, totp_now, url_patterns

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def is_public(path):
    return getattr(resolve(path).func, "passage_access", None) == "public"


def login_password(client, username, password=PASSWORD):
    return client.post(LOGIN, {"username": username, "password": password})


def test_url_walk_finds_staff_and_admin_patterns():
    names = {name for name, _path in url_patterns()}
    # The walk must see our own pages and the admin's, or the sweeps below prove nothing.
    assert {"home", "verify", "enrol", "admin:index", "admin:casework_user_change"} <= names
    # The holder's links and the administrator's account actions are walked too.
    assert {
        "admin:account_password_set",
        "admin:account_enrolment_link",
        "admin:casework_user_reset_second_factor",
        "admin:casework_user_send_password_reset",
    } <= names


def test_every_staff_url_sends_anonymous_to_login(client):
    checked = 0
    for name, path in url_patterns():
        if is_public(path):
            continue
        for method in (client.get, client.post):
            response = method(path)
            assert response.status_code == 302, (name, path, response.status_code)
            assert response["Location"].startswith(LOGIN), (name, path)
        checked += 1
    assert checked > 20


def test_password_only_session_is_sent_to_the_second_factor(client, personas):
    login_password(client, "caseworker")
    for name, path in url_patterns():
        view = resolve(path).func
        if getattr(view, "passage_access", None) in ("public", "password"):
            continue
        response = client.get(path)
        assert response.status_code == 302, (name, path)
        assert response["Location"].startswith(reverse("verify")), (name, path)


def test_account_without_device_is_sent_to_enrolment(client, db):
    make_user("newcomer", Role.CASEWORKER, device=False)
    response = login_password(client, "newcomer")
    assert response["Location"].startswith(reverse("enrol"))
    assert client.get(reverse("home"))["Location"].startswith(reverse("enrol"))


def test_full_login_with_totp_reaches_home(client, personas):
    response = login_password(client, "caseworker")
    assert response.status_code == 302 and response["Location"].startswith(reverse("verify"))
    response = client.post(reverse("verify"), {"otp_token": totp_now(personas.caseworker)})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    page = client.get(reverse("home"))
    assert page.status_code == 200
    assert "Team A" in page.content.decode()


def test_a_totp_code_cannot_be_used_twice(personas):
    code = totp_now(personas.caseworker)
    first, second = Client(), Client()
    login_password(first, "caseworker")
    assert first.post(reverse("verify"), {"otp_token": code})["Location"] == reverse("home")
    login_password(second, "caseworker")
    response = second.post(reverse("verify"), {"otp_token": code})
    assert response.status_code == 200
    assert "not accepted" in response.content.decode()
    assert second.get(reverse("home")).status_code == 302


def test_wrong_totp_code_is_refused_with_a_clear_message(client, personas):
    login_password(client, "caseworker")
    wrong = "000000" if totp_now(personas.caseworker) != "000000" else "111111"
    response = client.post(reverse("verify"), {"otp_token": wrong})
    assert response.status_code == 200
    assert "not accepted" in response.content.decode()


def test_enrolment_shows_a_qr_code_and_confirms_the_device(client, db):
    user = make_user("newcomer", Role.CASEWORKER, device=False)
    login_password(client, "newcomer")
    page = client.get(reverse("enrol"))
    assert page.status_code == 200
    assert "<svg" in page.content.decode()
    device = VaultTOTPDevice.objects.get(user=user, confirmed=False)
    # Same unconfirmed device on reload: the secret in the app stays valid.
    client.get(reverse("enrol"))
    assert VaultTOTPDevice.objects.filter(user=user).count() == 1
    device.confirmed = True  # only to compute the code with the helper
    device.save()
    code = totp_now(user)
    device.confirmed = False
    device.save()
    response = client.post(reverse("enrol"), {"otp_token": code})
    assert response.status_code == 200
    assert VaultTOTPDevice.objects.get(user=user).confirmed
    codes = response.context["codes"]
    assert len(codes) == 10
    assert client.get(reverse("home")).status_code == 200


def test_backup_codes_are_hashed_and_single_use(personas):
    client = login_verified(Client(), personas.caseworker)
    codes = client.post(reverse("backup_codes")).context["codes"]
    stored = list(BackupCode.objects.values_list("code_hash", flat=True))
    assert len(stored) == 10
    for code in codes:
        plain = code.replace("-", "")
        assert all(plain not in h and code not in h for h in stored)
    assert any(check_password(codes[0].replace("-", ""), h) for h in stored)

    first = Client()
    login_password(first, "caseworker")
    assert first.post(reverse("verify"), {"otp_token": codes[0]})["Location"] == reverse("home")
    second = Client()
    login_password(second, "caseworker")
    response = second.post(reverse("verify"), {"otp_token": codes[0]})
    assert response.status_code == 200
    # Each failure slows the next try down (django-otp throttling); wait it out here.
    BackupCodeDevice.objects.update(throttling_failure_count=0)
    # Lower case and without the hyphen works too.
    third = Client()
    login_password(third, "caseworker")
    ok = third.post(reverse("verify"), {"otp_token": codes[1].replace("-", "").lower()})
    assert ok["Location"] == reverse("home")
    device = BackupCodeDevice.objects.get(user=personas.caseworker)
    assert device.remaining() == 8


def test_new_backup_codes_replace_the_old_ones(personas):
    client = login_verified(Client(), personas.caseworker)
    old = client.post(reverse("backup_codes")).context["codes"]
    client.post(reverse("backup_codes"))
    other = Client()
    login_password(other, "caseworker")
    assert other.post(reverse("verify"), {"otp_token": old[0]}).status_code == 200


def test_backup_codes_page_refuses_get(personas):
    client = login_verified(Client(), personas.caseworker)
    assert client.get(reverse("backup_codes")).status_code == 405


def _strip_tokens(html: str) -> str:
    import re

    html = re.sub(r'value="[A-Za-z0-9]{64}"', "", html)  # CSRF tokens
    return re.sub(r'nonce="[^"]+"', "", html)


def test_unknown_user_and_wrong_password_get_the_same_answer(personas):
    unknown = login_password(Client(), "nobody-here", "wrong-password-123")
    wrong = login_password(Client(), "caseworker", "wrong-password-123")
    assert unknown.status_code == wrong.status_code == 200
    assert _strip_tokens(unknown.content.decode()).replace("nobody-here", "X") == _strip_tokens(
        wrong.content.decode()
    ).replace("caseworker", "X")


def test_lockout_after_repeated_failures_by_username_and_address(personas, settings):
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login_password(client, "caseworker", "wrong-password-123").status_code == 200
    assert login_password(client, "caseworker", "wrong-password-123").status_code == 429
    locked = login_password(client, "caseworker")  # even the right password
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # The same account from another address is not locked: nobody can lock staff out.
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert login_password(elsewhere, "caseworker")["Location"].startswith(reverse("verify"))


def test_lockout_by_address_across_usernames(personas, settings):
    client = Client(REMOTE_ADDR="203.0.113.8")
    for i in range(settings.AXES_FAILURE_LIMIT):
        login_password(client, f"guess{i}", "wrong-password-123")
    assert login_password(client, "coordinator").status_code == 429


def test_session_id_changes_at_login(personas):
    client = Client()
    session = client.session
    session["before"] = 1
    session.save()
    before = session.session_key
    login_password(client, "caseworker")
    after = client.cookies["sessionid"].value
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()


def test_idle_session_ends_after_thirty_minutes(personas, settings):
    client = login_verified(Client(), personas.caseworker)
    assert client.get(reverse("home")).status_code == 200
    key = client.session.session_key
    session = client.session
    session["passage_seen_at"] = int(time.time()) - settings.SESSION_IDLE_SECONDS - 5
    session.save()
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    assert not Session.objects.filter(session_key=key).exists()


def test_recent_activity_keeps_the_session(personas, settings):
    client = login_verified(Client(), personas.caseworker)
    session = client.session
    session["passage_seen_at"] = int(time.time()) - settings.SESSION_IDLE_SECONDS + 60
    session.save()
    assert client.get(reverse("home")).status_code == 200


def test_session_ends_after_eight_hours_even_when_active(personas, settings):
    client = login_verified(Client(), personas.caseworker)
    session = client.session
    session["passage_auth_at"] = int(time.time()) - settings.SESSION_ABSOLUTE_SECONDS - 5
    session["passage_seen_at"] = int(time.time())
    session.save()
    assert client.get(reverse("home"))["Location"].startswith(LOGIN)


def test_logout_ends_the_server_side_session(personas):
    client = login_verified(Client(), personas.caseworker)
    client.get(reverse("home"))
    key = client.session.session_key
    assert Session.objects.filter(session_key=key).exists()
    assert client.get(reverse("logout")).status_code == 405  # POST only
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert not Session.objects.filter(session_key=key).exists()
    assert client.get(reverse("home"))["Location"].startswith(LOGIN)


def test_next_parameter_survives_the_second_factor(personas):
    client = Client()
    response = client.get(reverse("admin:index"))
    assert response["Location"] == LOGIN + "?next=%2Fadmin%2F"
    response = client.post(
        LOGIN + "?next=/admin/", {"username": "administrator", "password": PASSWORD}
    )
    assert response["Location"] == reverse("verify") + "?next=%2Fadmin%2F"
    response = client.post(response["Location"], {"otp_token": totp_now(personas.administrator)})
    assert response["Location"] == "/admin/"


def test_next_parameter_cannot_leave_the_site(personas):
    client = Client()
    login_password(client, "caseworker")
    response = client.post(
        reverse("verify") + "?next=https://evil.example/",
        {"otp_token": totp_now(personas.caseworker)},
    )
    assert response["Location"] == reverse("home")
