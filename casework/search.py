"""Finding cases by reference or name, for the people allowed to see them.

1. A term that looks like a reference (or is one) is looked up as a reference among the
   cases the user may see.
2. Otherwise it is a name: the blind index gives candidates, which are decrypted and
   compared (vault.search) among the cases the user may see.
3. The access log records the blind-index values (never the words), the number of
   results, and how many candidates lie outside the user's caseload (flagged: an
   infiltrator testing names would show there).
4. The result travels as a random token kept in the session, so the words never reach
   a URL, a log line or the browser history.
"""

import secrets

from django.views.decorators.debug import sensitive_variables

from . import access, audit, vault
from .models import Case

SESSION_KEY = "passage_case_searches"
KEPT = 10  # searches remembered per session


@sensitive_variables("term")
def search_cases(*, actor, term: str) -> list:
    """The ids of the cases the actor may see that match `term`; writes the event."""
    term = term.strip()
    visible = access.cases_for_user(actor)
    if term.upper().startswith("P-") or Case.objects.filter(reference__iexact=term).exists():
        ids = list(visible.filter(reference__iexact=term).values_list("pk", flat=True))
        detail = {"by": "reference", "results": len(ids)}
    else:
        index = Case.blind_indexes[0]
        found = vault.search(visible.select_related("data_key"), index.name, term)
        ids = [c.pk for c in found]
        outside = vault.candidate_ids(index, term) - set(visible.values_list("pk", flat=True))
        key = index.key()
        detail = {
            "by": "name",
            "index": index.name,
            "values": sorted({index.hash(t, "t", key) for t in vault.tokens(term)}),
            "results": len(ids),
            "outside_caseload": len(outside),
        }
    audit.record(
        actor, "case.searched", detail=detail, flagged=bool(detail.get("outside_caseload"))
    )
    return ids


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
