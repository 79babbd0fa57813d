"""The auditor's pages, the unusual-access report, the export (with its proofs) and
verify_audit."""

import csv
import datetime
import io
import json
import zoneinfo

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import Error, connection, transaction
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from casework import audit, services, transparency
from casework.audit_views import unusual_access
from casework.models import AccessEvent, Role
from tests.base import login_verified, make_user

pytestmark = pytest.mark.django_db

CANARY = "Zephyrine Quillfeather-Canary"  # a legal name that must never leave the vault
JUSTIFICATION = "Police called about an urgent threat to this person tonight."
OUTSIDERS = ("caseworker", "other_caseworker", "coordinator", "administrator", "superuser")


def make_case(personas, *, name=CANARY, team=None, actor=None):
    return services.case_open(
        actor=actor or personas.caseworker,
        team=team or personas.team,
        person={"legal_name": name},
        aims=[],
        risk="medium",
    )


def record_at(when, actor, action, **kwargs):
    """An event as if written at `when` (the log is append-only: no back-dating later)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("casework.audit.timezone.now", lambda: when)
        return audit.record(actor, action, **kwargs)


def days_ago(days, hour, minute=0):
    """A moment `days` ago at a local wall-clock time (in TIME_ZONE)."""
    day = timezone.localdate() - datetime.timedelta(days=days)
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour, minute)))


def break_glass(personas):
    """The Team A coordinator opens a Team B case; returns (case, event)."""
    case = make_case(personas, team=personas.other_team, actor=personas.other_caseworker)
    services.break_glass(actor=personas.coordinator, case=case, justification=JUSTIFICATION)
    return case, AccessEvent.objects.get(action="case.break_glass")


@pytest.fixture
def auditor(personas):
    return login_verified(Client(), personas.auditor)


@pytest.fixture
def checkpoints(settings, tmp_path):
    """A checkpoint directory of this test's own (tests have none by default)."""
    settings.PASSAGE_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.PASSAGE_CHECKPOINT_DIR


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


# --- Who may see the log ---------------------------------------------------------------------
def audit_urls(personas):
    _case, event = break_glass(personas)
    return [
        reverse("audit_log"),
        reverse("audit_unusual"),
        reverse("audit_export"),
        reverse("audit_break_glass", args=[event.seq]),
        reverse("audit_checkpoint"),
    ]


@pytest.mark.parametrize("persona", OUTSIDERS)
def test_it_refuses_every_audit_page_to_anyone_but_an_auditor(personas, persona):
    client = login_verified(Client(), getattr(personas, persona))
    for url in audit_urls(personas):
        assert client.get(url).status_code == 403, url


def test_it_refuses_a_superuser_without_the_auditor_role(personas):
    assert personas.superuser.is_superuser and not personas.superuser.has_role(Role.AUDITOR)
    client = login_verified(Client(), personas.superuser)
    assert client.get(reverse("audit_log")).status_code == 403


def test_it_refuses_a_deactivated_auditor(personas):
    personas.auditor.is_active = False
    personas.auditor.save(update_fields=["is_active"])
    client = Client()
    client.force_login(personas.auditor)  # a session from before the deactivation
    response = client.get(reverse("audit_log"))
    # The session no longer names a user who may log in: a visitor, sent to log in.
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_shows_every_audit_page_to_an_auditor(personas, auditor):
    for url in audit_urls(personas):
        assert auditor.get(url).status_code == 200, url


def test_it_sends_anonymous_visitors_to_login(personas, client):
    for url in audit_urls(personas):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_it_answers_post_with_405(personas, auditor):
    for url in audit_urls(personas):
        assert auditor.post(url).status_code == 405, url


# --- The log ---------------------------------------------------------------------------------------
def test_log_lists_events_newest_first_and_records_the_auditors_visit(personas, auditor):
    case = make_case(personas)
    audit.record(personas.caseworker, "case.viewed", case=case)
    response = auditor.get(reverse("audit_log"))
    rows = response.context["rows"]
    assert [e.action for e in rows] == ["case.viewed", "case.created", "auth.login"]
    html = response.content.decode()
    assert case.reference in html and "caseworker" in html and "legal_name" in html
    visit = AccessEvent.objects.order_by("-seq").first()
    assert (visit.action, visit.actor) == ("audit.viewed", personas.auditor)


