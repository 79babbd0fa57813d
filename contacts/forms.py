from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from casework import access
from casework.models import User
from casework.versions import OnceForm, VersionedForm

from .models import ConsentEvent, Contact, ContactKind, Message, Purpose

TEXT_LIMIT = 20_000


class ContactForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=ContactKind.choices)
    name = forms.CharField(label=_("Name"), max_length=200)
    relationship = forms.CharField(
        label=_("Relationship or role"),
        max_length=100,
        required=False,
        help_text=_("For example: mother, lawyer."),
    )
    organisation = forms.CharField(label=_("Organisation"), max_length=200, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=60, required=False)
    email = forms.EmailField(label=_("E-mail"), required=False)
    notes = forms.CharField(
        label=_("Notes"),
        max_length=TEXT_LIMIT,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    FIELDS = ["kind", "name", "relationship", "organisation", "phone", "email", "notes"]


class ContactEditForm(VersionedForm, ContactForm):
    """The edit of a contact: its fields, and the version and values it was loaded from."""


class DoNotDiscloseForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=60, required=False)
    email = forms.EmailField(label=_("E-mail"), required=False)
    note = forms.CharField(
        label=_("Why (for the caseworkers)"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def clean(self):
        data = super().clean()
        if not any(data.get(k) for k in ("name", "phone", "email")):
            raise forms.ValidationError(
                _("Enter at least a name, a phone number or an e-mail address.")
            )
        return data


class ConsentStartForm(forms.Form):
    """Step 1: whose consent, to what, towards whom, in which language is it explained."""

    subject = forms.ModelChoiceField(
        label=_("Whose consent"),
        required=False,
        queryset=Contact.objects.none(),
        empty_label=_("The person of this case"),
    )
    purpose = forms.ChoiceField(label=_("Consent to"), choices=Purpose.choices)
    counterpart = forms.ModelChoiceField(
        label=_("Towards which contact"),
        required=False,
        queryset=Contact.objects.none(),
        help_text=_(
            "Needed for relaying messages, sharing contact details, meeting, and sharing with an agency."
        ),
    )
    language = forms.ChoiceField(label=_("Language of the notice"), choices=settings.LANGUAGES)

    def __init__(self, *args, contacts=None, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("subject", "counterpart"):
            self.fields[name].queryset = (
                contacts if contacts is not None else Contact.objects.none()
            )
            self.fields[name].label_from_instance = lambda c: f"{c.name} ({c.get_kind_display()})"


class ConsentRecordForm(OnceForm):
    """Step 2, under the notice text: the answer and how it was given."""

    decision = forms.ChoiceField(
        label=_("Answer"),
        widget=forms.RadioSelect,
        choices=[
            (ConsentEvent.Decision.GRANTED, _("Agrees")),
            (ConsentEvent.Decision.DECLINED, _("Declines")),
        ],
    )
    method = forms.ChoiceField(label=_("How"), choices=ConsentEvent.Method.choices)
    witness = forms.ModelChoiceField(
        label=_("Witness (for verbal consent)"), required=False, queryset=User.objects.none()
    )
    expires_on = forms.DateField(
        label=_("Valid until (optional)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    scan = forms.FileField(label=_("Scan of the signed paper"), required=False)
    remarks = forms.CharField(
        label=_("Remarks"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, witnesses=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["witness"].queryset = (
            witnesses if witnesses is not None else User.objects.none()
        )

    def clean_scan(self):
        scan = self.cleaned_data.get("scan")
        if scan and scan.size > settings.PASSAGE_MAX_ATTACHMENT_BYTES:
            raise forms.ValidationError(_("The scan is too large."))
        return scan


class WithdrawForm(OnceForm):
    method = forms.ChoiceField(label=_("How was it withdrawn"), choices=ConsentEvent.Method.choices)
    witness = forms.ModelChoiceField(
        label=_("Witness (for verbal withdrawal)"), required=False, queryset=User.objects.none()
    )

    def __init__(self, *args, witnesses=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["witness"].queryset = (
            witnesses if witnesses is not None else User.objects.none()
        )


class MessageForm(OnceForm):
    direction = forms.ChoiceField(label=_("Direction"), choices=Message.Direction.choices)
    body = forms.CharField(
        label=_("Message"), max_length=TEXT_LIMIT, widget=forms.Textarea(attrs={"rows": 4})
    )


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(
        label=_("Decision"),
        widget=forms.RadioSelect,
        choices=[
            ("approve", _("Approve for delivery")),
            ("return", _("Return for changes")),
            ("block", _("Block")),
        ],
    )
    reason = forms.CharField(
        label=_("Reason (needed to return or block)"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


def witnesses_for(case, actor):
    """Colleagues who may witness: active caseworkers and coordinators of the case's team."""
    return access.team_people(case.team, coordinators=True).exclude(pk=actor.pk)
