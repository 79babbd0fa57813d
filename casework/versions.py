"""Edit forms carry the version they were loaded from: a stale save is refused, and
nothing anyone typed is lost (issue 13, item 1).

Why a version column and a row lock rather than django-concurrency: our encrypted fields
refuse `QuerySet.update()` (vault), so the library's conditional UPDATE cannot write
them; and the page after a refusal must say who changed which fields since, which the
access log already knows. So:

1. A versioned model (`Versioned`) has `version`. A service that edits it calls
   `lock(instance, expected)` inside its transaction: the row is read again under
   SELECT ... FOR UPDATE (SQLite: the write lock of an IMMEDIATE transaction), and if it
   has moved on since `expected`, `StaleEdit` is raised and nothing is written. The
   service then saves the fresh row with `version + 1` and writes its access event with
   `detail={"version": n}` (`record_version`).
2. The edit form (`VersionedForm`) carries the version and `loaded`: a digest of each
   field's value as the form showed it (a keyed hash; the page holds the values anyway).
3. On a StaleEdit the view shows `stale_form()`: the form again, status 409, with the
   person's own input wherever they changed a field, the saved value wherever only the
   other person changed it, and both where both did; above it, who changed which fields
   when (from the access log since `expected`). Saving that page applies the merge.
"""

import datetime
from dataclasses import dataclass

from django import forms
from django.core import signing
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

DIGEST_SALT = "passage.versions.loaded"


class Versioned(models.Model):
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        abstract = True


@dataclass(frozen=True)
class Change:
    actor: str
    fields: list
    at: datetime.datetime


class StaleEdit(Exception):
    """The row changed since the form was loaded; `current` is the row as saved now."""

    def __init__(self, current, changes: list[Change]):
        super().__init__("stale edit")
        self.current = current
        self.changes = changes


def lock(instance, expected: int | None = None, *, queryset=None):
    """`instance`, locked for this transaction and brought up to date with its row.

    With `expected` (the version an edit form was loaded from), a row that has moved on
    raises StaleEdit instead (its `current` is the row as saved now; `instance` is left
    as it was). Without it (a service called from code), the row is still locked and
    read again, so a full save cannot undo what someone else just saved. The caller's
    object itself is refreshed: what the access check attached to it (its rights, its
    loaded case) stays, and whoever holds it sees what was saved.
    """
    queryset = queryset if queryset is not None else type(instance)._default_manager
    fresh = queryset.select_for_update().get(pk=instance.pk)
    if expected is not None and getattr(fresh, "version", None) != expected:
        raise StaleEdit(fresh, changes_since(fresh, expected))
    _refresh(instance, fresh)
    return instance


def _refresh(instance, fresh) -> None:
    """Copy the row's stored values (ciphertext for encrypted fields, ids for relations)
    onto `instance` and forget its decrypted and related caches that no longer match."""
    for field in instance._meta.concrete_fields:
        setattr(instance, field.attname, getattr(fresh, field.attname))
    for key in [k for k in instance.__dict__ if k.startswith("_plain_")]:
        del instance.__dict__[key]  # decrypted again, from the fresh ciphertext, on read
    instance.__dict__.pop("_vault_dirty", None)
    cache = instance._state.fields_cache
    for name, related in list(cache.items()):
        if getattr(instance, f"{name}_id", object()) != getattr(related, "pk", None):
            del cache[name]


def bump(instance) -> int:
    instance.version += 1
    return instance.version


def changes_since(instance, version: int) -> list[Change]:
    """Who changed which fields of `instance` after `version` (the access log's events
    that name its versions)."""
    from .audit import _object_type
    from .models import AccessEvent

    events = (
        AccessEvent.objects.filter(
            object_type=_object_type(instance),
            object_id=str(instance.pk),
            detail__version__gt=version,
        )
        .select_related("actor")
        .order_by("seq")
    )
    return [
        Change(
            actor=(e.actor.get_full_name() or e.actor.get_username()) if e.actor else "",
            fields=list(e.fields),
            at=e.at,
        )
        for e in events
    ]