def test_log_filters_by_person_case_action_and_dates(personas, auditor):
    first, second = make_case(personas, name="A"), make_case(personas, name="B")
    record_at(days_ago(10, 12), personas.coordinator, "case.viewed", case=first)
    record_at(days_ago(3, 12), personas.coordinator, "case.viewed", case=second)
    record_at(days_ago(1, 12), personas.coordinator, "case.updated", case=second)

    def seqs(**params):
        response = auditor.get(reverse("audit_log"), params)
        assert response.status_code == 200
        return [(e.action, e.case_id) for e in response.context["rows"]]

    assert seqs(actor=personas.coordinator.pk) == [
        ("case.updated", second.pk),
        ("case.viewed", second.pk),
        ("case.viewed", first.pk),
    ]
    # The reference filter is exact and ignores case.
    assert seqs(case=first.reference.lower()) == [
        ("case.viewed", first.pk),
        ("case.created", first.pk),
    ]
    assert seqs(case=first.reference[:-1]) == []
    assert seqs(action="case.updated") == [("case.updated", second.pk)]
    week = {
        "date_from": (timezone.localdate() - datetime.timedelta(days=5)).isoformat(),
        "date_to": (timezone.localdate() - datetime.timedelta(days=2)).isoformat(),
    }
    assert seqs(actor=personas.coordinator.pk, **week) == [("case.viewed", second.pk)]


def test_log_offers_only_action_codes_present_in_the_log(personas, auditor):
    make_case(personas)
    choices = dict(auditor.get(reverse("audit_log")).context["filters"].fields["action"].choices)
    assert "case.created" in choices and "case.break_glass" not in choices


def test_log_shows_an_error_and_no_rows_for_a_backwards_date_range(personas, auditor):
    make_case(personas)
    response = auditor.get(
        reverse("audit_log"), {"date_from": "2026-02-01", "date_to": "2026-01-01"}
    )
    assert response.context["rows"] == []
    assert "The start date is after the end date." in response.content.decode()


def test_log_pages_by_key_fifty_at_a_time_newest_first(personas, auditor):
    written = [audit.record(personas.caseworker, "case.listed").seq for _ in range(60)]
    first = auditor.get(reverse("audit_log"), {"action": "case.listed"})
    cursor = first.context["page"].next_cursor
    # The page links keep the filters and carry a position, not a page number.
    assert f"action=case.listed&amp;after={cursor}" in first.content.decode()
    second = auditor.get(reverse("audit_log"), {"action": "case.listed", "after": cursor})
    assert [e.seq for e in first.context["rows"]] == written[::-1][:50]
    assert [e.seq for e in second.context["rows"]] == written[::-1][50:]
    assert second.context["page"].next_cursor is None
    back = auditor.get(
        reverse("audit_log"),
        {"action": "case.listed", "before": second.context["page"].previous_cursor},
    )
    assert [e.seq for e in back.context["rows"]] == written[::-1][:50]
    assert "60 events" in first.content.decode()
    # The viewer's own event names the rows shown, not a page number.
    seen = AccessEvent.objects.filter(action="audit.viewed").order_by("-seq").first()
    assert (seen.detail["from"], seen.detail["to"]) == (written[59], written[10])  # `back`


def test_log_counts_no_further_than_its_bound(personas, auditor, monkeypatch):
    from casework import lists

    monkeypatch.setattr(lists, "COUNT_MAX", 5)
    for _ in range(7):
        audit.record(personas.caseworker, "case.listed")
    page = auditor.get(reverse("audit_log"), {"action": "case.listed"})
    assert "More than 5 events." in page.content.decode()


def test_log_finds_a_case_by_its_reference_typed_any_way(personas, auditor):
    case = make_case(personas)
    audit.record(personas.caseworker, "case.viewed", case=case)
    typed = case.reference.lower().replace("-", "–")
    page = auditor.get(reverse("audit_log"), {"case": typed, "action": "case.viewed"})
    assert [e.case_id for e in page.context["rows"]] == [case.pk]


def test_audit_pages_never_show_decrypted_case_content(personas, auditor):
    case = make_case(personas)
    services.case_update(actor=personas.caseworker, case=case, data={"needs": CANARY + " needs"})
    audit.record(personas.coordinator, "case.sealed_opened", case=case)
    _glass_case, event = break_glass(personas)
    for url in (
        reverse("audit_log"),
        reverse("audit_unusual"),
        reverse("audit_break_glass", args=[event.seq]),
    ):
        html = auditor.get(url).content.decode()
        assert "Zephyrine" not in html and "Quillfeather" not in html, url
    assert case.reference in auditor.get(reverse("audit_log")).content.decode()


def test_log_shows_the_reference_of_a_shredded_case(personas, auditor):
    case = make_case(personas)
    services.case_shred(case=case)
    response = auditor.get(reverse("audit_log"))
    assert response.status_code == 200
    assert case.reference in response.content.decode()


