"""Screening of a family request, in the background, after it was saved.

1. The requester's name, phone and e-mail against every case's do-not-disclose list
   (through the blind indexes, confirmed by decrypting the few candidates).
2. The same person sought by other requesters within the window: a hunting pattern.
   Each name is compared with a bounded number of earlier requests of the window
   (families/limits.py), and whether two requests come from one family is read for
   all of them at once.
Flags go to coordinators only; the family's answer never changes.

`screen()` only computes (unsaved flags): services.process writes them, in a short
transaction of its own.
"""

import datetime

from django.conf import settings
from django.utils import timezone

from casework import vault
from casework.models import BlindIndexEntry
from contacts.models import DoNotDisclose

from . import limits
from .models import FamilyRequest, ScreeningFlag


def screen(family_request: FamilyRequest) -> list[ScreeningFlag]:
    """The flags this request raises, unsaved: reads only, no lock held."""
    return [*_on_do_not_disclose(family_request), *_sought_repeatedly(family_request)]


def _on_do_not_disclose(family_request: FamilyRequest) -> list[ScreeningFlag]:
    entries = DoNotDisclose.objects.select_related("case__data_key")
    hits = set()
    for index, value in (
        ("dnd.names", " ".join(limits.bounded_names([family_request.requester_name or ""]))),
        ("dnd.phones", family_request.requester_phone),
        ("dnd.emails", family_request.requester_email),
    ):
        if value:
            hits.update(e.case_id for e in vault.search(entries, index, value))
    return [
        ScreeningFlag(
            request=family_request, kind=ScreeningFlag.Kind.REQUESTER_ON_DND, case_id=case_id
        )
        for case_id in sorted(hits, key=str)
    ]


def _sought_repeatedly(family_request: FamilyRequest) -> list[ScreeningFlag]:
    since = timezone.now() - datetime.timedelta(days=settings.PASSAGE_HUNTING_WINDOW_DAYS)
    window = FamilyRequest.objects.filter(created_at__gte=since).exclude(pk=family_request.pk)
    index = FamilyRequest.blind_indexes[0]
    names = limits.bounded_names(family_request.sought_names)
    offered = {
        name: vault.candidate_ids(
            index, name, among=window.values("pk"), limit=limits.screen_rows_per_name()
        )
        for name in names
    }
    wanted = set().union(*offered.values())
    if not wanted:
        return []
    others = {o.pk: o for o in window.filter(pk__in=wanted).select_related("data_key")}
    same_family = _same_requester(family_request, wanted)
    flags, seen = [], set()
    for name in names:
        for pk in sorted(offered[name], key=str):
            other = others.get(pk)
            if other is None or pk in seen or pk in same_family:
                continue
            # A withdrawn (shredded) request still counts, by its index tombstone: a
            # hunter cannot wipe the pattern by withdrawing and writing again.
            if not other.is_shredded and not index.matches(other, name):
                continue
            seen.add(pk)
            flags.append(
                ScreeningFlag(
                    request=family_request,
                    kind=ScreeningFlag.Kind.SOUGHT_REPEATEDLY,
                    other_request=other,
                )
            )
    return flags


def _same_requester(family_request: FamilyRequest, others) -> set:
    """Of `others`, the requests written by the same family (a family writing twice is
    not a pattern; two different people seeking one is). Compared on the stored
    requester indexes, so tombstones compare too: one query for all of them."""
    names = [i.name for i in FamilyRequest.blind_indexes[1:]]
    rows = BlindIndexEntry.objects.filter(
        row_id__in=[family_request.pk, *others], index__in=names, kind="w"
    ).values_list("row_id", "index", "value")
    mine, theirs = set(), {}
    for row_id, index, value in rows:
        if row_id == family_request.pk:
            mine.add((index, value))
        else:
            theirs.setdefault(row_id, set()).add((index, value))
    return {row_id for row_id, entries in theirs.items() if entries & mine}
