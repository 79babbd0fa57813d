import os
import shutil

import pytest

from casework.vault import Keyring

# A keyring for the whole run, in memory only (never var/keyring.json of `make run`).
os.environ["PASSAGE_KEYRING_JSON"] = Keyring.generate().to_json()

from tests.base import personas  # noqa: F401  (fixture)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _fast_hashers(settings):
    # Argon2 is the production hasher (tested in test_settings); tests need speed.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_cache():
    from django.core.cache import cache

    from families import ratelimit

    cache.clear()
    # The rate limits' own fallback (a process-wide count and pause, kept while the
    # shared cache is down): a fault one test injects must not limit the next.
    ratelimit.LOCAL.clear()
    ratelimit.resume_shared()
    yield


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


def pytest_collection_modifyitems(config, items):
    if os.path.exists(CHROMIUM) or os.environ.get("CI"):
        return  # in CI a missing browser must fail, not skip
    skip = pytest.mark.skip(
        reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    return f"browser tests: {'Chromium at ' + found if found else 'skipped (apt-get install -y chromium)'}"


def _flush_with_append_only_tables():
    """TransactionTestCase empties the database with DELETE (SQLite) or TRUNCATE
    (PostgreSQL), which the access log's triggers rightly refuse. Around that flush
    only, the triggers come off and go back on."""
    from django.db import connections
    from django.test import TransactionTestCase

    from casework import audit

    original = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self):
        names = self._databases_names(include_mirrors=False)
        tables = audit.append_only_tables()
        for name in names:
            for table, _pk in tables:
                audit.drop_triggers(connections[name], table)
        try:
            original(self)
        finally:
            for name in names:
                for table, pk in tables:
                    audit.install_triggers(connections[name], table, pk)

    TransactionTestCase._fixture_teardown = _fixture_teardown


_flush_with_append_only_tables()


def ensure_migration_data():
    """Put back what data migrations made (content types, permissions, roles, notice
    texts, checklists), which a flush between transactional tests can remove or renumber.
    Every step is get-or-create."""
    import importlib

    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.contenttypes.management import create_contenttypes
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    ContentType.objects.clear_cache()
    for app_config in apps.get_app_configs():
        create_contenttypes(app_config, verbosity=0)
        create_permissions(app_config, verbosity=0)
    importlib.import_module("casework.migrations.0002_roles").assign_roles(apps)
    for module in (
        "casework.migrations.0007_task_templates",
        "families.migrations.0002_family_notice",
    ):
        importlib.import_module(module).seed(apps, connection)
    importlib.import_module("contacts.migrations.0002_consent_ledger").install(apps, connection)


@pytest.fixture(autouse=True)
def _migration_data_for_transactional_tests(request, _django_db_helper):
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if transactional:
        ensure_migration_data()
    yield
