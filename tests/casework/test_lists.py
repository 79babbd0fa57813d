"""Lists and searches that stay flat as the cases grow (issue 14, item 2).

Name search: the blind index's offer is intersected with the visibility rules in one
query, bounded before anything is decrypted; the "outside caseload" count is a bounded
query; a reference is compared exactly on its unique index. The case list and triage
page by key (no OFFSET, no COUNT(*) over everything); the board's counts come from the
database and its rows a page at a time, without the cases' encrypted fields.
"""

import datetime
import re
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from casework import access, lists, queues, search, services, vault
from casework.models import AccessEvent, Case, Priority, Role, Task
from casework.templatetags.choices import label
from casework.vault import fields as vault_fields
from families.models import FamilyRequest
from tests.base import grant, login_verified, make_case, make_user

pytestmark = pytest.mark.django_db


def search_event():
    return AccessEvent.objects.filter(action="case.searched").latest("at")


def found_ids(client, term) -> list:
    response = client.post(reverse("case_search"), {"q": term})
    assert response.status_code == 302
    token = response["Location"].split("found=")[1]
    return client.session[search.SESSION_KEY][token]


@pytest.fixture
def decryptions():
    """How many values were decrypted (every read of an encrypted field comes here)."""
    calls = []
    real = vault_fields.EncryptedMixin.decrypt_for

    def counting(field, instance, blob):
        calls.append((type(instance).__name__, field.name))
        return real(field, instance, blob)

    with mock.patch.object(vault_fields.EncryptedMixin, "decrypt_for", counting):
        yield calls


# --- Name search -----------------------------------------------------------------------------
def test_name_search_decrypts_only_the_candidates_however_many_cases_one_sees(
    personas, decryptions
):
    """The coordinator sees every Team A case; one of them is the person sought. With 4
    or with 24 cases visible, the search runs the same queries and decrypts the same
    name of one row."""
    client = login_verified(Client(), personas.coordinator)
    sought = make_case(personas.team, name="Shirin Ebadi Tavakoli")
    counts, decrypted = [], []
    for n in (4, 24):
        while Case.objects.count() < n:
            make_case(personas.team, name=f"Person Number{Case.objects.count()}")
        client.post(reverse("case_search"), {"q": "Tavakoli"})  # warm: session, caches
        decryptions.clear()
        with CaptureQueriesContext(connection) as ctx:
            assert found_ids(client, "shirin TAVAKOLI") == [str(sought.pk)]
        counts.append(len(ctx.captured_queries))
        decrypted.append([d for d in decryptions if d[0] == "Case"])
    assert counts[0] == counts[1], counts
    assert decrypted[0] == decrypted[1] == [("Case", "legal_name")]  # it has no other names


def test_name_search_returns_only_cases_one_may_see_and_counts_the_others(personas):
    mine = make_case(personas.team, name="Leyla Haddad")
    grant(mine, personas.caseworker, "view")
    make_case(personas.team, name="Leyla Haddad")  # Team A, not granted to the caseworker
    make_case(personas.other_team, name="Haddad Leyla")  # Team B
    client = login_verified(Client(), personas.caseworker)
    assert found_ids(client, "Leyla Haddad") == [str(mine.pk)]
    event = search_event()
    assert event.detail["results"] == 1 and event.detail["outside_caseload"] == 2
    assert event.flagged and event.detail["limited"] is False
    assert "Leyla" not in str(event.detail) and "Haddad" not in str(event.detail)
    # The outsider of Team B sees only their team's own... none: they are named on nothing.
    outsider = login_verified(Client(), personas.other_caseworker)
    assert found_ids(outsider, "Leyla Haddad") == []
    assert search_event().detail["outside_caseload"] == 3


def test_a_sealed_case_stays_hidden_from_a_coordinator_not_named_on_it(personas):
    sealed = make_case(personas.team, name="Omid Sadeghi")
    services.case_seal(actor=personas.coordinator, case=sealed, sealed=True)
    open_case = make_case(personas.team, name="Omid Sadeghi")
    second = personas.other_coordinator
    personas.team.coordinators.add(second)  # leads Team A too, not named on the seal
    client = login_verified(Client(), second)
    assert found_ids(client, "Omid Sadeghi") == [str(open_case.pk)]
    assert search_event().detail["outside_caseload"] == 1
    # The coordinator who sealed it is named on it.
    sealer = login_verified(Client(), personas.coordinator)
    assert set(found_ids(sealer, "Omid Sadeghi")) == {str(sealed.pk), str(open_case.pk)}


