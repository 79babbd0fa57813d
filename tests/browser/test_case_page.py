"""The case page's folded forms in a real browser: opened from the keyboard, in Persian,
on a 360-pixel phone, with axe (issue 14, item 3)."""

import pytest
from playwright.sync_api import expect

from casework.models import Note
from tests.base import Personas, grant, make_case
from tests.browser.test_journeys import assert_accessible, login

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_caseworker_opens_the_forms_from_the_keyboard_in_persian_on_a_phone(
    live_server, browser, settings
):
    from django.contrib.contenttypes.models import ContentType
    from guardian.shortcuts import clear_ct_cache

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A module run before this one may have emptied and refilled the database (a
    # serialized rollback): content types cached from before (Django's and guardian's)
    # would not match the permissions granted below.
    ContentType.objects.clear_cache()
    clear_ct_cache()
    people = Personas()
    case = make_case(people.team, actor=people.coordinator)
    grant(case, people.caseworker, "work")
    context = browser.new_context(locale="fa-IR", viewport={"width": 360, "height": 780})
    context.set_default_timeout(15_000)
    page = context.new_page()
    login(page, live_server.url, people.caseworker)
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    assert page.locator("html").get_attribute("dir") == "rtl"
    body = page.locator("#id_body")
    expect(body).to_be_hidden()  # folded
    for summary in ("#tasks summary", "#notes summary"):  # add a task, add a note
        page.locator(summary).focus()
        page.keyboard.press("Enter")
    expect(body).to_be_visible()
    expect(page.locator("#id_title")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert_accessible(page)
    body.fill("یادداشت آزمایشی")
    page.locator("#notes form button[type=submit]").click()
    expect(page.locator(".alert-success")).to_be_visible()
    assert Note.objects.get(case=case).body == "یادداشت آزمایشی"
    context.close()
