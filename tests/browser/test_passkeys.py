"""Passkeys in a real browser (issue 12, item 10): Chromium's virtual WebAuthn
authenticator, driven through Playwright's CDP session, plays the security key.

A coordinator, whose role the organisation says must use a passkey, logs in with an
app's code, is held on the second-factor page, adds a passkey, and at the next login
finds that only the passkey opens the door; a caseworker enrols a passkey as their very
first second factor, in Persian.
"""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django_otp_webauthn.models import WebAuthnCredential
from playwright.sync_api import expect

from casework.models import AccessEvent, Role
from tests.base import PASSWORD, make_team, make_user, totp_now

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def virtual_authenticator(page) -> tuple:
    """A platform authenticator that says yes at once (user present and verified)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def password_step(page, base_url, username, *, labels):
    page.goto(base_url + "/accounts/login/")
    page.get_by_label(labels["username"]).fill(username)
    page.get_by_label(labels["password"]).fill(PASSWORD)
    page.get_by_role("button", name=labels["login"]).click()


ENGLISH = {"username": "Username", "password": "Password", "login": "Log in"}
PERSIAN = {"username": "نام کاربری", "password": "گذرواژه", "login": "ورود"}


def assert_accessible(page):
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_a_coordinator_moves_from_a_code_to_a_passkey_and_then_needs_it(
    live_server, browser, settings
):
    settings.PASSAGE_PASSKEY_ROLES = [Role.COORDINATOR, Role.ADMINISTRATOR]
    coordinator = make_user("cora", Role.COORDINATOR, first_name="Cora")
    make_team("Team A", coordinators=[coordinator])
    code = totp_now(coordinator)
    context = browser.new_context()
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    cdp, authenticator = virtual_authenticator(page)

    # 1. The code still opens the door once, but only to the page where a passkey is added.
    password_step(page, live_server.url, "cora", labels=ENGLISH)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Your second factor")).to_be_visible()
    expect(page.get_by_text("Your role needs a passkey or security key")).to_be_visible()
    assert_accessible(page)
    page.goto(live_server.url + "/cases/")
    expect(page.get_by_role("heading", name="Your second factor")).to_be_visible()

    # 2. Adding the passkey: the browser asks the authenticator, the page reloads with it.
    page.get_by_role("button", name="Add a passkey or security key").click()
    expect(page.get_by_role("button", name="Rename")).to_be_visible()
    assert (
        len(cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"])
        == 1
    )
    page.goto(live_server.url + "/cases/")
    expect(page.get_by_role("heading", name="Cases")).to_be_visible()

    # 3. Next login: no code box any more; the passkey button takes the coordinator on.
    page.get_by_role("button", name="Show menu").click()  # the phone's collapsed menu
    page.get_by_role("button", name="Log out").click()
    password_step(page, live_server.url, "cora", labels=ENGLISH)
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    expect(page.get_by_label("Code")).to_have_count(0)
    assert_accessible(page)
    page.get_by_role("button", name="Use your passkey or security key").click()
    expect(page.get_by_role("heading", name="Welcome, Cora")).to_be_visible()
    context.close()

    key = WebAuthnCredential.objects.get(user=coordinator)
    assert key.last_used_at is not None
    methods = list(
        AccessEvent.objects.filter(action="auth.verified")
        .order_by("seq")
        .values_list("detail", flat=True)
    )
    assert methods == [{"method": "authenticator"}, {"method": "passkey"}, {"method": "passkey"}]
    (added,) = AccessEvent.objects.filter(action="staff.passkey_added")
    assert added.flagged


def test_a_new_caseworker_enrols_a_passkey_first_in_persian(live_server, browser):
    make_user("nima", Role.CASEWORKER, device=False, first_name="Nima")
    context = browser.new_context(locale="fa-IR")
    page = context.new_page()
    virtual_authenticator(page)
    password_step(page, live_server.url, "nima", labels=PERSIAN)
    assert page.locator("html").get_attribute("dir") == "rtl"
    page.get_by_role("button", name="افزودن کلید عبور یا کلید امنیتی").click()
    # After a first enrolment come the backup codes, shown once.
    expect(page.locator(".backup-codes li")).to_have_count(10)
    assert_accessible(page)
    context.close()
    key = WebAuthnCredential.objects.get(user__username="nima")
    assert key.confirmed
    (enrolled,) = AccessEvent.objects.filter(action="staff.second_factor_enrolled")
    assert enrolled.detail == {"kind": "passkey"}
