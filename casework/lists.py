"""What the list pages share, so that none of them costs more as the data grows.

- Pages by key (keyset pagination): a page is "the next 50 after this row" in a fixed,
  total order, answered from an index that holds that order. No OFFSET (which reads and
  throws away every earlier row) and no COUNT(*) over everything the user may see.
- A bounded count: "200 cases", or "more than 1,000", counting at most 1,001 rows.
- A pager with a count already known (the board's totals come from its own query).
"""

import base64
import binascii
import json
import operator
from dataclasses import dataclass
from functools import cached_property, reduce

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import F, Q

COUNT_MAX = 1000  # a list says "more than 1,000" rather than count further


@dataclass(frozen=True)
class Key:
    """One column of a list's order; together the keys must be unique and not null."""

    field: str
    descending: bool = False

    def ordering(self, reverse=False):
        down = self.descending != reverse
        return F(self.field).desc() if down else F(self.field).asc()


# The case list's order (newest first), unique and not null: the keys of its pages, the
# order in which a search keeps its first results, and the column order of the case
# list's indexes (casework/migrations/0017_list_indexes.py).
CASE_ORDER = [Key("opened_on", descending=True), Key("reference", descending=True)]


@dataclass
class KeysetPage:
    rows: list
    next_cursor: str | None  # the cursor of the last row, if rows follow it
    previous_cursor: str | None  # the cursor of the first row, if rows precede it

    @property
    def has_other_pages(self) -> bool:
        return bool(self.next_cursor or self.previous_cursor)


def keyset_page(queryset, keys, per_page, *, after=None, before=None) -> KeysetPage:
    """The rows of `queryset` in the order of `keys`: the first `per_page`, or those right
    after the row `after` names, or right before the row `before` names.

    1. One query: the keyset condition, the order, LIMIT per_page + 1 (the extra row only
       says whether there is a next page).
    2. Backwards ("before"), the order is reversed in the database and the rows turned
       round here.
    3. A cursor that does not parse is ignored (the first page): it is only a position.
    """
    position, backwards = (before, True) if before else (after, False)
    values = _parse(queryset.model, keys, position) if position else None
    if values is None:
        backwards = False
    else:
        queryset = queryset.filter(_beyond(keys, values, backwards))
    ordered = queryset.order_by(*(k.ordering(reverse=backwards) for k in keys))
    rows = list(ordered[: per_page + 1])
    more, rows = len(rows) > per_page, rows[:per_page]
    if backwards:
        rows.reverse()
        earlier, later = more, True
    else:
        earlier, later = values is not None, more
    return KeysetPage(
        rows=rows,
        next_cursor=cursor(rows[-1], keys) if rows and later else None,
        previous_cursor=cursor(rows[0], keys) if rows and earlier else None,
    )


def query_without_position(request) -> str:
    """The page's query string (filters, a search token) without its position, for
    the links to other pages."""
    query = request.GET.copy()
    for position in ("page", "after", "before"):
        query.pop(position, None)
    return query.urlencode()


def bounded_count(queryset, limit: int | None = None) -> int:
    """How many rows, counting no further than limit + 1 (so "more than limit")."""
    limit = COUNT_MAX if limit is None else limit
    return queryset.order_by()[: limit + 1].count()


def cursor(row, keys) -> str:
    """A row's position in the order, opaque in a URL (it holds no names: dates and
    references, which the page shows anyway)."""
    values = [_attr(row, k.field) for k in keys]
    raw = json.dumps([v.isoformat() if hasattr(v, "isoformat") else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _attr(row, path):
    for part in path.split("__"):
        row = getattr(row, part)
    return row


def _parse(model, keys, text) -> list | None:
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(raw, list) or len(raw) != len(keys):
            return None
        return [_field(model, k.field).to_python(v) for k, v in zip(keys, raw, strict=True)]
    except (ValueError, TypeError, binascii.Error, ValidationError):
        return None


def _field(model, path):
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model
    return model._meta.get_field(name)


def _beyond(keys, values, backwards) -> Q:
    """Rows strictly after (or before) `values` in the keys' order.

    (k1 > v1) or (k1 = v1 and k2 > v2) or ..., each comparison turned for descending
    keys; and the first key's bound once more on its own (k1 >= v1), which lets the
    database start its index scan there instead of filtering from the top."""

    def beyond(key, value, strict=True):
        later = key.descending == backwards  # descending: later rows have smaller keys
        op = ("gt" if later else "lt") + ("" if strict else "e")
        return Q(**{f"{key.field}__{op}": value})

    either = [
        Q(**{k.field: v for k, v in zip(keys[:i], values[:i], strict=True)}) & beyond(key, value)
        for i, (key, value) in enumerate(zip(keys, values, strict=True))
    ]
    return beyond(keys[0], values[0], strict=False) & reduce(operator.or_, either)


class CountedPaginator(Paginator):
    """A Paginator told its count (the caller has it from an aggregate already)."""

    def __init__(self, object_list, per_page, *, count: int, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count
