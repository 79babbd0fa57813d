"""Finding cases by reference or name, for the people allowed to see them.

1. A term shaped like a reference (`P-2026-0042`, typed in any case, with Persian digits
   or a long dash) is looked up by its exact normalised value on the reference's unique
   index, among the cases the user may see.
2. Otherwise it is a name. The blind index offers rows (holding the whole name, or every
   token of it: one read of the index, at most OFFER_MAX rows, or the searcher is asked
   for more of the name). One query intersects the offer with the visibility rules (the
   rule evaluated on the offered rows only); the newest RESULTS_MAX of the visible ones
   are the only rows decrypted and compared. Nothing is counted or decrypted beyond the
   offer, so the cost follows the matches, not the cases the user may see.
3. The same query tells how many offered cases lie outside the user's caseload (at
   most OUTSIDE_MAX are counted). The access log records the blind-index values (never
   the words), the number of results, whether they were cut at RESULTS_MAX, and that
   outside count (flagged: an infiltrator testing names would show there).
4. The result travels as a random token kept in the session, so the words never reach
   a URL, a log line or the browser history.
"""

import re
import secrets
import unicodedata
from dataclasses import dataclass
from operator import itemgetter

from django.db.models import Exists, OuterRef
from django.views.decorators.debug import sensitive_variables

from . import access, audit, lists, vault
from .models import BlindIndexEntry, Case
from .vault.index import ASCII_DIGITS

SESSION_KEY = "passage_case_searches"
KEPT = 10  # searches remembered per session
RESULTS_MAX = 100  # cases one name search decrypts and returns; beyond: "narrow it"
OUTSIDE_MAX = 100  # candidates outside the caseload counted for the log, at most
OFFER_MAX = 2000  # cases a name may offer; more: "add another part of the name"
RARE = 64  # a name's token held by at most this many rows leads the index lookup

# Letters, a dash, digits (and more dash-separated digits): the shape of a reference.
# No name has it, so a reference never costs a name search and a name never a scan.
_REFERENCE = re.compile(r"^[A-Z]{1,3}-[0-9]+(?:-[0-9]+)*$")
_CASE_REFERENCE = re.compile(r"^P-([0-9]{4})-([0-9]{1,9})$")  # CaseCounter.next_reference
_DASHES = re.compile(r"[\u2010-\u2015\u2212\u2796\ufe58\ufe63\uff0d]")


@dataclass(frozen=True)
class Found:
    ids: list
    limited: bool = False  # more cases matched than RESULTS_MAX: only those are kept
    too_common: bool = False  # the index offered more than OFFER_MAX: nothing is kept


def normal_reference(term: str) -> str | None:
    """The stored form of a reference typed any way (references are stored upper-case,
    ASCII, numbered to four digits at least: P-2026-0042), or None if the term is not
    shaped like one."""
    text = unicodedata.normalize("NFKC", term).translate(ASCII_DIGITS)
    text = _DASHES.sub("-", "".join(text.split())).upper()
    if not _REFERENCE.match(text):
        return None
    if case_reference := _CASE_REFERENCE.match(text):
        year, number = case_reference.groups()
        return f"P-{year}-{int(number):04d}"
    return text


@sensitive_variables("term")
def search_cases(*, actor, term: str) -> Found:
    """The cases the actor may see that match `term` (ids); writes the event."""
    term = term.strip()
    reference = normal_reference(term)
    if reference is not None:
        ids = list(
            access.cases_for_user(actor).filter(reference=reference).values_list("pk", flat=True)
        )
        found, detail = Found(ids), {"by": "reference", "results": len(ids)}
    else:
        found, detail = _by_name(actor, term)
    audit.record(
        actor, "case.searched", detail=detail, flagged=bool(detail.get("outside_caseload"))
    )
    return found