# --- The export --------------------------------------------------------------------------------
def test_export_streams_a_csv_of_the_filtered_log_without_case_content(personas, auditor):
    case = make_case(personas)
    make_case(personas, name="Other")
    audit.record(personas.caseworker, "case.viewed", case=case, detail={"via": "list"})
    response = auditor.get(reverse("audit_export"), {"case": case.reference})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="access-log-')
    header, *rows = csv_rows(response)
    assert header == [
        "seq",
        "at",
        "actor",
        "action",
        "case_reference",
        "object_type",
        "object_id",
        "fields",
        "flagged",
        "request_id",
        "detail",
        "position",
        "tree_size",
        "leaf",
        "proof",
    ]
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ("caseworker", "case.viewed", case.reference),
        ("caseworker", "case.created", case.reference),
    ]
    assert json.loads(rows[0][10]) == {"via": "list"}
    assert rows[1][7] == "legal_name"
    assert datetime.datetime.fromisoformat(rows[0][1]).tzinfo is not None
    assert "Zephyrine" not in str(rows) and "Quillfeather" not in str(rows)
    # Each row is in the tree: the export integrated the log first (no beat in tests).
    size = AccessEvent.objects.count()  # the export's own event too
    assert all(int(r[12]) == size and r[11].isdigit() and r[13] and r[14] for r in rows)


def test_export_rows_prove_themselves_against_the_signed_checkpoint(
    personas, auditor, checkpoints, tmp_path
):
    for name in ("One", "Two", "Three"):
        make_case(personas, name=name)
    export = tmp_path / "export.csv"
    export.write_bytes(b"".join(auditor.get(reverse("audit_export")).streaming_content))
    header, *rows = list(csv.reader(io.StringIO(export.read_text())))
    size = int(rows[0][12])
    note = auditor.get(reverse("audit_checkpoint"), {"size": size})
    assert note["Content-Type"] == "text/plain; charset=utf-8"
    checkpoint = tmp_path / "checkpoint.txt"
    checkpoint.write_bytes(note.content)
    assert AccessEvent.objects.filter(action="audit.checkpoint_viewed").count() == 1

    out = io.StringIO()
    call_command("verify_export", str(export), str(checkpoint), stdout=out)
    assert out.getvalue().startswith(f"OK: {len(rows)} rows are in the signed tree ({size} events)")

    # A row changed after the export (a forged piece of evidence) fails...
    forged = [header] + [
        r[:3] + ["case.nothing_to_see"] + r[4:] if i == 1 else r for i, r in enumerate(rows)
    ]
    with export.open("w", newline="") as handle:
        csv.writer(handle).writerows(forged)
    with pytest.raises(CommandError, match="line 3 .*: its action differs from its leaf"):
        call_command("verify_export", str(export), str(checkpoint))
    # ...and so does a leaf made to match it: its proof leads nowhere.
    leaf = bytes.fromhex(rows[1][13]).replace(rows[1][3].encode(), b"case.nothing_to_see")
    forged[2][13] = leaf.hex()
    with export.open("w", newline="") as handle:
        csv.writer(handle).writerows(forged)
    with pytest.raises(CommandError, match="does not lead to the signed root"):
        call_command("verify_export", str(export), str(checkpoint))
    # A checkpoint file signed by another key proves nothing.
    with pytest.raises(CommandError, match="no checkpoint in the file is signed by that key"):
        stranger = transparency.verifier_key("x/access-log", bytes(32))
        call_command("verify_export", str(export), str(checkpoint), key=stranger)


def test_log_page_names_the_latest_signed_checkpoint(personas, auditor, checkpoints):
    assert "No signed checkpoint yet" in auditor.get(reverse("audit_log")).content.decode()
    make_case(personas)
    cp = transparency.sequence()
    html = auditor.get(reverse("audit_log")).content.decode()
    assert f"Latest signed checkpoint: {cp.size} events, {cp.time} (UTC)" in html
    assert f"<code>{cp.root_hex[:16]}…</code>" in html
    assert f"{reverse('audit_checkpoint')}?size={cp.size}" in html


def test_checkpoint_page_gives_the_public_key_and_404_for_an_unknown_size(
    personas, auditor, checkpoints
):
    make_case(personas)
    transparency.sequence()
    text = auditor.get(reverse("audit_checkpoint")).content.decode()
    key = (checkpoints / "log.pub").read_text().strip()
    assert f"key {key}" in text and "\n\u2014 " in text  # the key and a signed note
    assert auditor.get(reverse("audit_checkpoint"), {"size": 999}).status_code == 404


def test_export_records_its_row_count_before_streaming_and_leaves_itself_out(personas, auditor):
    make_case(personas)
    make_case(personas, name="Other")
    before = AccessEvent.objects.count()
    response = auditor.get(reverse("audit_export"))
    exported = AccessEvent.objects.get(action="audit.exported")
    assert exported.actor == personas.auditor
    assert exported.detail["rows"] == before
    _header, *rows = csv_rows(response)
    assert len(rows) == before
    assert "audit.exported" not in {row[3] for row in rows}


