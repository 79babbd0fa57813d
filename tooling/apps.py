from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ToolingConfig(AppConfig):
    """Developer and operator tooling: `benchmark`, `loadtest`, `seed_demo`, `totp_code`.

    Kept out of casework because tooling is not the product: it reaches across every app
    (demo family requests, consent, matching baselines), and the core must import nothing
    above it. It sits at the top of the dependency order (tooling -> families -> contacts ->
    casework), nothing imports it, and it has no migrations. The benchmark's plain-Django
    baseline (tooling/plain.py) has tables of its own, made and dropped by the tools, and
    URLs of its own (tooling/urls.py), served only under tooling/bench_settings.py.
    """

    name = "tooling"
    verbose_name = _("Development tooling")
    default_auto_field = "django.db.models.BigAutoField"
