from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class CaseworkConfig(AppConfig):
    default = True
    name = "casework"
    verbose_name = _("Casework")
    default_auto_field = "django.db.models.BigAutoField"


class PassageAdminConfig(admin_apps.AdminConfig):
    """The Django admin, limited to staff accounts and teams (see casework/admin.py)."""

    default = False
    default_site = "casework.admin_site.PassageAdminSite"
