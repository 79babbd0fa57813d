"""The bounds and the schedule of family requests, each read once from settings with its
default here (read at call time, so a changed setting takes effect at once).

Bounds: what one anonymous submission may cost. The form refuses more names, or longer
names, with a clear error; matching and screening apply the same bounds again to what
they read, so a request saved some other way costs no more.

Schedule: what the family sees, and when it changes, is decided by the clock alone
(FamilyRequest.family_state), never by whether anyone matched.
"""

import datetime

from django.conf import settings

from casework import vault


# --- Bounds ----------------------------------------------------------------------------------
def max_names() -> int:
    """Names of the person sought, one per line."""
    return settings.PASSAGE_FAMILY_MAX_NAMES


def max_name_tokens() -> int:
    """Parts of one name (after normalisation), for the names sought and the requester's."""
    return settings.PASSAGE_FAMILY_MAX_NAME_TOKENS


def bounded_names(names) -> list[str]:
    """The names to look up: at most the bounded number, each cut to its bounded number
    of tokens, in normalised form (the form refuses more; this holds for a request
    saved any other way)."""
    out = []
    for name in list(names or [])[: max_names()]:
        parts = vault.tokens(str(name))[: max_name_tokens()]
        if parts:
            out.append(" ".join(parts))
    return out


def match_rows_per_name() -> int:
    """Cases one name may offer as candidates, those sharing the most tokens first."""
    return settings.PASSAGE_MATCH_MAX_ROWS_PER_NAME


def screen_rows_per_name() -> int:
    """Earlier requests one name is compared with for the hunting pattern."""
    return settings.PASSAGE_FAMILY_SCREEN_MAX_ROWS


def follow_ups_per_request_per_day() -> int:
    return settings.PASSAGE_FOLLOW_UPS_PER_REQUEST_PER_DAY


def follow_up_rate_per_hour() -> int:
    """Follow-ups from one client (an IPv4 address, an IPv6 /64), whatever the request."""
    return settings.PASSAGE_FOLLOW_UP_RATE_PER_HOUR


# --- Schedule --------------------------------------------------------------------------------
def received_for() -> datetime.timedelta:
    """Every request reads "received" this long after submission, then "in progress"."""
    return datetime.timedelta(hours=settings.PASSAGE_FAMILY_RECEIVED_HOURS)


def closed_no_earlier_than() -> datetime.timedelta:
    """No request reads "closed" earlier than this after submission, whatever the outcome."""
    return datetime.timedelta(days=settings.PASSAGE_FAMILY_CLOSED_AFTER_DAYS)


def retention() -> datetime.timedelta:
    """A closed request is shredded this long after the family was shown "closed"."""
    return datetime.timedelta(days=settings.PASSAGE_FAMILY_RETENTION_DAYS)