def test_export_neutralises_cells_a_spreadsheet_would_run(personas, auditor):
    sneaky = make_user("@SUM(1+1)", Role.CASEWORKER)
    audit.record(sneaky, "auth.login")
    _header, row = csv_rows(auditor.get(reverse("audit_export"), {"actor": sneaky.pk}))
    assert row[2] == "'@SUM(1+1)"


# --- The unusual-access report -----------------------------------------------------------------
def test_report_lists_break_glass_with_a_link_to_the_justification(personas, auditor):
    case, event = break_glass(personas)
    response = auditor.get(reverse("audit_unusual"))
    assert [e.seq for e in response.context["report"]["break_glass"]] == [event.seq]
    html = response.content.decode()
    assert reverse("audit_break_glass", args=[event.seq]) in html
    assert case.reference in html
    assert JUSTIFICATION not in html  # only on the review page, which is logged


def test_report_lists_sealed_openings_and_searches_outside_the_caseload(personas):
    case = make_case(personas)
    sealed = audit.record(personas.coordinator, "case.sealed_opened", case=case)
    outside = audit.record(
        personas.caseworker,
        "case.searched",
        detail={"by": "name", "results": 0, "outside_caseload": 2},
    )
    audit.record(
        personas.caseworker,
        "case.searched",
        detail={"by": "name", "results": 1, "outside_caseload": 0},
    )
    audit.record(personas.caseworker, "case.searched", detail={"by": "reference", "results": 1})
    report = unusual_access(timezone.now() - datetime.timedelta(days=1), timezone.now())
    assert [e.seq for e in report["sealed"]] == [sealed.seq]
    assert [e.seq for e in report["searches"]] == [outside.seq]


def test_report_records_the_auditors_visit(personas, auditor):
    auditor.get(reverse("audit_unusual"))
    visit = AccessEvent.objects.order_by("-seq").first()
    assert (visit.action, visit.actor) == ("audit.report_viewed", personas.auditor)


def test_report_lists_case_work_at_night_in_the_organisations_time_zone(personas, settings):
    settings.TIME_ZONE = "Asia/Tehran"  # UTC+03:30: night there is not night in UTC
    case = make_case(personas)
    tehran = zoneinfo.ZoneInfo("Asia/Tehran")
    day = timezone.localdate() - datetime.timedelta(days=2)

    def at(hour, minute):
        return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=tehran)

    late = record_at(at(22, 30), personas.caseworker, "note.created", case=case)  # 19:00 UTC
    early = record_at(at(5, 30), personas.caseworker, "case.viewed", case=case)  # 02:00 UTC
    record_at(at(6, 30), personas.caseworker, "case.viewed", case=case)  # 03:00 UTC: morning
    record_at(at(21, 59), personas.caseworker, "whereabouts.viewed", case=case)
    record_at(at(23, 0), personas.caseworker, "auth.login")  # not case work
    record_at(at(23, 0), None, "auth.login_failed")  # nobody
    # The period ends before today: the case's own "case.created" is now, maybe at night.
    report = unusual_access(at(0, 0), at(0, 0) + datetime.timedelta(days=1))
    assert {e.seq for e in report["night"]} == {late.seq, early.seq}


def test_report_lists_people_opening_many_cases_in_one_local_clock_hour(personas, settings):
    settings.TIME_ZONE = "Asia/Tehran"
    settings.PASSAGE_UNUSUAL_CASES_PER_HOUR = 2
    cases = [make_case(personas, name=f"Case {i}") for i in range(4)]
    tehran = zoneinfo.ZoneInfo("Asia/Tehran")
    day = timezone.localdate() - datetime.timedelta(days=1)

    def at(hour, minute):
        return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=tehran)

    # Caseworker: three cases between 10:00 and 11:00 Tehran time (06:30-07:30 UTC).
    for minute, case in ((5, cases[0]), (35, cases[1]), (36, cases[1]), (55, cases[2])):
        record_at(at(10, minute), personas.caseworker, "case.viewed", case=case)
    # Coordinator: three cases, but across two local hours (09:50 and 10:10 share a UTC hour).
    record_at(at(9, 50), personas.coordinator, "case.viewed", case=cases[0])
    record_at(at(10, 10), personas.coordinator, "case.sealed_opened", case=cases[1])
    record_at(at(10, 20), personas.coordinator, "case.viewed", case=cases[2])
    # Listing cases is not opening them.
    record_at(at(10, 30), personas.coordinator, "case.listed", case=cases[3])
    report = unusual_access(at(0, 0), timezone.now())
    assert [(r["actor"], r["hour"], r["cases"]) for r in report["busy_hours"]] == [
        ("caseworker", at(10, 0), 3)
    ]
    settings.PASSAGE_UNUSUAL_CASES_PER_HOUR = 3
    assert unusual_access(at(0, 0), timezone.now())["busy_hours"] == []