@sensitive_variables("term")
def _by_name(actor, term: str) -> tuple[Found, dict]:
    """1. The index's offer (index_offer), at most OFFER_MAX + 1 row ids.
    2. Which of them the actor may see, and the order keys of those (one query by
       primary key, the rule as a column): how many lie outside the caseload, and which
       are the newest RESULTS_MAX + 1.
    3. Those newest, with their data keys: the only rows decrypted, and compared with
       the term.

    The offer is read once, and its rows are then looked up by primary key, so the cost
    follows the offer, whatever the caseload (given the offer as a subquery, the
    database cannot know how few rows it holds, and reads the whole case table for a
    handful). An offer longer than OFFER_MAX (a single given name that thousands carry)
    finds nothing: the searcher is asked for more of the name. Its first OFFER_MAX rows
    are still checked against the caseload, for the log."""
    index = Case.blind_indexes[0]
    key = index.key()
    offered = index_offer(index, term, key)
    ids = [] if offered is None else list(offered[: OFFER_MAX + 1])
    too_common = len(ids) > OFFER_MAX
    rows, outside = [], 0
    if ids:
        newest, outside = _sorted_out(actor, ids[:OFFER_MAX])
        if not too_common:
            rows = list(
                access.cases_for_user(actor)
                .filter(pk__in=newest, data_key__shredded_at__isnull=True)
                .select_related("data_key")
                .only("data_key", *index.fields)
                .order_by(*(k.ordering() for k in lists.CASE_ORDER))
            )
    found = Found(
        [row.pk for row in rows[:RESULTS_MAX] if index.matches(row, term)],
        limited=len(rows) > RESULTS_MAX,
        too_common=too_common,
    )
    detail = {
        "by": "name",
        "index": index.name,
        "values": sorted({index.hash(t, "t", key) for t in vault.tokens(term)}),
        "results": len(found.ids),
        "limited": found.limited,
        "too_common": too_common,
        "outside_caseload": outside,
    }
    return found, detail


def _sorted_out(actor, ids) -> tuple[list, int]:
    """Of the cases `ids`: the newest RESULTS_MAX + 1 the actor may see, in the list's
    order (past the bound, what is kept is the list's first page), and how many the
    actor may not see (at most OUTSIDE_MAX). One query; the view rule is a column."""
    seen = list(
        access.annotate_rules(
            Case.objects.filter(pk__in=ids), {"view": access.case_rules(actor)["view"]}
        ).values_list(*(key.field for key in lists.CASE_ORDER), "pk", "_right_view")
    )
    visible = [row for row in seen if row[-1]]
    for i, key in reversed(list(enumerate(lists.CASE_ORDER))):  # stable: last key first
        visible.sort(key=itemgetter(i), reverse=key.descending)
    newest = [row[-2] for row in visible[: RESULTS_MAX + 1]]
    return newest, min(len(seen) - len(visible), OUTSIDE_MAX)


@sensitive_variables("term")
def index_offer(index, term: str, key: bytes | None = None):
    """What the blind index offers for `term`, as a query of row ids: the rows holding
    the whole value, or every distinct token of it (vault.candidate_ids without
    `min_tokens`). None: the term offers nothing. See _holding_every for the tokens."""
    key = key or index.key()
    whole = index.whole(term)
    if not whole:
        return None
    entries = BlindIndexEntry.objects.filter(index=index.name)
    offer = entries.filter(kind="w", value=index.hash(whole, "w", key)).values_list(
        "row_id", flat=True
    )
    tokens = sorted({index.hash(t, "t", key) for t in index.parts(term)})
    if tokens:
        offer = offer.union(_holding_every(entries, tokens).values_list("row_id", flat=True))
    return offer


def _holding_every(entries, tokens):
    """The token entries of rows holding every token: an intersection, not a count per
    row, led by a rare token when the name has one.

    1. Probe the tokens in turn, each by at most RARE + 1 index entries, and stop at the
       first held by RARE rows or fewer (one query for almost any real name).
    2. A rare token leads: its few rows are checked for the others one by one on the
       (index, kind, value, row_id) index. A database without statistics per value
       (SQLite) would otherwise read every row of the common tokens (a common first
       name), a cost that grows with the cases.
    3. If every token is common, each further token is one IN (PostgreSQL's statistics
       pick the order; SQLite reads them once each)."""

    def holding(token):
        return entries.filter(kind="t", value=token)

    lead = None
    if len(tokens) > 1:
        lead = next((t for t in tokens if not holding(t)[RARE:].exists()), None)
    if lead is None:
        rows = holding(tokens[0])
        for token in tokens[1:]:
            rows = rows.filter(row_id__in=holding(token).values("row_id"))
        return rows
    rows = holding(lead)
    for token in tokens:
        if token != lead:
            rows = rows.filter(Exists(holding(token).filter(row_id=OuterRef("row_id"))))
    return rows


def remember(session, ids) -> str:
    """Keep a result in the session; the token names it in the list's URL."""
    token = secrets.token_urlsafe(8)
    searches = dict(list(session.get(SESSION_KEY, {}).items())[-(KEPT - 1) :])
    searches[token] = [str(pk) for pk in ids]
    session[SESSION_KEY] = searches
    return token


def recall(session, token: str) -> list | None:
    """The ids of a remembered result, or None for no (or an unknown) token."""
    return session.get(SESSION_KEY, {}).get(token or "")
