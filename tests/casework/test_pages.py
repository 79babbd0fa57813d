"""Headers, languages, health and the home page of each role."""

import pytest
from django.test import Client, override_settings
from django.urls import resolve, reverse

from casework.models import Role
from tests.base import SAMPLE_UUID, login_verified, make_user, url_patterns

pytestmark = pytest.mark.django_db


def staff_pages():
    """GET-able staff pages without parameters (the ones a browser opens directly)."""
    for name, path in url_patterns():
        view = resolve(path).func
        if getattr(view, "passage_access", None) == "public" or "<" in path:
            continue
        if name in ("backup_codes", "logout", "set_language", "admin:autocomplete", "admin:logout"):
            continue  # POST only, or needs query parameters
        if SAMPLE_UUID in path or "/1/" in path or path.endswith("/x"):
            continue  # object pages need real ids
        yield name, path


# What an administrator gets from each staff page that is not a 200, and why. Every
# other page must answer 200: a page that starts refusing (or stops) fails here.
ADMINISTRATOR_NOT_200 = {
    # casework, queues, family requests and the log are other roles' work
    **dict.fromkeys(
        [
            "audit_checkpoint",
            "audit_export",
            "audit_unusual",
            "audit_log",
            "family_triage",
            "review_queue",
            "task_template_new",
            "task_templates",
            "board",
            "team_queue",
            "my_queue",
            "break_glass",
            "case_new",
            "case_list",
        ],
        403,
    ),
    # admin pages no one may use: second factors and lockout records are made elsewhere
    **dict.fromkeys(
        [
            "admin:axes_accessattempt_add",
            "admin:axes_accessfailurelog_add",
            "admin:axes_accesslog_add",
            "admin:casework_vaulttotpdevice_add",
            "admin:casework_backupcodedevice_add",
            "admin:django_otp_webauthn_webauthncredential_add",
            "admin:django_otp_webauthn_webauthncredential_changelist",
        ],
        403,
    ),
    # POST only
    **dict.fromkeys(
        [
            "board_assign",
            "case_search",
            "authenticator_remove",
            "otp_webauthn:credential-authentication-begin",
            "otp_webauthn:credential-authentication-complete",
            "otp_webauthn:credential-registration-begin",
            "otp_webauthn:credential-registration-complete",
        ],
        405,
    ),
    # already enrolled and verified: on to the next step; the admin's own login is ours
    "enrol": 302,
    "verify": 302,
    "admin:login": 302,
}


