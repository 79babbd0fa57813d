"""A demo caseworker logs in with both factors in a real browser, in English and Persian."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core.management import call_command
from playwright.sync_api import expect

from casework.models import User
from tests.base import totp_now

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

DEMO_PASSWORD = "passage-demo-2026"


@pytest.fixture
def demo(settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=open("/dev/null", "w"))
    settings.DEBUG = False
    return User.objects.get(username="caseworker")


def log_in(page, base_url, user, *, labels):
    code = totp_now(user)  # read before the server gets busy (SQLite locks whole tables)
    page.goto(base_url + "/")
    page.get_by_label(labels["username"]).fill(user.username)
    page.get_by_label(labels["password"]).fill(DEMO_PASSWORD)
    page.get_by_role("button", name=labels["login"]).click()
    page.get_by_label(labels["code"]).fill(code)
    page.get_by_role("button", name=labels["verify"]).click()


def assert_accessible(page):
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_demo_caseworker_logs_in_with_the_second_factor(live_server, page, demo):
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Staff login")).to_be_visible()
    assert_accessible(page)
    log_in(
        page,
        live_server.url,
        demo,
        labels={
            "username": "Username",
            "password": "Password",
            "login": "Log in",
            "code": "Code",
            "verify": "Verify",
        },
    )
    expect(page.get_by_role("heading", name="Welcome, Jonas")).to_be_visible()
    expect(page.get_by_role("cell", name="Refuge and arrival")).to_be_visible()
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert_accessible(page)


def test_in_persian_the_pages_are_right_to_left(live_server, browser, demo):
    context = browser.new_context(locale="fa-IR")
    page = context.new_page()
    page.goto(live_server.url + "/")
    html = page.locator("html")
    assert html.get_attribute("dir") == "rtl"
    assert html.get_attribute("lang") == "fa"
    rtl_css = page.locator('link[href$="bootstrap.rtl.min.css"]')
    expect(rtl_css).to_have_count(1)
    assert_accessible(page)
    log_in(
        page,
        live_server.url,
        demo,
        labels={
            "username": "نام کاربری",
            "password": "گذرواژه",
            "login": "ورود",
            "code": "کد",
            "verify": "تأیید",
        },
    )
    expect(page.locator("h1")).to_contain_text("Jonas")
    assert page.locator("html").get_attribute("dir") == "rtl"
    # Laid out right to left: the brand sits at the right edge of the bar.
    brand = page.locator(".navbar-brand").bounding_box()
    assert brand["x"] > page.viewport_size["width"] / 2
    context.close()
