from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.core import checks
from django.utils.translation import gettext_lazy as _


class CaseworkConfig(AppConfig):
    default = True
    name = "casework"
    verbose_name = _("Casework")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        checks.register(keyring_check, "vault")


def keyring_check(app_configs=None, **kwargs):
    """Stop runserver, migrate and the worker early, and clearly, without a usable keyring."""
    from . import vault

    try:
        vault.keyring()
    except vault.KeyringError as exc:
        return [checks.Critical(str(exc), id="passage.E001")]
    return []


class PassageAdminConfig(admin_apps.AdminConfig):
    """The Django admin, limited to staff accounts and teams (see casework/admin.py)."""

    default = False
    default_site = "casework.admin_site.PassageAdminSite"
