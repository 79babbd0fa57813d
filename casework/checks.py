"""Deploy checks: production refuses settings that would quietly undo a safeguard.

Each is an Error of `manage.py check --deploy` when DEBUG is off (`make serve` runs it
before starting anything); the development profile (`make run`, DEBUG=1) is left alone.
"""

from django.conf import settings
from django.core import checks

# Caches that each process keeps for itself (or not at all): a rate limit counted there
# counts per process, so N processes allow N times the limit.
PROCESS_LOCAL_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}

# Keys anyone can read: the development default (in config/settings.py) and the
# README's placeholder.
PUBLIC_SECRET_KEYS = {"<50+ random characters>"}


def register() -> None:
    for check in (broker_check, secret_key_check, hosts_check, fault_delay_check, cache_check):
        checks.register(check, checks.Tags.security, deploy=True)


def _production() -> bool:
    return not settings.DEBUG


def broker_check(app_configs=None, **kwargs):
    if not _production():
        return []
    if settings.CELERY_BROKER_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        return []
    return [
        checks.Error(
            "No task broker is configured: screening, matching and e-mails would run "
            "inside the request, where their time and queries show whether a family's "
            "request matched anyone.",
            hint="Set CELERY_BROKER_URL to the production Redis (and run a worker).",
            id="passage.E010",
        )
    ]


def secret_key_check(app_configs=None, **kwargs):
    if not _production():
        return []
    key = settings.SECRET_KEY
    if key != settings.PASSAGE_DEV_SECRET_KEY and key not in PUBLIC_SECRET_KEYS:
        return []
    return [
        checks.Error(
            "SECRET_KEY is a published key: anyone could sign sessions and compute the "
            "MAC of every family secret.",
            hint="Set SECRET_KEY to 50 or more random characters of this deployment's own.",
            id="passage.E011",
        )
    ]


def hosts_check(app_configs=None, **kwargs):
    if not _production() or "*" not in settings.ALLOWED_HOSTS:
        return []
    return [
        checks.Error(
            'ALLOWED_HOSTS contains "*": any Host header is accepted, so links built from '
            "it (password resets, enrolment links) can point anywhere.",
            hint="List the deployment's host names only.",
            id="passage.E012",
        )
    ]


def fault_delay_check(app_configs=None, **kwargs):
    if not _production() or not settings.PASSAGE_FAULT_DELAY_SECONDS:
        return []
    return [
        checks.Error(
            "PASSAGE_FAULT_DELAY_SECONDS is set: family requests would be held inside a "
            "locking transaction on purpose (fault injection is for the failure tests).",
            hint="Remove PASSAGE_FAULT_DELAY_SECONDS from the environment.",
            id="passage.E013",
        )
    ]


def cache_check(app_configs=None, **kwargs):
    if not _production():
        return []
    local = sorted(
        alias
        for alias, cache in settings.CACHES.items()
        if cache.get("BACKEND") in PROCESS_LOCAL_CACHES
    )
    if not local:
        return []
    return [
        checks.Error(
            f"The cache {', '.join(local)} is local to each process: rate limits on the "
            "family form and status page would count per process, not per visitor.",
            hint="Set REDIS_URL so that every process shares the production Redis.",
            id="passage.E014",
        )
    ]
