from django.apps import AppConfig


class VaultTestConfig(AppConfig):
    name = "tests.vaulttest"
    label = "vaulttest"
    default_auto_field = "django.db.models.BigAutoField"