def test_every_staff_page_sends_the_security_headers(personas):
    client = login_verified(Client(), personas.administrator)
    checked = 0
    for name, path in staff_pages():
        response = client.get(path)
        expected = ADMINISTRATOR_NOT_200.get(name, 200)
        assert response.status_code == expected, (name, path, response.status_code)
        checked += response.status_code == 200
        csp = response["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, name
        assert "'unsafe-inline'" not in csp, name
        assert response["Cache-Control"] == "no-store", name
        assert response["X-Content-Type-Options"] == "nosniff", name
        assert response["X-Frame-Options"] == "DENY", name
    assert checked >= 10


def test_scripts_carry_the_csp_nonce(personas):
    client = login_verified(Client(), personas.caseworker)
    response = client.get(reverse("home"))
    csp = response["Content-Security-Policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    html = response.content.decode()
    assert html.count("<script") == html.count(f'nonce="{nonce}"') >= 2
    assert "style=" not in html


def test_nonce_differs_between_requests(personas):
    client = login_verified(Client(), personas.caseworker)
    first = client.get(reverse("home"))["Content-Security-Policy"]
    second = client.get(reverse("home"))["Content-Security-Policy"]
    assert first != second


def test_login_page_is_not_cached_either(client):
    response = client.get(reverse("login"))
    assert response["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@override_settings(
    SECURE_HSTS_SECONDS=63072000,
    SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
    SECURE_HSTS_PRELOAD=True,
    SECURE_SSL_REDIRECT=True,
    SESSION_COOKIE_SECURE=True,
    CSRF_COOKIE_SECURE=True,
)
def test_production_profile_sends_hsts_and_redirects_to_https(personas):
    client = login_verified(Client(), personas.caseworker)
    assert client.get(reverse("home")).status_code == 301  # plain http goes to https
    response = client.get(reverse("home"), secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == ("max-age=63072000; includeSubDomains; preload")


def test_no_page_loads_anything_from_another_site(personas):
    client = login_verified(Client(), personas.caseworker)
    for path in (reverse("home"), reverse("login")):
        html = client.get(path).content.decode()
        assert "http://" not in html and "https://" not in html and "//cdn" not in html


def test_persian_is_right_to_left_with_the_rtl_stylesheet(personas):
    client = login_verified(Client(HTTP_ACCEPT_LANGUAGE="fa"), personas.caseworker)
    html = client.get(reverse("home")).content.decode()
    assert '<html lang="fa" dir="rtl">' in html
    assert "css/bootstrap.rtl.min.css" in html
    assert "css/bootstrap.min.css" not in html
    assert "خروج" in html  # "Log out", from the committed .mo file


def test_english_is_left_to_right(personas):
    client = login_verified(Client(HTTP_ACCEPT_LANGUAGE="en"), personas.caseworker)
    html = client.get(reverse("home")).content.decode()
    assert '<html lang="en" dir="ltr">' in html
    assert "css/bootstrap.min.css" in html


def test_language_switcher_works_without_logging_in(client):
    response = client.post(reverse("set_language"), {"language": "fa", "next": "/accounts/login/"})
    assert response.status_code == 302
    html = client.get(reverse("login")).content.decode()
    assert 'dir="rtl"' in html


def test_healthz_says_ok(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.content == b"ok"


def test_healthz_says_fail_without_details_when_the_cache_is_down(client, monkeypatch):
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("cache at 10.0.0.5:6379 refused")

    monkeypatch.setattr(cache, "set", broken)
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.content == b"fail"


def test_healthz_fails_when_the_configured_broker_is_unreachable(client, settings, monkeypatch):
    from config.celery import app

    dead = "redis://127.0.0.1:1/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = dead
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", dead)
    monkeypatch.setattr(app.conf, "broker_url", dead)
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.content == b"fail"


def test_home_shows_a_caseworker_their_team(personas):
    html = login_verified(Client(), personas.caseworker).get(reverse("home")).content.decode()
    assert "Team A" in html and "Team B" not in html
    assert "Cora" in html  # the team's coordinator
    assert "Staff accounts" not in html


def test_home_shows_an_administrator_real_counts(personas):
    make_user("fresh", Role.CASEWORKER, device=False)
    response = login_verified(Client(), personas.administrator).get(reverse("home"))
    staff = response.context["staff"]
    assert staff["teams"] == 2
    assert staff["active_users"] == 9
    assert staff["without_second_factor"] == 1
    assert dict((str(k), v) for k, v in staff["roles"])["Caseworker"] == 4


def test_admin_is_for_administrators_only(personas):
    ok = login_verified(Client(), personas.administrator).get(reverse("admin:index"))
    assert ok.status_code == 200
    for user in (personas.coordinator, personas.caseworker, personas.auditor, personas.superuser):
        response = login_verified(Client(), user).get(reverse("admin:index"))
        assert response.status_code == 302, user.username
        assert "/admin/login/" in response["Location"]


def test_admin_lists_staff_and_teams_but_no_case_content(personas):
    html = login_verified(Client(), personas.administrator).get(reverse("admin:index"))
    models = {m["object_name"] for app in html.context["app_list"] for m in app["models"]}
    assert {"User", "Team"} <= models
    assert not models & {"Case", "Note", "Whereabouts"}


def test_an_administrator_cannot_change_their_own_roles(personas):
    client = login_verified(Client(), personas.administrator)
    url = reverse("admin:casework_user_change", args=[personas.administrator.pk])
    form = client.get(url).context["adminform"].form
    assert "groups" not in form.fields


def test_error_pages_carry_no_data(client):
    response = client.get("/no-such-page-P-2026-0042/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "P-2026-0042" not in html
    assert "Page not found" in html
