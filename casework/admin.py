"""The Django admin, for administrators only, limited to staff accounts and teams.

No model holding case content is ever registered here: administrators manage
people and keys, and nothing in their role reads a case.

Administrators never choose anyone's password nor pair anyone's authenticator: they
send links that only the account holder can use (casework/staff.py). Every change of
roles, teams, active flag, e-mail, password, second factor and lockout goes through
casework/staff.py, which writes its access event in the admin's transaction and
tells the people concerned.
"""

from axes.models import AccessAttempt
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UsernameField
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from . import staff
from .models import BackupCodeDevice, Role, Team, User, VaultTOTPDevice


class _RolesForm(forms.ModelForm):
    # The administrator making the change (set per request by the ModelAdmin).
    actor = None

    def clean_groups(self):
        groups = self.cleaned_data["groups"]
        problem = staff.role_conflict(group.name for group in groups)
        if problem:
            raise forms.ValidationError(problem)
        return groups


class StaffChangeForm(_RolesForm):
    """No password field: an administrator sends a reset, only the holder sets one."""

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "is_active", "groups"]
        field_classes = {"username": UsernameField}

    def clean_email(self):
        email = self.cleaned_data["email"]
        if (
            "email" in self.changed_data
            and self.actor is not None
            and staff.needs_second_administrator(self.actor, self.instance, "staff.email_changed")
        ):
            raise forms.ValidationError(staff.SECOND_ADMINISTRATOR)
        return email