def test_name_search_confirms_every_token_or_the_whole_name(personas):
    both = make_case(personas.team, name="Maryam Karimi", other_names=["Sister Light"])
    make_case(personas.team, name="Maryam Rezaei")
    client = login_verified(Client(), personas.coordinator)
    assert found_ids(client, "Karimi  Maryam") == [str(both.pk)]  # tokens in any order
    assert found_ids(client, "sister light") == [str(both.pk)]  # an alias
    assert len(found_ids(client, "Maryam")) == 2
    assert found_ids(client, "Maryam Karimi Rezaei") == []  # no case holds all three


def test_a_search_matching_too_many_keeps_the_newest_and_says_so(personas, decryptions):
    made = []
    for i in range(5):
        made.append(make_case(personas.team, name="Reza Tehrani"))
        Case.objects.filter(pk=made[-1].pk).update(opened_on=datetime.date(2026, 1, 1 + i))
    client = login_verified(Client(), personas.coordinator)
    with mock.patch.object(search, "RESULTS_MAX", 3):
        decryptions.clear()
        response = client.post(reverse("case_search"), {"q": "Reza Tehrani"})
        # Three found, and the fourth candidate only told the bound was passed: not decrypted.
        assert len([d for d in decryptions if d == ("Case", "legal_name")]) == 3
        token = response["Location"].split("found=")[1]
        assert set(client.session[search.SESSION_KEY][token]) == {str(c.pk) for c in made[2:]}
        page = client.get(response["Location"])
    assert len(page.context["rows"]) == 3
    assert "More cases match than one search shows" in page.content.decode()
    assert search_event().detail["limited"] is True


def test_a_name_too_common_to_search_alone_finds_nothing_and_says_so(personas):
    mine = [make_case(personas.team, name="Yusuf Novak") for _ in range(2)]
    for case in mine:
        grant(case, personas.caseworker, "view")
    make_case(personas.other_team, name="Yusuf Novak")
    client = login_verified(Client(), personas.caseworker)
    with mock.patch.object(search, "OFFER_MAX", 2):  # 3 offered: more than the bound
        response = client.post(reverse("case_search"), {"q": "Yusuf"})
        assert found_ids(client, "Yusuf") == []
    page = client.get(response["Location"]).content.decode()
    assert "So many cases carry that name" in page
    event = search_event()
    assert event.detail["too_common"] is True and event.detail["results"] == 0
    # The first offered rows are still checked against the caseload, for the log.
    assert event.detail["outside_caseload"] <= 1
    assert set(found_ids(client, "Yusuf Novak")) == {str(c.pk) for c in mine}


def test_the_outside_count_is_bounded(personas):
    for _ in range(4):
        make_case(personas.other_team, name="Anna Berg")
    client = login_verified(Client(), personas.caseworker)
    with mock.patch.object(search, "OUTSIDE_MAX", 2):
        assert found_ids(client, "Anna Berg") == []
    assert search_event().detail["outside_caseload"] == 2 and search_event().flagged


@pytest.mark.parametrize(
    "typed",
    [
        "P-2026-0001",
        "p-2026-0001",
        " P-2026-0001 ",
        "P-2026-1",
        "p - 2026 - 01",
        "P\u20132026\u20130001",
        "P-۲۰۲۶-۰۰۰۱",
        "Ｐ-2026-0001",
    ],
)
def test_a_reference_is_found_however_typed_by_its_exact_stored_value(personas, typed):
    case = make_case(personas.team, name="Sara Novak")
    Case.objects.filter(pk=case.pk).update(reference="P-2026-0001")
    client = login_verified(Client(), personas.coordinator)
    with CaptureQueriesContext(connection) as ctx:
        assert found_ids(client, typed) == [str(case.pk)]
    sql = " ".join(q["sql"] for q in ctx.captured_queries if "casework_case" in q["sql"])
    assert "UPPER(" not in sql and "LIKE" not in sql  # no case-insensitive scan
    assert "blind" not in sql  # a reference costs no name search
    assert search_event().detail == {"by": "reference", "results": 1}


