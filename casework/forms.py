from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from . import access
from .models import (
    Aim,
    Priority,
    Risk,
    Stage,
    Task,
    TaskAim,
    TaskStatus,
    TaskTemplate,
    TaskTemplateItem,
    Team,
    User,
)
from .versions import OnceForm, VersionedForm, VersionField


class LoginForm(AuthenticationForm):
    """Django's login form: one message for an unknown user and a wrong password."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class TokenForm(forms.Form):
    otp_token = forms.CharField(
        label=_("Code"),
        max_length=32,
        strip=True,
        help_text=_("The 6-digit code from your authenticator app, or one of your backup codes."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )


class EnrolForm(TokenForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["otp_token"].help_text = _("Enter the 6-digit code your app now shows.")
        self.fields["otp_token"].widget.attrs["inputmode"] = "numeric"


class PasskeyNameForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=64,
        strip=True,
        help_text=_("So you can tell your keys apart, for example “work laptop” or “blue key”."),
    )


# --- Cases -------------------------------------------------------------------------------------

TEXT_LIMIT = 20_000
NAME_LIMIT = 200


class NamesField(forms.CharField):
    """Other names, one per line, kept as a list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def clean(self, value):
        text = super().clean(value) or ""
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if len(names) > 30:
            raise forms.ValidationError(_("Enter at most 30 names."))
        if any(len(n) > NAME_LIMIT for n in names):
            raise forms.ValidationError(_("Each name can have at most 200 characters."))
        return names


