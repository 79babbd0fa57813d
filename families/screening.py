"""Screening of a family request, in the background, after it was saved.

1. The requester's name, phone and e-mail against every case's do-not-disclose list
   (through the blind indexes, confirmed by decrypting the few candidates).
2. The same person sought by other requesters within the window: a hunting pattern.
Flags go to coordinators only; the family's answer never changes.
"""

import datetime

from django.conf import settings
from django.utils import timezone

from casework import vault
from contacts.models import DoNotDisclose

from .models import FamilyRequest, ScreeningFlag


def screen(family_request: FamilyRequest) -> list[ScreeningFlag]:
    flags = []
    entries = DoNotDisclose.objects.select_related("case__data_key")
    hits = set()
    for index, value in (
        ("dnd.names", family_request.requester_name),
        ("dnd.phones", family_request.requester_phone),
        ("dnd.emails", family_request.requester_email),
    ):
        if value:
            hits.update(e.case_id for e in vault.search(entries, index, value))
    for case_id in sorted(hits, key=str):
        flag, _ = ScreeningFlag.objects.get_or_create(
            request=family_request,
            kind=ScreeningFlag.Kind.REQUESTER_ON_DND,
            case_id=case_id,
            other_request=None,
        )
        flags.append(flag)
    since = timezone.now() - datetime.timedelta(days=settings.PASSAGE_HUNTING_WINDOW_DAYS)
    others = (
        FamilyRequest.objects.filter(created_at__gte=since)
        .exclude(pk=family_request.pk)
        .select_related("data_key")
    )
    index = FamilyRequest.blind_indexes[0]
    seen = set()
    for name in family_request.sought_names or []:
        for other in others.filter(pk__in=vault.candidate_ids(index, name)):
            if other.pk in seen or _same_requester(family_request, other):
                continue
            # A withdrawn (shredded) request still counts, by its index tombstone: a
            # hunter cannot wipe the pattern by withdrawing and writing again.
            if not other.is_shredded and not index.matches(other, name):
                continue
            seen.add(other.pk)
            flag, _ = ScreeningFlag.objects.get_or_create(
                request=family_request,
                kind=ScreeningFlag.Kind.SOUGHT_REPEATEDLY,
                case=None,
                other_request=other,
            )
            flags.append(flag)
    return flags


def _same_requester(a: FamilyRequest, b: FamilyRequest) -> bool:
    """A family writing twice is not a pattern; two different people seeking one is.
    Compared on the stored requester indexes, so tombstones compare too."""
    from casework.models import BlindIndexEntry

    names = [i.name for i in FamilyRequest.blind_indexes[1:]]

    def entries(row):
        return set(
            BlindIndexEntry.objects.filter(row_id=row.pk, index__in=names, kind="w").values_list(
                "index", "value"
            )
        )

    return bool(entries(a) & entries(b))
