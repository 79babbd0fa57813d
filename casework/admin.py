"""The Django admin, for administrators only, limited to staff accounts and teams.

No model holding case content is ever registered here: administrators manage
people and keys, and nothing in their role reads a case.
"""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _

from .models import BackupCodeDevice, Role, Team, User


@admin.register(User)
class StaffAdmin(UserAdmin):
    list_display = ["username", "first_name", "last_name", "email", "is_active", "role_list"]
    list_filter = ["is_active", "groups"]
    fieldsets = [
        (None, {"fields": ["username", "password"]}),
        (_("Person"), {"fields": ["first_name", "last_name", "email"]}),
        (_("Access"), {"fields": ["is_active", "groups"]}),
        (_("Dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["username", "email", "password1", "password2", "groups"]}),
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


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["name", "coordinators", "members", "family_triage"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ["name", "family_triage", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["coordinators", "members"]


@admin.register(BackupCodeDevice)
class BackupCodeDeviceAdmin(admin.ModelAdmin):
    """Listed so an administrator can reset a lost set; the codes themselves are hashes."""

    list_display = ["user", "name", "confirmed"]
    fields = ["user", "name", "confirmed"]
    readonly_fields = ["user"]

    def has_add_permission(self, request):
        return False


admin.site.unregister(Group)
