from django import forms
from django.conf import settings
from django.core import signing
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from casework import vault

from . import limits

NAME_LIMIT = 200
TEXT_LIMIT = 5000
SIGNER_SALT = "passage.families.form-started"


def started_token() -> str:
    return signing.dumps(timezone.now().timestamp(), salt=SIGNER_SALT)


def looks_automated(data) -> bool:
    """Honeypot filled, or the form came back faster than a person can fill it (or
    without a valid start token). Such a submission gets the normal answer and is dropped."""
    if data.get("website"):
        return True
    try:
        started = signing.loads(data.get("started", ""), salt=SIGNER_SALT, max_age=24 * 3600)
    except (signing.BadSignature, TypeError, ValueError):
        return True
    return timezone.now().timestamp() - float(started) < settings.PASSAGE_FORM_MIN_SECONDS


def _check_parts(names) -> None:
    """Each name within the bounded number of parts (what matching and screening look
    up): the same rule, and the same error, for every submission."""
    most = limits.max_name_tokens()
    if any(len(vault.tokens(n)) > most for n in names):
        raise forms.ValidationError(
            _("Each name can have at most %(count)s parts (words).") % {"count": most}
        )


class ContactRequestForm(forms.Form):
    requester_name = forms.CharField(
        label=_("Your name"),
        max_length=NAME_LIMIT,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    relationship = forms.CharField(
        label=_("Your relationship to the person"),
        max_length=100,
        help_text=_("For example: mother, brother, old friend."),
    )
    requester_country = forms.CharField(
        label=_("The country you live in"),
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "country-name"}),
    )
    requester_email = forms.EmailField(
        label=_("Your e-mail (optional)"),
        required=False,
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    requester_phone = forms.CharField(
        label=_("Your phone (optional)"),
        required=False,
        max_length=60,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    sought_names = forms.CharField(
        label=_("The person's names"),
        max_length=NAME_LIMIT * 10,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "One name per line, in any script: their birth name, other names, and names they may use now."
        ),
    )
    sought_birth_year = forms.IntegerField(
        label=_("Year of birth (approximate)"),
        required=False,
        min_value=1900,
        max_value=timezone.now().year,
    )
    last_place = forms.CharField(
        label=_("Where you last knew them to be"), max_length=200, required=False
    )
    last_year = forms.IntegerField(
        label=_("In which year"), required=False, min_value=1900, max_value=timezone.now().year
    )
    other_details = forms.CharField(
        label=_("Anything else that could help"),
        required=False,
        max_length=TEXT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    message = forms.CharField(
        label=_("Your message to them"),
        max_length=TEXT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("We pass it on only if they agree to hear from you."),
    )
    consent_processing = forms.BooleanField(
        label=_("I agree that Passage keeps what I wrote here, encrypted, to handle my request.")
    )
    consent_nothing_shared = forms.BooleanField(
        label=_(
            "I understand that nothing about the person will be shared with me unless they agree."
        )
    )
    consent_retention = forms.BooleanField(
        label=_(
            "I understand that my request is deleted one year after it is closed, or at once if I withdraw it."
        )
    )
    # Not for people: hidden from view and from screen readers.
    website = forms.CharField(required=False, label=_("Leave this empty"))
    started = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_requester_name(self):
        name = self.cleaned_data["requester_name"]
        _check_parts([name])
        return name

    def clean_sought_names(self):
        names = [
            line.strip() for line in self.cleaned_data["sought_names"].splitlines() if line.strip()
        ]
        if not names:
            raise forms.ValidationError(
                _("Write at least one name of the person you are looking for.")
            )
        if len(names) > limits.max_names():
            raise forms.ValidationError(
                _("Write at most %(count)s names, one per line.") % {"count": limits.max_names()}
            )
        if any(len(n) > NAME_LIMIT for n in names):
            raise forms.ValidationError(_("Each name can have at most 200 characters."))
        _check_parts(names)
        return names

    def clean_requester_phone(self):
        phone = self.cleaned_data["requester_phone"].strip()
        digits = sum(ch.isdigit() for ch in phone)
        if phone and digits < 6:
            raise forms.ValidationError(
                _("Write the phone number with its area or country code, or leave it empty.")
            )
        return phone

    def request_data(self) -> dict:
        data = self.cleaned_data
        return {
            key: data.get(key) if data.get(key) is not None else ""
            for key in (
                "requester_name",
                "relationship",
                "requester_country",
                "requester_email",
                "requester_phone",
                "sought_names",
                "last_place",
                "other_details",
                "message",
            )
        } | {
            "sought_birth_year": data.get("sought_birth_year"),
            "last_year": data.get("last_year"),
        }


class StatusForm(forms.Form):
    reference = forms.CharField(
        label=_("Reference"),
        max_length=20,
        help_text=_("It looks like FR-7KQ2-9XMB."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
    secret = forms.CharField(
        label=_("Secret"), max_length=40, widget=forms.PasswordInput(attrs={"autocomplete": "off"})
    )


class FollowUpForm(forms.Form):
    body = forms.CharField(
        label=_("Your message"), max_length=TEXT_LIMIT, widget=forms.Textarea(attrs={"rows": 4})
    )