def test_report_page_shows_all_five_kinds_of_unusual_access(personas, auditor, settings):
    settings.PASSAGE_UNUSUAL_CASES_PER_HOUR = 1
    _glass_case, glass = break_glass(personas)
    one, two = make_case(personas, name="One"), make_case(personas, name="Two")
    record_at(days_ago(1, 10, 5), personas.caseworker, "case.viewed", case=one)
    record_at(days_ago(1, 10, 10), personas.caseworker, "case.viewed", case=two)
    sealed = record_at(days_ago(1, 12), personas.coordinator, "case.sealed_opened", case=one)
    search = record_at(
        days_ago(1, 12), personas.caseworker, "case.searched", detail={"outside_caseload": 3}
    )
    night = record_at(days_ago(1, 23), personas.caseworker, "note.created", case=two)
    response = auditor.get(reverse("audit_unusual"))
    report = response.context["report"]
    [busy] = report["busy_hours"]
    assert (busy["actor"], busy["cases"], busy["hour"]) == ("caseworker", 2, days_ago(1, 10))
    assert glass in report["break_glass"] and sealed in report["sealed"]
    assert search in report["searches"] and night in report["night"]
    html = response.content.decode()
    assert days_ago(1, 10).strftime("%Y-%m-%d %H:%M") in html
    for event in (glass, sealed, search, night):
        assert f'<th scope="row" class="text-end">{event.seq}</th>' in html
    assert "style=" not in html and html.count("<script") == html.count("nonce=")


def test_report_covers_the_last_seven_days_unless_a_period_is_chosen(personas, auditor):
    case = make_case(personas)
    old = record_at(days_ago(10, 12), personas.coordinator, "case.sealed_opened", case=case)
    recent = record_at(days_ago(2, 12), personas.coordinator, "case.sealed_opened", case=case)
    default = auditor.get(reverse("audit_unusual")).context["report"]["sealed"]
    assert [e.seq for e in default] == [recent.seq]
    chosen = auditor.get(
        reverse("audit_unusual"),
        {
            "date_from": (timezone.localdate() - datetime.timedelta(days=11)).isoformat(),
            "date_to": (timezone.localdate() - datetime.timedelta(days=9)).isoformat(),
        },
    )
    assert [e.seq for e in chosen.context["report"]["sealed"]] == [old.seq]


# --- Break-glass review --------------------------------------------------------------------------
def test_break_glass_review_shows_the_justification_and_is_logged(personas, auditor):
    case, event = break_glass(personas)
    response = auditor.get(reverse("audit_break_glass", args=[event.seq]))
    html = response.content.decode()
    assert JUSTIFICATION in html
    assert case.reference in html and "coordinator" in html
    review = AccessEvent.objects.order_by("-seq").first()
    assert (review.action, review.actor, review.case) == (
        "audit.break_glass_reviewed",
        personas.auditor,
        case,
    )
    assert review.detail == {"event": event.seq}
    assert JUSTIFICATION not in json.dumps(review.detail)


def test_break_glass_review_is_404_for_other_events_and_unknown_numbers(personas, auditor):
    make_case(personas)
    created = AccessEvent.objects.get(action="case.created")
    assert auditor.get(reverse("audit_break_glass", args=[created.seq])).status_code == 404
    assert auditor.get(reverse("audit_break_glass", args=[99999])).status_code == 404


def test_break_glass_review_of_a_shredded_case_says_so(personas, auditor):
    case, event = break_glass(personas)
    services.case_shred(case=case)
    response = auditor.get(reverse("audit_break_glass", args=[event.seq]))
    assert response.status_code == 200
    assert "No longer readable" in response.content.decode()
    assert JUSTIFICATION not in response.content.decode()


# --- Queries stay flat ---------------------------------------------------------------------------
def add_events(personas, auditor, n):
    auditor.get(reverse("home"))  # the session's first request writes its last-seen time
    case = make_case(personas)
    for _ in range(n):
        audit.record(personas.coordinator, "case.sealed_opened", case=case)
        audit.record(personas.caseworker, "case.searched", detail={"outside_caseload": 1})


# Writing one event: its insert (no lock, no savepoint, no read of the last row).
WRITE_EVENT = 1
# A verified request costs, before the view: the session, the user with their roles
# (staff.StaffBackend), the OTP device. The view: the distinct action codes for the
# filter, the page's rows by key (actor and case joined; LIMIT 51), the rows counted to
# 1,001 at most, writing audit.viewed, and the staff for the person filter (while
# rendering).
LOG_QUERIES = 3 + 3 + WRITE_EVENT + 1


@pytest.mark.parametrize("n", [5, 50])
def test_log_page_queries_stay_flat(personas, auditor, django_assert_num_queries, n):
    add_events(personas, auditor, n)
    with django_assert_num_queries(LOG_QUERIES):
        response = auditor.get(reverse("audit_log"))
    assert len(response.context["rows"]) == min(50, 2 * n + 2)  # and the case, the login


