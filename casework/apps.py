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
        from django.contrib.auth import signals

        from . import audit
        from . import checks as deploy_checks

        checks.register(keyring_check, "vault")
        deploy_checks.register()
        # Django tells of logins only through these signals; they write access events.
        signals.user_logged_in.connect(audit.on_login, dispatch_uid="passage-login")
        signals.user_logged_out.connect(audit.on_logout, dispatch_uid="passage-logout")
        signals.user_login_failed.connect(audit.on_login_failed, dispatch_uid="passage-failed")


def keyring_check(app_configs=None, **kwargs):
    """Stop runserver, migrate and every other command early, and clearly, without a
    usable keyring (E001) or with one that is not this database's (E003). A database
    that cannot be asked yet (before the first `migrate`) checks nothing further."""
    from . import vault

    try:
        vault.keyring()
    except vault.KeyringMismatch as exc:
        return [checks.Critical(str(exc), id="passage.E003")]
    except vault.KeyringError as exc:
        return [checks.Critical(str(exc), id="passage.E001")]
    return []


class PassageAdminConfig(admin_apps.AdminConfig):
    """The Django admin, limited to staff accounts and teams (see casework/admin.py)."""

    default = False
    default_site = "casework.admin_site.PassageAdminSite"
