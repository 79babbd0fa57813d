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


def _no_broker() -> bool:
    return not settings.CELERY_BROKER_URL or settings.CELERY_TASK_ALWAYS_EAGER


def _public_secret_key() -> bool:
    key = settings.SECRET_KEY
    return key == settings.PASSAGE_DEV_SECRET_KEY or key in PUBLIC_SECRET_KEYS


def _plain_http_site() -> bool:
    return not settings.PASSAGE_BASE_URL.startswith("https://")


def _local_caches() -> list[str]:
    return sorted(
        alias
        for alias, cache in settings.CACHES.items()
        if cache.get("BACKEND") in PROCESS_LOCAL_CACHES
    )


# (id, what is unsafe, the error, what to do), each error shown when its test is true.
UNSAFE = [
    (
        "passage.E010",
        _no_broker,
        "No task broker is configured: screening, matching and e-mails would run "
        "inside the request, where their time and queries show whether a family's "
        "request matched anyone.",
        "Set CELERY_BROKER_URL to the production Redis (and run a worker).",
    ),
    (
        "passage.E011",
        _public_secret_key,
        "SECRET_KEY is a published key: anyone could sign sessions and compute the "
        "MAC of every family secret.",
        "Set SECRET_KEY to 50 or more random characters of this deployment's own.",
    ),
    (
        "passage.E012",
        lambda: "*" in settings.ALLOWED_HOSTS,
        'ALLOWED_HOSTS contains "*": any Host header is accepted, so links built from '
        "it (password resets, enrolment links) can point anywhere.",
        "List the deployment's host names only.",
    ),
    (
        "passage.E013",
        lambda: bool(settings.PASSAGE_FAULT_DELAY_SECONDS),
        "PASSAGE_FAULT_DELAY_SECONDS is set: family requests would be held inside a "
        "locking transaction on purpose (fault injection is for the failure tests).",
        "Remove PASSAGE_FAULT_DELAY_SECONDS from the environment.",
    ),
    (
        "passage.E014",
        lambda: bool(_local_caches()),
        "A cache is local to each process: rate limits on the family form and status "
        "page would count per process, not per visitor.",
        "Set REDIS_URL so that every process shares the production Redis.",
    ),
    (
        "passage.E015",
        _plain_http_site,
        "PASSAGE_BASE_URL is not an https address: password-reset and enrolment links "
        "would travel in clear, and passkeys (bound to the site's origin) would not work.",
        "Set PASSAGE_BASE_URL to the site's https address, e.g. https://passage.example.org.",
    ),
]


def register() -> None:
    checks.register(unsafe_settings_check, checks.Tags.security, deploy=True)


def unsafe_settings_check(app_configs=None, **kwargs):
    """One Error per unsafe setting, in production only (DEBUG off)."""
    if settings.DEBUG:
        return []
    return [
        checks.Error(message, hint=hint, id=code)
        for code, unsafe, message, hint in UNSAFE
        if unsafe()
    ]
