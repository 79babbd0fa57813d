"""The main journeys in a real browser: a family writes in (Persian, on a phone) and
checks the status; a coordinator assigns work; a caseworker opens a case. With axe."""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from casework.models import Case, Task
from families.models import FamilyRequest
from tests.base import PASSWORD, Personas, totp_now

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def assert_accessible(page):
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


@pytest.fixture(autouse=True)
def _no_wait_for_humans(settings):
    settings.PASSAGE_FORM_MIN_SECONDS = 0


def test_a_family_writes_in_persian_on_a_phone_and_checks_the_status(live_server, browser):
    # The public form has no script at all (tests/families/test_public.py checks that).
    context = browser.new_context(locale="fa-IR", viewport={"width": 390, "height": 844})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(live_server.url + "/contact/")
    assert page.locator("html").get_attribute("dir") == "rtl"
    # Nothing may widen the page: a right-to-left page would open scrolled to blank space.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_accessible(page)
    page.get_by_role("button", name="فرستادن درخواست").click()  # empty: errors in Persian
    expect(page.locator(".alert-danger")).to_be_visible()
    page.get_by_label("نام شما").fill("پروین رحیمی")
    page.locator("#id_relationship").fill("مادر")
    page.locator("#id_requester_country").fill("ایران")
    page.locator("#id_sought_names").fill("سارا رحیمی\nSara Rahimi")
    page.locator("#id_message").fill("دخترم، دوستت داریم.")
    for box in ("consent_processing", "consent_nothing_shared", "consent_retention"):
        page.locator(f"#id_{box}").check()
    page.get_by_role("button", name="فرستادن درخواست").click()
    codes = page.locator("code.secret").all_inner_texts()
    reference, secret = codes[0], codes[1]
    assert re.fullmatch(r"FR-[0-9A-Z]{4}-[0-9A-Z]{4}", reference)
    assert FamilyRequest.objects.filter(reference=reference).exists()
    assert_accessible(page)
    page.goto(live_server.url + "/contact/status/")
    page.locator("#id_reference").fill(reference)
    page.locator("#id_secret").fill(secret)
    page.locator("form.auth-card button[type=submit]").click()
    expect(page.locator("[role=status]")).to_contain_text("دریافت شد")
    assert_accessible(page)
    context.close()


def login(page, base, user):
    code = totp_now(user)  # read before the server gets busy (SQLite locks whole tables)
    page.goto(base + "/accounts/login/")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("form button[type=submit]").first.click()
    page.locator("#id_otp_token").fill(code)
    page.locator("form button[type=submit]").first.click()


def test_a_coordinator_assigns_and_a_caseworker_works_the_queue(live_server, browser, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    people = Personas()
    coordinator_context = browser.new_context()
    coordinator_context.set_default_timeout(15_000)
    coordinator_page = coordinator_context.new_page()
    login(coordinator_page, live_server.url, people.coordinator)
    coordinator_page.goto(live_server.url + "/cases/new/")
    coordinator_page.locator("#id_legal_name").fill("Maryam Karimi")
    coordinator_page.locator("#id_other_names").fill("مریم کریمی")
    coordinator_page.locator("#id_team").select_option(label="Team A")
    coordinator_page.get_by_role("button", name="Open the case").click()
    expect(coordinator_page.locator("h1")).to_contain_text("Maryam Karimi")
    assert_accessible(coordinator_page)
    case = Case.objects.get()
    coordinator_page.locator("summary", has_text="Add a task").click()
    coordinator_page.locator("#id_title").fill("Find emergency housing")
    coordinator_page.locator("#id_priority").select_option("0")
    coordinator_page.locator("#id_assignee").select_option(label="caseworker")
    coordinator_page.locator("#id_grant_access").check()
    coordinator_page.get_by_role("button", name="Add task").click()
    expect(coordinator_page.get_by_text("Task added.")).to_be_visible()  # the server is done
    assert Task.objects.get().assignee == people.caseworker
    coordinator_page.goto(live_server.url + "/tasks/board/")
    expect(coordinator_page.get_by_text("Find emergency housing")).to_be_visible()
    assert_accessible(coordinator_page)

    worker_context = browser.new_context(viewport={"width": 390, "height": 844})
    worker_context.set_default_timeout(15_000)
    worker_page = worker_context.new_page()
    login(worker_page, live_server.url, people.caseworker)
    worker_page.goto(live_server.url + "/tasks/")
    expect(worker_page.get_by_text("Find emergency housing")).to_be_visible()
    assert worker_page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_accessible(worker_page)
    # Read the database only while the server is idle (SQLite's shared in-memory database
    # locks whole tables during the server's transactions).
    task_pk = Task.objects.get().pk
    worker_page.locator("select[name=status]").select_option("done")
    worker_page.get_by_role("button", name="Update").click()  # htmx swaps the row
    row = worker_page.locator(f"#task-{task_pk}")
    expect(row.locator(".badge.text-bg-success")).to_have_text("Done")
    expect(row.locator("select")).to_have_count(0)  # the row was swapped in place
    assert Task.objects.get().status == "done"
    worker_page.goto(live_server.url + f"/cases/{case.pk}/")
    expect(worker_page.locator("h1")).to_contain_text(case.reference)
    assert settings  # keep the fixture in scope