# --- Forms ----------------------------------------------------------------------------------------
def _canon(value) -> str:
    """One text for a field's value, whether it came from the row or from the form."""
    if value is None or value == "" or value == [] or value == ():
        return ""
    if isinstance(value, (list, tuple, set)):
        return "\x1f".join(_canon(v) for v in value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def digest(name: str, value) -> str:
    return salted_hmac(DIGEST_SALT, f"{name}\x1e{_canon(value)}", algorithm="sha256").hexdigest()[
        :24
    ]


OUT_OF_DATE = _("This form is out of date. Open the page again.")


class VersionField(forms.IntegerField):
    """The version of the row a form was loaded with (hidden; 0: there was no row yet)."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault(
            "error_messages",
            {"required": OUT_OF_DATE, "invalid": OUT_OF_DATE, "min_value": OUT_OF_DATE},
        )
        super().__init__(**kwargs)


class VersionedForm(forms.Form):
    """An edit form that says which version of the row, and which values, it showed."""

    version = VersionField()
    # Optional: without it, a stale save lists every field changed meanwhile as one to
    # check (the version alone still refuses the stale save).
    loaded = forms.CharField(
        widget=forms.HiddenInput,
        required=False,
        max_length=4000,
        error_messages={"max_length": OUT_OF_DATE},
    )

    def tracked(self) -> list[str]:
        return [name for name in self.fields if name not in ("version", "loaded")]

    def show(self, instance, initial: dict):
        """Set what the form was loaded from (an unbound form's hidden fields)."""
        self.initial["version"] = instance.version if instance is not None else 0
        self.initial["loaded"] = signing.dumps(
            {name: digest(name, initial.get(name)) for name in self.tracked()},
            salt=DIGEST_SALT,
            compress=True,
        )
        return self

    def clean_loaded(self):
        if not self.cleaned_data["loaded"]:
            return {}
        try:
            value = signing.loads(self.cleaned_data["loaded"], salt=DIGEST_SALT)
        except signing.BadSignature:
            raise forms.ValidationError(OUT_OF_DATE) from None
        if not isinstance(value, dict):
            raise forms.ValidationError(OUT_OF_DATE)
        return value

    @property
    def expected_version(self) -> int:
        return self.cleaned_data["version"]


def stale_form(form: VersionedForm, stale: StaleEdit, current_initial: dict, **form_kwargs):
    """The form to show after a StaleEdit, and what to tell the person (see the module).

    1. A field only the other person changed takes the saved value.
    2. A field only this person changed keeps their input.
    3. A field both changed keeps their input and is listed with the saved value.
    The new form is loaded from the current version, so saving it applies the merge.
    """
    loaded = form.cleaned_data["loaded"]
    reference = type(form)(initial=current_initial, **form_kwargs)
    data = form.data.copy()
    taken, conflicts = [], []
    for name in form.tracked():
        was = loaded.get(name)
        mine = digest(name, form.cleaned_data.get(name))
        saved = digest(name, current_initial.get(name))
        if saved == was or saved == mine:
            continue
        if mine == was:
            _set(data, form.add_prefix(name), reference[name].value())
            taken.append(form[name].label)
        else:
            conflicts.append((form[name].label, _display(reference, name)))
    data[form.add_prefix("version")] = str(stale.current.version if stale.current else 0)
    merged = type(form)(data, **form_kwargs)
    merged.show(stale.current, current_initial)
    data[form.add_prefix("loaded")] = merged.initial["loaded"]
    merged = type(form)(data, initial=current_initial, **form_kwargs)
    changes = [
        {
            "actor": change.actor,
            "at": change.at,
            "fields": [str(form.fields[f].label) if f in form.fields else f for f in change.fields],
        }
        for change in stale.changes
    ]
    context = {"changes": changes, "taken": taken, "conflicts": conflicts}
    return merged, context


def _set(data, key, value):
    if value is None or value is False:
        data.pop(key, None)
    elif value is True:
        data[key] = "on"
    elif isinstance(value, (list, tuple)):
        data.setlist(key, [str(v) for v in value])
    else:
        data[key] = str(value)


def _display(reference, name) -> str:
    """The saved value as text, the way the form's choices name it."""
    field = reference.fields[name]
    value = reference[name].value()
    choices = dict(getattr(field, "choices", []) or [])
    if isinstance(value, (list, tuple)):
        return ", ".join(str(choices.get(v, v)) for v in value)
    if choices:
        return str(choices.get(value, value) or "")
    return "" if value is None else str(value)


# --- One effect per submission -----------------------------------------------------------------------
class FormToken(models.Model):
    """A used one-time form token.

    A form whose effect is a permanent entry (a consent event, a person's answer, a note,
    a relayed message) carries a fresh random token; the service inserts it here, in its
    own transaction, before its effect. A double submit (two clicks, a resent POST, two
    tabs) inserts the same token again and fails on the primary key: one effect, and the
    second request is told it was done. (A unique constraint, not a check-then-act.)
    """

    token = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey("casework.User", on_delete=models.CASCADE, related_name="+")
    used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return "form token"


class AlreadyDone(Exception):
    """This form was sent before and its effect stands; nothing more was done."""


ALREADY_DONE = _("This was saved already: the form was sent twice, and nothing more was done.")


def new_token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def use_once(*, actor, token: str | None) -> None:
    """Record `token` as used inside the caller's transaction; AlreadyDone if it was.
    None: a call from code, not from a form (nothing to record)."""
    from django.db import IntegrityError, transaction

    if token is None:
        return
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction stays usable
            FormToken.objects.create(token=token, user=actor)
    except IntegrityError:
        raise AlreadyDone from None


class OnceForm(forms.Form):
    """A form with a one-time token (see FormToken); a new one each time it is shown.
    A post without one (not from our pages) is taken as it comes: nothing to dedupe."""

    once = forms.CharField(
        widget=forms.HiddenInput,
        required=False,
        min_length=16,
        max_length=64,
        initial=new_token,
        error_messages={"min_length": OUT_OF_DATE, "max_length": OUT_OF_DATE},
    )

    def clean_once(self):
        return self.cleaned_data["once"] or None
