"""A note typed while the session ran out is kept, encrypted, and given back after the
next login (issue 13, item 3).

Why a server-side draft rather than a warning before the timeout: a caseworker writing a
long note after a hard conversation is not watching a clock, and a warning needs them
at the keyboard; text kept in the browser (local storage) would stay on a shared or
seized computer. So:

1. SessionLifetimeMiddleware ends an idle session as before; on a POST it remembers
   whose it was (`request.passage_expired_user`).
2. StaffOnlyMiddleware, sending that POST to the login page, first calls `keep()` when
   the view is marked `@keeps_draft`: if that person may still work on the case, the
   note's text (not its file: the form asks for the file again) is stored encrypted
   under the case's own key (shredded with the case), one draft per person and case,
   with an access event; the now anonymous session remembers which case has one.
3. After logging in, the case page gives the text back in the note form, once: the
   draft is deleted as it is shown (`restored()`), with an access event.
"""

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import vault

SESSION_KEY = "passage_drafts"  # case ids with a kept note, in the anonymous session
BODY_LIMIT = 20_000  # the note form's own limit


class NoteDraft(vault.VaultModel):
    vault_owner = "case"

    case = models.ForeignKey("casework.Case", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    restricted = models.BooleanField(default=False)
    body = vault.EncryptedTextField()

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["case", "user"], name="one_note_draft_per_person")
        ]

    def __str__(self):
        return "note draft"


def keeps_draft(view):
    """Mark a note-posting view: its text survives a session that ran out."""
    view.passage_draft = True
    return view


def keep(request, user, case_pk) -> bool:
    """Keep the POSTed note of a session that just ran out (see the module)."""
    from . import access, audit

    body = str(request.POST.get("body", ""))[:BODY_LIMIT].replace("\x00", "")
    if not body.strip():
        return False
    case = access.cases_for_user(user, access.CHANGE).filter(pk=case_pk).first()
    if case is None or case.is_shredded:
        return False
    with transaction.atomic():
        NoteDraft.objects.filter(case=case, user=user).delete()
        draft = NoteDraft(
            case=case, user=user, body=body, restricted=request.POST.get("restricted") == "on"
        )
        draft.save()
        audit.record(user, "note.draft_kept", case=case, obj=draft, fields=["body"])
    kept = [str(case_pk), *request.session.get(SESSION_KEY, [])]
    request.session[SESSION_KEY] = list(dict.fromkeys(kept))[:20]
    return True


def restored(request, case) -> dict | None:
    """The kept note of this person on this case, as the note form's initial values,
    given back once (None: nothing kept; no query unless the session says there is)."""
    from django.contrib import messages

    from . import audit

    waiting = request.session.get(SESSION_KEY) or []
    if str(case.pk) not in waiting:
        return None
    request.session[SESSION_KEY] = [pk for pk in waiting if pk != str(case.pk)]
    with transaction.atomic():
        draft = NoteDraft.objects.filter(case=case, user=request.user).first()
        if draft is None:
            return None
        draft.case = case  # its data key, already loaded
        initial = {"body": draft.body, "restricted": draft.restricted}
        kept_at = draft.created_at
        audit.record(request.user, "note.draft_restored", case=case, obj=draft)
        draft.delete()
    messages.info(
        request,
        _(
            "Your session ended while you wrote a note (%(time)s). Its text is back in the "
            "note form below: check it and add it. Attach any file again."
        )
        % {"time": timezone.localtime(kept_at).strftime("%H:%M")},
    )
    return initial