# Before the view: session, user with their roles, OTP device. The view: the period's
# candidate events (actor and case joined), writing audit.report_viewed.
REPORT_QUERIES = 3 + 1 + WRITE_EVENT


@pytest.mark.parametrize("n", [5, 50])
def test_report_queries_stay_flat(personas, auditor, django_assert_num_queries, n):
    add_events(personas, auditor, n)
    with django_assert_num_queries(REPORT_QUERIES):
        response = auditor.get(reverse("audit_unusual"))
    assert len(response.context["report"]["sealed"]) == n


# --- Verification -------------------------------------------------------------------------------
def test_verify_audit_passes_on_an_intact_log(personas, checkpoints):
    make_case(personas)
    audit.record(personas.caseworker, "case.viewed")
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    n = AccessEvent.objects.count()
    root = transparency.root_at(n).hex()[:16]
    assert out.getvalue().strip() == (
        f"OK: {n} events, chain intact: a Merkle tree of {n} (root {root}...), "
        "consistent with 1 signed checkpoints."
    )


def test_verify_audit_reports_events_not_yet_in_the_tree(personas, checkpoints):
    make_case(personas)
    call_command("verify_audit", stdout=io.StringIO())
    audit.record(personas.caseworker, "case.viewed")
    out = io.StringIO()
    call_command("verify_audit", "--no-integrate", stdout=out)
    assert "Not yet in the tree: 1 events" in out.getvalue()
    newest = AccessEvent.objects.order_by("-seq").first()
    assert not transparency.LogLeaf.objects.filter(event=newest).exists()