def test_references_are_stored_upper_case():
    assert search.normal_reference("p-2026-0042") == "P-2026-0042"
    assert search.normal_reference("P-2026-12345") == "P-2026-12345"
    assert search.normal_reference("Q-0000001") == "Q-0000001"
    assert search.normal_reference("Maryam Karimi") is None
    assert search.normal_reference("Maryam Karimi 000123") is None


def test_a_reference_of_a_case_one_may_not_see_finds_nothing(personas):
    other = make_case(personas.other_team, name="Elif Yilmaz")
    client = login_verified(Client(), personas.caseworker)
    assert found_ids(client, other.reference.lower()) == []


@pytest.mark.parametrize(
    "term",
    [
        "Maryam",
        "maryam karimi",
        "Karimi Maryam",
        "Sister Light",
        "nobody at all",
        "M",
        "Maryam Novak",
    ],
)
@pytest.mark.parametrize("rare", [64, 0])  # led by a rare token; every token common
def test_the_index_offer_is_vaults_candidates(personas, term, rare):
    """The offer as a subquery (search.index_offer) and vault.candidate_ids must agree:
    the rule "the whole name, or every token" has to stay one rule."""
    for name, others in [
        ("Maryam Karimi", ["Sister Light"]),
        ("Maryam Novak", []),
        ("Karimi Novak", ["Maryam"]),
        ("Sara Light", []),
    ]:
        make_case(personas.team, name=name, other_names=others)
    index = Case.blind_indexes[0]
    with mock.patch.object(search, "RARE", rare):
        offered = search.index_offer(index, term)
        ours = set() if offered is None else set(offered)
    assert ours == vault.candidate_ids(index, term)


# --- Case list --------------------------------------------------------------------------------
@pytest.fixture
def small_pages(settings):
    settings.PASSAGE_CASES_PER_PAGE = 3


