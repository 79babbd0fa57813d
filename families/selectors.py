"""What the family-request pages show, each row with what the viewer may do with it."""

from django.db.models import Exists, OuterRef
from django.utils import timezone

from casework import access

from .matching import tracing_allows, with_tracing


def candidates_for(user, fr) -> list:
    """(candidate, visible) pairs, in one query: whether the user may open each
    candidate case comes from the case rules; whether its person's consent to family
    tracing still holds (`c.tracing`), from the consent ledger."""
    visible = access.cases_for_user(user).filter(pk=OuterRef("case_id"))
    candidates = with_tracing(
        fr.candidates.select_related("case__data_key", "case__team").annotate(
            visible=Exists(visible)
        )
    )
    today = timezone.localdate()
    out = []
    for c in candidates:
        c.tracing = tracing_allows(c.tracing_decision, c.tracing_expires, today)
        out.append((c, c.visible))
    return out


def disclosures_for(user, fr) -> list:
    """The request's disclosures, each marked with what this user may do with it: approve
    (a coordinator of the case who did not propose it), release (after the cooling-off)."""
    now = timezone.now()
    out = list(fr.disclosures.select_related("proposed_by", "approved_by").order_by("proposed_at"))
    for d in out:
        d.request = fr  # its data key, already loaded
        d.show_details = fr.rights.case_visible
        decided = d.released_at or d.cancelled_at
        d.can_approve = fr.rights.approve and not d.approved_at and not decided
        d.can_approve = d.can_approve and d.proposed_by_id != user.pk
        d.cooling = bool(d.approved_at and d.release_after > now)
        d.can_release = fr.rights.release and bool(d.approved_at and not decided and not d.cooling)
    return out
