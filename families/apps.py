from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FamiliesConfig(AppConfig):
    name = "families"
    verbose_name = _("Family contact requests")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from casework import panels

        from .panels import family_requests_panel

        panels.register(family_requests_panel)