def open_cases(team, n, *, start=datetime.date(2026, 1, 1)):
    """n cases opened on a handful of days (several on one day: the reference decides)."""
    out = []
    for i in range(n):
        case = make_case(team, name=f"Listed Person{i}")
        Case.objects.filter(pk=case.pk).update(opened_on=start + datetime.timedelta(days=i // 3))
        out.append(case)
    return out


def expected_order(cases):
    rows = Case.objects.filter(pk__in=[c.pk for c in cases])
    return [
        c.pk
        for c in rows.order_by(*(k.ordering() for k in lists.CASE_ORDER)).only(
            "reference", "opened_on"
        )
    ]


def walk(client, url, rel):
    """Follow the `rel` links from `url` to the end: the case ids of each page."""
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append([c.pk for c in response.context["rows"]])
        link = re.search(rf'rel="{rel}" href="([^"]+)"', response.content.decode())
        url = reverse("case_list") + link.group(1).replace("&amp;", "&") if link else None
    return pages


def test_case_list_pages_by_key_through_every_visible_case_once(personas, small_pages):
    cases = open_cases(personas.team, 10)
    hidden = make_case(personas.team, name="Sealed Person")
    services.case_seal(actor=personas.coordinator, case=hidden, sealed=True)
    make_case(personas.other_team, name="Other Team Person")
    second = make_user("coordinator3", Role.COORDINATOR)
    personas.team.coordinators.add(second)  # sees Team A's cases, not the sealed one
    client = login_verified(Client(), second)
    pages = walk(client, reverse("case_list"), "next")
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [pk for page in pages for pk in page] == expected_order(cases)
    # And back again from the last page, by the "previous" links.
    last = client.get(
        reverse("case_list"),
        {"after": lists.cursor(Case.objects.get(pk=pages[2][-1]), lists.CASE_ORDER)},
    )
    assert [c.pk for c in last.context["rows"]] == pages[3]
    back = walk(
        client,
        reverse("case_list")
        + "?before="
        + lists.cursor(Case.objects.get(pk=pages[3][0]), lists.CASE_ORDER),
        "prev",
    )
    assert back == pages[:3][::-1]


def test_case_list_counts_no_further_than_its_bound_and_never_offsets(personas, small_pages):
    open_cases(personas.team, 5)
    client = login_verified(Client(), personas.coordinator)
    with mock.patch.object(lists, "COUNT_MAX", 3):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("case_list"))
    html = response.content.decode()
    assert "More than 3 cases." in html
    sql = [q["sql"] for q in ctx.captured_queries]
    counts = [s for s in sql if "COUNT(" in s.upper() and "casework_case" in s]
    assert len(counts) == 1 and "LIMIT 4" in counts[0]
    assert not any("OFFSET" in s for s in sql)
    assert (
        "5 cases."
        in login_verified(Client(), personas.coordinator).get(reverse("case_list")).content.decode()
    )


def test_case_list_filters_travel_with_the_pages(personas, small_pages):
    cases = open_cases(personas.team, 8)
    high = cases[::2]
    Case.objects.filter(pk__in=[c.pk for c in high]).update(risk="high")
    client = login_verified(Client(), personas.coordinator)
    pages = walk(client, reverse("case_list") + "?risk=high", "next")
    assert [pk for page in pages for pk in page] == expected_order(high)


def test_case_list_pages_a_search_result(personas, small_pages):
    cases = open_cases(personas.team, 7)
    client = login_verified(Client(), personas.coordinator)
    response = client.post(reverse("case_search"), {"q": "Listed"})
    url = response["Location"].split("127.0.0.1")[-1].split("testserver")[-1]
    pages = walk(client, url, "next")
    assert [pk for page in pages for pk in page] == expected_order(cases)


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJ4IiwgMV0", "%00"])
def test_a_broken_cursor_shows_the_first_page(personas, cursor):
    open_cases(personas.team, 2)
    client = login_verified(Client(), personas.coordinator)
    for position in ("after", "before"):
        response = client.get(reverse("case_list"), {position: cursor})
        assert response.status_code == 200 and len(response.context["rows"]) == 2


def test_case_list_queries_stay_flat_on_a_later_page(personas, small_pages):
    client = login_verified(Client(), personas.coordinator)
    counts = []
    for n in (7, 19):
        while Case.objects.count() < n:
            make_case(personas.team, name=f"Person {Case.objects.count()}")
        first = Case.objects.order_by(*(k.ordering() for k in lists.CASE_ORDER))[3]
        url = reverse("case_list") + "?after=" + lists.cursor(first, lists.CASE_ORDER)
        client.get(url)
        with CaptureQueriesContext(connection) as ctx:
            assert len(client.get(url).context["rows"]) == 3
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_the_case_list_order_and_every_filter_have_an_index():
    """Each index starts with a filter (or nothing) and then holds the list's order, so
    a page is a walk of one index."""
    order = [("-" if k.descending else "") + k.field for k in lists.CASE_ORDER]
    by_fields = {tuple(i.fields) for i in Case._meta.indexes}
    for leading in ([], ["stage"], ["risk"], ["team"]):
        assert tuple(leading + order) in by_fields, leading


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_postgresql_walks_the_order_index_for_a_page(personas):
    open_cases(personas.team, 6)
    user = personas.coordinator
    page = (
        access.cases_for_user(user)
        .order_by(*(k.ordering() for k in lists.CASE_ORDER))
        .only("reference")[:51]
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        sql, params = page.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "case_list_order" in plan and "Sort" not in plan, plan


# --- Board ------------------------------------------------------------------------------------
def board_tasks_made(personas, n):
    made = []
    for i in range(n):
        case = make_case(personas.team, name=f"Board Person{i}")
        grant(case, personas.caseworker, "work")
        made.append(
            queues.task_create(
                actor=personas.coordinator,
                case=case,
                title=f"board task {i}",
                aim="support",
                priority=Priority.URGENT if i % 2 else Priority.NORMAL,
                due_on=timezone.localdate() - datetime.timedelta(days=1) if i < 2 else None,
                assignee=personas.caseworker if i % 3 == 0 else None,
            )
        )
    return made


def test_board_counts_are_the_whole_boards_and_its_rows_come_a_page_at_a_time(personas, settings):
    settings.PASSAGE_TASKS_PER_PAGE = 2
    made = board_tasks_made(personas, 5)  # assigned: 0 and 3; unassigned: 1, 2, 4
    client = login_verified(Client(), personas.coordinator)
    seen = []
    for number in (1, 2, 3):
        response = client.get(reverse("board"), {"page": number})
        html = response.content.decode()
        assert "5 open tasks" in html
        assert f"Showing tasks {2 * number - 1} to {min(2 * number, 5)} of 5" in html
        seen += [t.pk for g in response.context["groups"] for t in g["tasks"]]
        totals = {
            (g["assignee"].username if g["assignee"] else None): g
            for g in response.context["totals"]
        }
        assert totals[None]["open"] == 3 and totals["caseworker"]["open"] == 2
        assert totals[None]["overdue"] == 1 and totals["caseworker"]["overdue"] == 1
        # The summary links each person to the page where their tasks start.
        assert totals[None]["page"] == 1 and totals["caseworker"]["page"] == 2
    assert sorted(seen, key=str) == sorted((t.pk for t in made), key=str)
    assert len(seen) == 5  # each task once, unassigned first


def test_board_rows_load_no_case_content(personas):
    board_tasks_made(personas, 3)
    client = login_verified(Client(), personas.coordinator)
    client.get(reverse("board"))
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("board")).status_code == 200
    task_queries = [q["sql"] for q in ctx.captured_queries if "casework_task" in q["sql"]]
    assert task_queries
    for sql in task_queries:
        selected = sql.split(" FROM ")[0]
        for column in [*Case.PERSON_FIELDS, "details"]:
            assert f'."{column}"' not in selected, column


def test_board_shows_no_labels_by_get_display(personas):
    board_tasks_made(personas, 4)
    client = login_verified(Client(), personas.coordinator)
    with mock.patch.object(Task, "_get_FIELD_display", side_effect=AssertionError("per row")):
        response = client.get(reverse("board"))
        assert "Urgent" in response.content.decode()
        assert client.get(reverse("my_queue")).status_code == 200
        assert client.get(reverse("team_queue")).status_code == 200


def test_choice_labels_follow_the_language(personas):
    task = Task(priority=Priority.URGENT, aim="support", status="open")
    with translation.override("en"):
        english = label(task, "priority")
    with translation.override("fa"):
        persian = label(task, "priority")
        assert persian == str(Priority.URGENT.label)
    assert english == "Urgent"


def test_board_keeps_a_sealed_cases_tasks_from_a_coordinator_not_named(personas):
    made = board_tasks_made(personas, 2)
    services.case_seal(actor=personas.coordinator, case=made[0].case, sealed=True)
    second = personas.other_coordinator
    personas.team.coordinators.add(second)
    response = login_verified(Client(), second).get(reverse("board"))
    shown = {t.pk for g in response.context["groups"] for t in g["tasks"]}
    assert shown == {made[1].pk}
    assert sum(g["open"] for g in response.context["totals"]) == 1
    assert response.status_code == 200


# --- Triage -----------------------------------------------------------------------------------
def waiting_requests(n, stage="triage"):
    out = []
    for i in range(n):
        fr = FamilyRequest(
            stage=stage,
            requester_name="Reza Tehrani",
            sought_names=[f"Sought Person {i}", "Second Name"],
            notice_sha256="x" * 64,
            secret_digest="x" * 64,
            created_at=timezone.now() - datetime.timedelta(hours=n - i // 2),
        )
        fr.save()
        out.append(fr)
    return out


def test_triage_pages_by_key_oldest_first(personas, settings):
    settings.PASSAGE_CASES_PER_PAGE = 2
    waiting = waiting_requests(5)
    waiting_requests(2, stage="closed")
    client = login_verified(Client(), personas.coordinator)
    pages, url = [], reverse("family_triage")
    while url:
        response = client.get(url)
        html = response.content.decode()
        pages.append([fr.pk for fr in response.context["rows"]])
        link = re.search(r'rel="next" href="([^"]+)"', html)
        url = reverse("family_triage") + link.group(1).replace("&amp;", "&") if link else None
    expected = [fr.pk for fr in sorted(waiting, key=lambda fr: (fr.created_at, fr.reference))]
    assert [pk for page in pages for pk in page] == expected
    assert [len(p) for p in pages] == [2, 2, 1]


def test_triage_is_empty_for_a_coordinator_of_no_triage_team(personas):
    waiting_requests(2)
    response = login_verified(Client(), personas.other_coordinator).get(reverse("family_triage"))
    assert response.status_code == 200 and response.context["rows"] == []


def test_a_task_given_to_someone_between_the_boards_two_queries_still_shows(personas):
    task = Task(assignee=personas.caseworker, priority=Priority.NORMAL, aim="support")
    groups = queues.board_page_groups([task], [], page=2)
    assert groups[0]["tasks"] == [task] and groups[0]["open"] == 0 and groups[0]["page"] == 2