class StaffCreationForm(_RolesForm):
    """A new account has no usable password: its holder sets one from the e-mailed link."""

    class Meta:
        model = User
        fields = ["username", "email", "first_name", "last_name", "groups"]
        field_classes = {"username": UsernameField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["email"].help_text = _("The link to set a password goes to this address.")

    def save(self, commit=True):
        user = super().save(commit=False)
        user.set_unusable_password()
        if commit:
            user.save()
            self.save_m2m()
        return user


# What an administrator can do to an account from its page: (service, title, what
# happens, message when done). Each is a confirmation page and a POST.
ACCOUNT_ACTIONS = {
    "send_password_reset": (
        staff.password_reset_send,
        _("Send a password reset"),
        _(
            "The holder gets an e-mail with a link to set a new password. Only they can use "
            "it; their current password keeps working until they do."
        ),
        _("A password reset link was sent to the holder."),
    ),
    "reset_second_factor": (
        staff.second_factor_reset,
        _("Reset the second factor"),
        _(
            "Every passkey, authenticator app and backup code of this account is removed "
            "and every session of the account ends. The holder then needs an enrolment "
            "link to set up a new one."
        ),
        _(
            "The second factor was reset and every session of the account ended. Send an "
            "enrolment link when the holder is ready."
        ),
    ),
    "send_enrolment_link": (
        staff.enrolment_link_issue,
        _("Send an enrolment link"),
        _(
            "The holder gets an e-mail with a one-time link to set up a new second factor, "
            "after logging in with their password. It expires soon."
        ),
        _("An enrolment link was sent to the holder."),
    ),
    "clear_lockout": (
        staff.lockout_clear,
        _("Clear the login lockout"),
        _("Failed logins recorded for this account are forgotten, so it can log in again."),
        _("The login lockout of this account was cleared."),
    ),
}


@admin.register(User)
class StaffAdmin(UserAdmin):
    form = StaffChangeForm
    add_form = StaffCreationForm
    change_form_template = "admin/casework/user/change_form.html"
    list_display = ["username", "first_name", "last_name", "email", "is_active", "role_list"]
    list_filter = ["is_active", "groups"]
    fieldsets = [
        (None, {"fields": ["username"]}),
        (_("Person"), {"fields": ["first_name", "last_name", "email"]}),
        (_("Access"), {"fields": ["is_active", "groups"]}),
        (_("Dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["username", "email", "first_name", "last_name", "groups"]}),
    ]
    readonly_fields = ["last_login", "date_joined"]
    filter_horizontal = ["groups"]

    @admin.display(description=_("roles"))
    def role_list(self, obj):
        return ", ".join(obj.role_labels())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    def get_readonly_fields(self, request, obj=None):
        # Nobody changes their own roles: a second administrator has to.
        if obj is not None and obj.pk == request.user.pk:
            return [*self.readonly_fields, "groups", "is_active"]
        return self.readonly_fields

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            kwargs["queryset"] = Group.objects.filter(name__in=Role.values)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user  # a class made for this request by modelform_factory
        return form

    def has_delete_permission(self, request, obj=None):
        # Accounts are deactivated, never deleted: the access log keeps naming them.
        return False

    def save_model(self, request, obj, form, change):
        obj._passage_before = staff.AccountState.of(obj) if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        user = form.instance
        staff.account_recorded(actor=request.user, user=user, before=user._passage_before)
        if not change:
            staff.password_reset_send(actor=request.user, user=user, reason="new_account")
            messages.info(request, _("A link to set a password was sent to the new account."))

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        actions = [
            path(
                f"<path:object_id>/{name.replace('_', '-')}/",
                self.admin_site.admin_view(self._action_view(name)),
                name="{}_{}_{}".format(*info, name),
            )
            for name in ACCOUNT_ACTIONS
        ]
        # Django's "set this user's password" page is left out: nobody sets another's.
        kept = [u for u in super().get_urls() if u.name != "auth_user_password_change"]
        return actions + kept

    def user_change_password(self, request, id, form_url=""):
        raise Http404

    def _action_view(self, name):
        def view(request, object_id):
            return self.account_action(request, object_id, name)

        return view

    def account_action(self, request, object_id, name):
        user = self.get_object(request, unquote(object_id))
        if user is None:
            raise Http404
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        service, title, explanation, done = ACCOUNT_ACTIONS[name]
        change_url = reverse("admin:casework_user_change", args=[user.pk])
        if request.method == "POST":
            try:
                service(actor=request.user, user=user)
            except staff.AccountActionRefused as refusal:
                messages.error(request, str(refusal))
            else:
                messages.success(request, done)
            return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": user,
            "title": title,
            "explanation": explanation,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/casework/user/account_action.html", context)


class TeamForm(forms.ModelForm):
    actor = None

    class Meta:
        model = Team
        fields = ["name", "coordinators", "members", "family_triage"]

    def clean(self):
        data = super().clean()
        if self.actor is None:
            return data
        for field in ("coordinators", "members"):
            before = set()
            if self.instance.pk:
                before = set(getattr(self.instance, field).values_list("pk", flat=True))
            after = {user.pk for user in data.get(field) or []}
            if self.actor.pk in before ^ after:
                self.add_error(
                    field,
                    _("You cannot change your own place in a team: another administrator must."),
                )
        return data


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ["name", "family_triage", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["coordinators", "members"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user
        return form

    def save_model(self, request, obj, form, change):
        obj._passage_before = staff.team_places(obj) if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        team = form.instance
        staff.team_recorded(
            actor=request.user,
            team=team,
            before=team._passage_before,
            changed_fields=form.changed_data,
        )

    def delete_model(self, request, obj):
        staff.team_deleted(actor=request.user, team=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        # The bulk action runs outside the admin's transaction: the events go with it.
        with transaction.atomic():
            for team in queryset:
                staff.team_deleted(actor=request.user, team=team)
            super().delete_queryset(request, queryset)


class _ListedDeviceAdmin(admin.ModelAdmin):
    """Listed so administrators see who has a second factor; a reset is done on the
    account's page (one path, which ends the sessions and writes the event)."""

    list_display = ["user", "name", "confirmed"]
    fields = ["user", "name", "confirmed"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BackupCodeDevice)
class BackupCodeDeviceAdmin(_ListedDeviceAdmin):
    pass


# django-otp's own TOTP device keeps plain seeds and is no longer used (casework/otp.py).
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)


@admin.register(VaultTOTPDevice)
class AuthenticatorAdmin(_ListedDeviceAdmin):
    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    fields = list_display
    readonly_fields = fields


@admin.register(WebAuthnCredential)
class PasskeyAdmin(_ListedDeviceAdmin):
    list_display = ["user", "name", "created_at", "last_used_at"]
    fields = list_display
    readonly_fields = fields


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class LockoutRecordAdmin(admin.ModelAdmin):
    """Lockout records: an address and a count. The username is a keyed hash and the
    typed form data is not shown; deleting records is logged."""

    list_display = ["attempt_time", "ip_address", "failures_since_start", "path_info"]
    fields = list_display
    readonly_fields = fields
    search_fields = ["ip_address"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        staff.lockout_records_delete(
            actor=request.user, queryset=AccessAttempt.objects.filter(pk=obj.pk)
        )

    def delete_queryset(self, request, queryset):
        staff.lockout_records_delete(actor=request.user, queryset=queryset)


admin.site.unregister(Group)