def tamper(seq, action="case.nothing_to_see"):
    audit.drop_triggers(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {audit.TABLE} SET action = %s WHERE seq = %s", [action, seq])
    finally:
        audit.install_triggers(connection)


def test_verify_audit_names_the_first_tampered_event(personas):
    for name in ("One", "Two", "Three"):
        make_case(personas, name=name)
    call_command("verify_audit", stdout=io.StringIO())  # in the tree
    target = AccessEvent.objects.filter(action="case.created").order_by("seq")[1]
    tamper(target.seq)
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    assert str(failure.value) == (
        f"BROKEN: event #{target.seq} (position 1): it does not match its MAC (changed, or "
        "written without the key) (1 events verified)."
    )


def test_verify_audit_exits_with_status_1_and_says_so_on_stderr(personas, capsys):
    for name in ("One", "Two", "Three"):
        make_case(personas, name=name)
    third = AccessEvent.objects.order_by("seq")[2].seq
    tamper(third)
    with pytest.raises(SystemExit) as exit_:
        execute_from_command_line(["manage.py", "verify_audit"])
    assert exit_.value.code == 1
    assert f"BROKEN: event #{third} (position 2): it does not match" in capsys.readouterr().err


def test_the_database_refuses_update_and_delete_of_events(personas):
    make_case(personas)
    event = AccessEvent.objects.get()
    for sql, params in (
        (f"UPDATE {audit.TABLE} SET action = %s WHERE seq = %s", ["x", event.seq]),
        (f"DELETE FROM {audit.TABLE} WHERE seq = %s", [event.seq]),
    ):
        with pytest.raises(Error), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    assert AccessEvent.objects.get().action == "case.created"
    assert audit.verify() == (1, None)


def test_the_orm_cannot_delete_events_either(personas):
    make_case(personas)
    with pytest.raises(Error), transaction.atomic():
        AccessEvent.objects.all().delete()
    assert AccessEvent.objects.count() == 1


# --- Every history is append-only at the database (issue 12, item 7) ------------------------------
@pytest.fixture
def history(personas, settings):
    """One row of every history table, each settled: a note, stage changes, task events,
    consent events, relayed messages once reviewed (approved, delivered, returned,
    blocked), one still waiting for review, and an approved disclosure."""
    from casework import queues
    from contacts import services as contact_services
    from contacts.models import NoticeText
    from families import services as family_services
    from families.models import Disclosure, FamilyRequest

    settings.PASSAGE_COOLING_OFF_HOURS = 0
    cw, coord = personas.caseworker, personas.coordinator
    case = make_case(personas)
    note = services.note_add(actor=cw, case=case, body="first contact", restricted=False)
    services.case_change_stage(actor=cw, case=case, stage="refuge")
    task = queues.task_create(actor=cw, case=case, title="Call back", aim="support")
    queues.task_comment(actor=cw, task=task, comment="Left a message.")
    contact = contact_services.contact_save(
        actor=cw, case=case, data={"kind": "family", "name": "Mother", "relationship": "mother"}
    )
    for purpose in ("relay", "share_contact"):
        contact_services.consent_record(
            actor=cw,
            case=case,
            purpose=purpose,
            decision="granted",
            method="in_person",
            counterpart=contact,
            notice=NoticeText.current(purpose, "en"),
        )

    def message(body, decision=None):
        sent = contact_services.message_submit(
            actor=cw, case=case, contact=contact, direction="to_contact", body=body
        )
        if decision:
            contact_services.message_review(
                actor=coord, case=case, message=sent, decision=decision, reason="Reviewed."
            )
        return Message.objects.get(pk=sent.pk)

    from contacts.models import Message

    messages = {
        "approved": message("approved", "approve"),
        "delivered": message("delivered", "approve"),
        "returned": message("returned", "return"),
        "blocked": message("blocked", "block"),
        "pending": message("pending"),
    }
    contact_services.message_deliver(actor=cw, case=case, message=messages["delivered"])
    messages["delivered"].refresh_from_db()

    family, _secret = family_services.request_submit(
        data={"requester_name": "Parent", "sought_names": ["Somebody Else"], "message": "m"},
        language="en",
        notice_sha256="x" * 64,
    )
    FamilyRequest.objects.filter(pk=family.pk).update(stage="handed", case=case, contact=contact)
    family = FamilyRequest.objects.select_related("data_key").get(pk=family.pk)
    family_services.record_answer(
        actor=cw,
        family_request=family,
        answer="share_contact",
        method="in_person",
        details="An e-mail address agreed with the person.",
    )
    disclosure = Disclosure.objects.get(request=family)
    family_services.disclosure_approve(actor=coord, disclosure=disclosure)
    disclosure.refresh_from_db()
    from contacts.models import ConsentEvent

    return {
        "case": case,
        "note": note,
        "stage_change": case.stage_changes.last(),
        "task_event": task.history.last(),
        "consent_event": ConsentEvent.objects.filter(case=case).last(),
        "access_event": AccessEvent.objects.order_by("seq").last(),
        "disclosure": disclosure,
        **{f"{name}_message": m for name, m in messages.items()},
    }


# A plain (unencrypted) field of each settled row and a value it must never take.
QUERYSET_UPDATES = {
    "note": {"restricted": True},
    "stage_change": {"to_stage": "closed"},
    "task_event": {"kind": "status"},
    "consent_event": {"decision": "withdrawn"},
    "access_event": {"action": "case.nothing_to_see"},
    "approved_message": {"status": "pending"},
    "delivered_message": {"status": "approved"},
    "returned_message": {"status": "pending"},
    "blocked_message": {"status": "approved"},
    "disclosure": {"kind": "meet"},
}
HISTORY_ROWS = sorted(QUERYSET_UPDATES)


@pytest.mark.parametrize("row", HISTORY_ROWS)
def test_a_queryset_update_of_a_history_row_fails_at_the_database(history, row):
    obj = history[row]
    with pytest.raises(Error), transaction.atomic():
        type(obj).objects.filter(pk=obj.pk).update(**QUERYSET_UPDATES[row])
    ((field, value),) = QUERYSET_UPDATES[row].items()
    assert getattr(type(obj).objects.get(pk=obj.pk), field) != value


@pytest.mark.parametrize("row", [*HISTORY_ROWS, "pending_message"])
def test_a_queryset_delete_of_a_history_row_fails_at_the_database(history, row):
    obj = history[row]
    with pytest.raises(Error), transaction.atomic():
        type(obj).objects.filter(pk=obj.pk).delete()
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_a_case_cannot_be_deleted_only_shredded(history, personas):
    from casework.models import Case, Note

    case = history["case"]
    with pytest.raises(Error), transaction.atomic():
        Case.objects.filter(pk=case.pk).delete()
    assert Note.objects.filter(case=case).exists()
    services.case_shred(case=Case.objects.get(pk=case.pk), actor=personas.coordinator)
    case = Case.objects.get(pk=case.pk)
    assert case.is_shredded
    for row in HISTORY_ROWS:  # the rows stay; nobody can read them any more
        assert type(history[row]).objects.filter(pk=history[row].pk).exists(), row


def _other_value(field, current):
    """A value of the field's type that differs from `current` (for a raw UPDATE)."""
    import uuid as uuid_

    kind = field.get_internal_type()
    if field.is_relation:
        target = field.target_field
        if target.get_internal_type() == "UUIDField":
            return uuid_.uuid4().hex if connection.vendor == "sqlite" else uuid_.uuid4()
        return 987_654_321
    if kind in ("BinaryField",):
        return b"\x01changed"
    if kind in ("DateTimeField",):
        return datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    if kind == "DateField":
        return datetime.date(2001, 2, 3)
    if kind == "BooleanField":
        return not current
    if kind.endswith("IntegerField") or kind == "BigAutoField" or kind == "AutoField":
        return (current or 0) + 7
    if kind == "JSONField":
        return json.dumps({"changed": True})
    if kind == "GenericIPAddressField":
        return "192.0.2.99"
    if kind == "UUIDField":
        return uuid_.uuid4().hex if connection.vendor == "sqlite" else uuid_.uuid4()
    return "changed"


# What a settled row may still do, column by column (each step is tested on its own below).
STILL_ALLOWED = {"disclosure": {"released_at", "cancelled_at"}}


@pytest.mark.parametrize("row", HISTORY_ROWS)
def test_no_column_of_a_settled_history_row_can_change(history, row):
    """Raw SQL, column by column: the database refuses every change (the ORM aside), but
    the steps forward a settled row may still take."""
    obj = history[row]
    model = type(obj)
    table, pk = model._meta.db_table, model._meta.pk
    pk_value = pk.get_db_prep_value(obj.pk, connection)
    refused = []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        value = _other_value(field, field.value_from_object(obj) if not field.is_relation else None)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {field.column} = %s WHERE {pk.column} = %s",
                    [value, pk_value],
                )
                transaction.set_rollback(True)  # each column on its own, from the settled row
        except Error as exc:
            if "append-only" in str(exc):
                refused.append(field.name)
            else:
                raise
    names = [f.name for f in model._meta.concrete_fields if not f.primary_key]
    assert refused == [n for n in names if n not in STILL_ALLOWED.get(row, ())]