class CaseForm(forms.Form):
    """Intake of a case: the person (encrypted) and how we work with them."""

    legal_name = forms.CharField(label=_("Legal name"), max_length=NAME_LIMIT)
    other_names = NamesField(
        label=_("Other names and aliases"),
        required=False,
        max_length=NAME_LIMIT * 30,
        help_text=_(
            "One per line: names used inside the group, earlier names, spellings in other scripts."
        ),
    )
    birth_date = forms.DateField(
        label=_("Date of birth"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    birth_year = forms.IntegerField(
        label=_("Or approximate year of birth"), required=False, min_value=1900, max_value=2100
    )
    gender = forms.CharField(label=_("Gender"), max_length=60, required=False)
    nationalities = forms.CharField(label=_("Nationalities"), max_length=200, required=False)
    languages = forms.CharField(label=_("Languages"), max_length=200, required=False)
    left_on = forms.DateField(
        label=_("Date they left the group"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    circumstances = forms.CharField(
        label=_("Circumstances"),
        required=False,
        max_length=TEXT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    needs = forms.CharField(
        label=_("Needs"),
        required=False,
        max_length=TEXT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    safety_notes = forms.CharField(
        label=_("Safety notes"),
        required=False,
        max_length=TEXT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    team = forms.ModelChoiceField(label=_("Team"), queryset=Team.objects.none())
    aims = forms.MultipleChoiceField(
        label=_("Aims"), choices=Aim.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    risk = forms.ChoiceField(label=_("Risk level"), choices=Risk.choices, initial=Risk.MEDIUM)

    PERSON = [
        "legal_name",
        "other_names",
        "birth_date",
        "birth_year",
        "gender",
        "nationalities",
        "languages",
        "left_on",
        "circumstances",
        "needs",
        "safety_notes",
    ]

    def __init__(self, *args, teams=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams if teams is not None else Team.objects.none()

    def clean_legal_name(self):
        name = self.cleaned_data["legal_name"].strip()
        if not name:
            raise forms.ValidationError(_("Enter the person's legal name."))
        return name

    def person(self) -> dict:
        data = self.cleaned_data
        person = {name: data.get(name) for name in self.PERSON}
        for name in (
            "gender",
            "nationalities",
            "languages",
            "circumstances",
            "needs",
            "safety_notes",
        ):
            person[name] = person[name] or ""
        return person


class CaseEditForm(VersionedForm, CaseForm):
    """The edit of a case: its fields, and the version and values it was loaded from."""


class StageForm(forms.Form):
    stage = forms.ChoiceField(
        label=_("Stage"), choices=[c for c in Stage.choices if c[0] != Stage.CLOSED]
    )


class NoteForm(OnceForm):
    body = forms.CharField(
        label=_("New note"), max_length=TEXT_LIMIT, widget=forms.Textarea(attrs={"rows": 3})
    )
    restricted = forms.BooleanField(
        label=_("Restricted: only the case's caseworkers and its coordinators"), required=False
    )
    attachment = forms.FileField(label=_("Attachment (optional)"), required=False)

    def clean_attachment(self):
        upload = self.cleaned_data.get("attachment")
        if upload and upload.size > settings.PASSAGE_MAX_ATTACHMENT_BYTES:
            raise forms.ValidationError(
                _("The file is too large: at most %(mb)s MB.")
                % {"mb": settings.PASSAGE_MAX_ATTACHMENT_BYTES // (1024 * 1024)}
            )
        return upload


class WhereaboutsForm(VersionedForm):
    country = forms.CharField(label=_("Country"), max_length=100, required=False)
    city = forms.CharField(label=_("City"), max_length=100, required=False)
    address = forms.CharField(
        label=_("Address"),
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    phone = forms.CharField(label=_("Phone"), max_length=60, required=False)
    email = forms.EmailField(label=_("E-mail"), required=False)
    safe_contact = forms.CharField(
        label=_("Safe-contact instructions"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    code_word = forms.CharField(label=_("Code word for call-backs"), max_length=100, required=False)


class ReasonForm(forms.Form):
    REASONS = [
        ("contact", _("To contact the person")),
        ("safety", _("A safety check")),
        ("documents", _("To send documents or arrange an appointment")),
        ("meeting", _("To prepare an agreed meeting")),
        ("emergency", _("An emergency")),
    ]
    reason = forms.ChoiceField(
        label=_("Why do you need the whereabouts now?"), choices=REASONS, widget=forms.RadioSelect
    )


class GrantForm(forms.Form):
    user = forms.ModelChoiceField(label=_("Staff member"), queryset=User.objects.none())
    level = forms.ChoiceField(label=_("Access"), choices=access.LEVEL_CHOICES)

    def __init__(self, *args, users=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = users if users is not None else User.objects.none()


class RevokeForm(forms.Form):
    user = forms.ModelChoiceField(queryset=User.objects.all())
    level = forms.ChoiceField(choices=access.LEVEL_CHOICES)


class SealForm(forms.Form):
    """Seal ("1") or unseal ("0"): anything else changes nothing."""

    sealed = forms.TypedChoiceField(
        choices=[("1", _("Seal")), ("0", _("Unseal"))],
        coerce=lambda value: value == "1",
        error_messages={
            "required": _("Choose whether to seal or unseal the case."),
            "invalid_choice": _("Choose whether to seal or unseal the case."),
        },
    )


class BreakGlassForm(forms.Form):
    reference = forms.CharField(
        label=_("Case reference"), max_length=20, help_text=_("For example P-2026-0042.")
    )
    justification = forms.CharField(
        label=_("Why must you open this case now?"),
        min_length=20,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "Auditors read this. Access lasts one hour and the team's coordinators are told."
        ),
    )

    def clean_reference(self):
        return self.cleaned_data["reference"].strip().upper()


class CaseFilterForm(forms.Form):
    stage = forms.ChoiceField(
        label=_("Stage"), required=False, choices=[("", _("Any stage")), *Stage.choices]
    )
    risk = forms.ChoiceField(
        label=_("Risk"), required=False, choices=[("", _("Any risk")), *Risk.choices]
    )
    team = forms.ModelChoiceField(
        label=_("Team"), required=False, queryset=Team.objects.none(), empty_label=_("Any team")
    )
    assignee = forms.ModelChoiceField(
        label=_("Caseworker"), required=False, queryset=User.objects.none(), empty_label=_("Anyone")
    )

    def __init__(self, *args, teams=None, assignees=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams if teams is not None else Team.objects.none()
        self.fields["assignee"].queryset = (
            assignees if assignees is not None else User.objects.none()
        )
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-select form-select-sm"


class CaseSearchForm(forms.Form):
    q = forms.CharField(label=_("Reference or name"), max_length=200)


# --- Tasks -------------------------------------------------------------------------------------
class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        label=_("Assign to"),
        queryset=User.objects.none(),
        required=False,
        empty_label=_("Nobody (back to the team queue)"),
    )
    grant_access = forms.BooleanField(
        label=_("If they cannot see the case yet, grant them access with this assignment"),
        required=False,
    )

    def __init__(self, *args, assignees=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = (
            assignees if assignees is not None else User.objects.none()
        )


class TaskForm(AssignForm):
    """A new task; the assignee and the access grant work as on the assignment form."""

    field_order = ["title", "details", "aim", "priority", "due_on", "assignee", "grant_access"]

    title = forms.CharField(label=_("Task"), max_length=200)
    details = forms.CharField(
        label=_("Details"),
        required=False,
        max_length=TEXT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    aim = forms.ChoiceField(label=_("Aim"), choices=TaskAim.choices, initial=TaskAim.SUPPORT)
    priority = forms.TypedChoiceField(
        label=_("Priority"), choices=Priority.choices, coerce=int, initial=Priority.NORMAL
    )
    due_on = forms.DateField(
        label=_("Due"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].empty_label = _("Nobody yet")


class ChecklistApplyForm(forms.Form):
    """A checklist in use, by its id: anything else is "choose from the list"."""

    template = forms.ModelChoiceField(
        label=_("Add tasks from a checklist"),
        queryset=TaskTemplate.objects.filter(active=True),
        error_messages={
            "required": _("Choose a checklist from the list."),
            "invalid_choice": _("Choose a checklist from the list."),
        },
    )


class TaskStatusForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), choices=TaskStatus.choices)
    version = VersionField()


class TaskCommentForm(forms.Form):
    comment = forms.CharField(
        label=_("Comment"), max_length=TEXT_LIMIT, widget=forms.Textarea(attrs={"rows": 2})
    )


class TaskAssignForm(AssignForm):
    """One task's assignment, with the version of the task it was loaded with."""

    version = VersionField()


class BulkAssignForm(AssignForm):
    """Tasks ticked on the board, each with the version the board showed
    (`version-<task id>`), and who gets them."""

    tasks = forms.ModelMultipleChoiceField(queryset=Task.objects.none())

    def __init__(self, *args, tasks=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tasks"].queryset = tasks if tasks is not None else Task.objects.none()

    def clean(self):
        cleaned = super().clean()
        versions = {}
        for task in cleaned.get("tasks") or []:
            try:
                versions[task.pk] = VersionField().clean(self.data.get(f"version-{task.pk}"))
            except forms.ValidationError as error:
                raise forms.ValidationError(error.messages[0]) from None
        cleaned["versions"] = versions
        return cleaned


class BoardFilterForm(forms.Form):
    DUE = [
        ("", _("Any due date")),
        ("overdue", _("Overdue")),
        ("week", _("Due within a week")),
        ("later", _("Due later")),
        ("none", _("No due date")),
    ]
    aim = forms.ChoiceField(
        label=_("Aim"), required=False, choices=[("", _("Any aim")), *TaskAim.choices]
    )
    priority = forms.TypedChoiceField(
        label=_("Priority"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("Any priority")), *Priority.choices],
    )
    due = forms.ChoiceField(label=_("Due"), required=False, choices=DUE)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-select form-select-sm"


class TaskTemplateForm(forms.ModelForm):
    # The version of the checklist the page was loaded with; a new one has none.
    version = VersionField(required=False)

    class Meta:
        model = TaskTemplate
        fields = ["name", "aim", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["version"].required = True
            self.fields["version"].initial = self.instance.version


TemplateItemFormSet = forms.inlineformset_factory(
    TaskTemplate,
    TaskTemplateItem,
    fields=["title", "priority", "due_in_days", "position"],
    extra=2,
    can_delete=True,
)