def test_a_message_moves_only_forward_once_reviewed(history, personas):
    from contacts import services as contact_services
    from contacts.models import Message

    approved = history["approved_message"]
    # The allowed steps: approved -> delivered (with its time), approved -> stopped.
    contact_services.message_deliver(
        actor=personas.caseworker, case=history["case"], message=approved
    )
    approved.refresh_from_db()
    assert approved.status == "delivered" and approved.delivered_at is not None
    with pytest.raises(Error), transaction.atomic():
        Message.objects.filter(pk=approved.pk).update(delivered_at=None)
    with pytest.raises(Error), transaction.atomic():
        Message.objects.filter(pk=history["returned_message"].pk).update(
            status="delivered", delivered_at=timezone.now()
        )
    with pytest.raises(Error), transaction.atomic():
        Message.objects.filter(pk=history["blocked_message"].pk).update(status="stopped")
    # While waiting for review it may still be reviewed or stopped; its author never changes.
    pending = history["pending_message"]
    with pytest.raises(Error), transaction.atomic():
        Message.objects.filter(pk=pending.pk).update(created_by=personas.coordinator)
    assert Message.objects.filter(pk=pending.pk).update(status="stopped") == 1


def test_withdrawing_consent_still_stops_an_approved_message(history, personas):
    from contacts import services as contact_services
    from contacts.models import ConsentEvent, Message

    grant = ConsentEvent.objects.filter(case=history["case"], purpose="relay").first()
    contact_services.consent_withdraw(
        actor=personas.caseworker, case=history["case"], event=grant, method="in_person"
    )
    assert Message.objects.get(pk=history["approved_message"].pk).status == "stopped"
    assert Message.objects.get(pk=history["pending_message"].pk).status == "stopped"
    assert Message.objects.get(pk=history["delivered_message"].pk).status == "delivered"


def test_an_approved_disclosure_is_released_once_and_then_frozen(history, personas):
    from families import services as family_services
    from families.models import Disclosure

    disclosure = history["disclosure"]
    with pytest.raises(Error), transaction.atomic():
        Disclosure.objects.filter(pk=disclosure.pk).update(approved_by=personas.caseworker)
    assert family_services.disclosure_release(disclosure=disclosure, actor=personas.coordinator)
    for change in ({"released_at": None}, {"cancelled_at": timezone.now()}):
        with pytest.raises(Error), transaction.atomic():
            Disclosure.objects.filter(pk=disclosure.pk).update(**change)
    assert Disclosure.objects.get(pk=disclosure.pk).released_at is not None


def test_every_append_only_table_has_its_triggers(db):
    tables = dict(audit.append_only_tables())
    expected = {
        "casework_accessevent",
        "casework_note",
        "casework_stagechange",
        "casework_taskevent",
        "contacts_consentevent",
        "contacts_message",
        "families_disclosure",
    }
    assert expected <= set(tables)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute(
                "SELECT c.relname, t.tgname FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
            )
        installed = {}
        for table, name in cursor.fetchall():
            installed.setdefault(table, set()).add(name)
    for table in tables:
        want = (
            {f"{table}_no_update", f"{table}_no_delete", f"{table}_no_replace"}
            if connection.vendor == "sqlite"
            else {f"{table}_append_only", f"{table}_no_truncate"}
        )
        assert want <= installed.get(table, set()), table
