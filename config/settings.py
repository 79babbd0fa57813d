"""Passage settings, driven by environment variables and runnable with no env file.

Production-only values (SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, the keyring) come
from the environment; with DEBUG off the app refuses to start without them.
"""

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PASSAGE_VAR_DIR", BASE_DIR / "var"))


def env(name, default=None):
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_bool(name, default=False):
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name, default):
    return int(env(name, default))


def env_list(name, default=()):
    value = env(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# The test suite runs the development profile (pytest-django still turns DEBUG off);
# the production profile is tested by running manage.py in a subprocess.
TESTING = "pytest" in sys.modules
DEV = DEBUG or TESTING

# Published with the code: `check --deploy` refuses it in production (casework/checks.py).
PASSAGE_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-" + "x" * 16
SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if not DEV:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production needs a long random SECRET_KEY in the "
            "environment (for development, set DEBUG=1 to use the dev default)."
        )
    SECRET_KEY = PASSAGE_DEV_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEV else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "casework.apps.PassageAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp_webauthn",
    "guardian",
    "axes",
    "csp",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_htmx",
    "django_include_bootstrap",
    "casework",
    "contacts",
    "families",
    # Always installed, production too: it has no models, migrations or URLs, only
    # management commands, and seed_demo and totp_code refuse to run without DEBUG.
    "tooling",
]
if TESTING:
    INSTALLED_APPS += ["tests.vaulttest"]  # sample models for the vault's own tests

MIDDLEWARE = [
    "casework.audit.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "casework.security.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "casework.security.SessionLifetimeMiddleware",
    "casework.security.StaffOnlyMiddleware",
    "casework.security.VaultErrorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as its documentation asks: it answers locked-out logins.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Our templates first: django-include-bootstrap ships a templates/base.html
        # that must never shadow ours.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "casework.security.csp_nonce",
            ],
        },
    },
]

# --- Data stores -----------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'passage.sqlite3'}"),
        conn_health_checks=True,
    )
}
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# Seconds a process keeps its database connection (0: one per request). On PostgreSQL
# a gunicorn worker or a Celery pool process keeps one for a minute (a new connection
# costs a request about 15%); CONN_HEALTH_CHECKS tests a kept one before a request or a
# task uses it (a restarted server costs nothing), and Celery closes it between tasks
# once it is older than this. SQLite keeps 0: opening a file is cheap, and `make run`'s
# runserver starts a thread per request, whose kept connection would only hold the file.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0 if _SQLITE else 60)
if _SQLITE:
    # WAL lets the web process and the worker read while the other writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
# Seconds to connect to, and to wait for an answer from, the cache (the broker's are under
# "Background work"). A Redis that is down or silent (TCP accepted, nothing answered) costs
# a request about this long at most, never a hang until gunicorn's timeout (SECURITY.md 39).
PASSAGE_REDIS_TIMEOUT = float(env("PASSAGE_REDIS_TIMEOUT", 1))
# After a cache or broker failure, a process stops asking it for this many seconds (the
# rate limits count locally meanwhile; the sweeper sends what was not enqueued).
PASSAGE_REDIS_PAUSE_SECONDS = float(env("PASSAGE_REDIS_PAUSE_SECONDS", 5))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "passage",
            "OPTIONS": {
                "socket_connect_timeout": PASSAGE_REDIS_TIMEOUT,
                "socket_timeout": PASSAGE_REDIS_TIMEOUT,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Accounts and sessions -----------------------------------------------------------
AUTH_USER_MODEL = "casework.User"
AUTHENTICATION_BACKENDS = [
    # Axes first so a locked-out login never reaches the password check.
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend (ours loads the roles with the user) before guardian's, as guardian's
    # documentation requires.
    "casework.staff.StaffBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
PASSWORD_RESET_TIMEOUT = 60 * 60  # one hour, not Django's three days

SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_ABSOLUTE_SECONDS = env_int("SESSION_ABSOLUTE_SECONDS", 8 * 60 * 60)
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 30 * 60)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

OTP_TOTP_ISSUER = "Passage"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
BACKUP_CODE_COUNT = 10

AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# Lock a username only together with the address it is tried from (locking on the
# username alone would let anyone lock staff out), and an address that tries many.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "casework.security.client_ip"
# The lockout table keeps a keyed hash of what was typed as a username, never the text:
# people type passwords into that box.
AXES_USERNAME_CALLABLE = "casework.security.lockout_username"
AXES_SENSITIVE_PARAMETERS = ["username", "password", "otp_token"]
PASSAGE_TRUSTED_PROXIES = env_int("PASSAGE_TRUSTED_PROXIES", 0)

GUARDIAN_RAISE_403 = False
GUARDIAN_RENDER_403 = False
ANONYMOUS_USER_NAME = None  # no guardian anonymous user: anonymous has no object rights

# --- Security headers -----------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

if not DEV:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Load balancers probe over plain http on the private side.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 63072000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # __Host- cookies: Secure, host-only, path=/ (browsers enforce all three).
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    LANGUAGE_COOKIE_NAME = "__Host-language"
    LANGUAGE_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SAMESITE = "Lax"
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")

# --- Languages ------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fa", _("Persian"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_TZ = True

# --- Static and media -----------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEV
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEV
# Encrypted attachments live here; never served as static files, and no MEDIA_URL.
MEDIA_ROOT = Path(env("MEDIA_ROOT", VAR_DIR / "media"))
# Where encrypted attachments and scans are stored (casework/vault/files.py): by default
# MEDIA_ROOT/vault/ on this machine; with several web hosts, a shared folder (MEDIA_ROOT
# on a shared filesystem) or an S3-compatible store, e.g. with django-storages installed:
# PASSAGE_ATTACHMENTS_BACKEND=storages.backends.s3.S3Storage and
# PASSAGE_ATTACHMENTS_OPTIONS='{"bucket_name": "...", "endpoint_url": "..."}'.
STORAGES["attachments"] = {
    "BACKEND": env("PASSAGE_ATTACHMENTS_BACKEND", "casework.vault.files.VaultFileStorage"),
    "OPTIONS": json.loads(env("PASSAGE_ATTACHMENTS_OPTIONS", "{}")),
}
PASSAGE_MAX_ATTACHMENT_BYTES = env_int("PASSAGE_MAX_ATTACHMENT_BYTES", 20 * 1024 * 1024)

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- The vault ------------------------------------------------------------------------
PASSAGE_KEYRING = env("PASSAGE_KEYRING", str(VAR_DIR / "keyring.json") if DEV else None)
# `manage.py backup`: the age public keys (age1...) its archives are encrypted to. Their
# private keys stay offline, never on this server: an archive holds the keyring too.
PASSAGE_BACKUP_RECIPIENTS = env_list("PASSAGE_BACKUP_RECIPIENTS")
PASSAGE_BACKUP_DIR = Path(env("PASSAGE_BACKUP_DIR", VAR_DIR / "backups"))
# The access log's signed checkpoints, appended to a file the database cannot rewrite
# (casework/transparency.py); best on storage of its own, append-only (chattr +a) and
# copied off the server. None in tests, which give one per test.
PASSAGE_CHECKPOINT_DIR = (
    None if TESTING else Path(env("PASSAGE_CHECKPOINT_DIR", VAR_DIR / "checkpoints"))
)
# The beat job signs a checkpoint at most this often (the tree is integrated every 5 s,
# and on demand by verify_audit and the export): 1,440 notes a day at most. Events newer
# than the newest checkpoint are what a cut tail could remove unseen.
PASSAGE_CHECKPOINT_SECONDS = env_int("PASSAGE_CHECKPOINT_SECONDS", 60)
# Auditors get the newest checkpoint's size and root hash by e-mail, once a day.
PASSAGE_CHECKPOINT_EMAIL = env_bool("PASSAGE_CHECKPOINT_EMAIL", True)

# --- Casework ---------------------------------------------------------------------------
# Closed cases are crypto-shredded this many days after closing.
PASSAGE_CASE_RETENTION_DAYS = env_int("PASSAGE_CASE_RETENTION_DAYS", 730)
PASSAGE_CASES_PER_PAGE = 50
# The unusual-access report: how many cases one person opens in an hour, and "night".
PASSAGE_UNUSUAL_CASES_PER_HOUR = env_int("PASSAGE_UNUSUAL_CASES_PER_HOUR", 20)
PASSAGE_NIGHT_HOURS = (22, 6)
# Coordinators hear of unassigned tasks older than this.
PASSAGE_UNASSIGNED_ALERT_DAYS = env_int("PASSAGE_UNASSIGNED_ALERT_DAYS", 3)
PASSAGE_TASKS_PER_PAGE = 100

# --- Family contact requests -----------------------------------------------------------------
# Submissions per hour from one IPv4 address or one IPv6 /64, before they are quietly dropped.
PASSAGE_CONTACT_RATE_PER_HOUR = env_int("PASSAGE_CONTACT_RATE_PER_HOUR", 5)
PASSAGE_STATUS_RATE_PER_HOUR = env_int("PASSAGE_STATUS_RATE_PER_HOUR", 30)
PASSAGE_FORM_MIN_SECONDS = env_int("PASSAGE_FORM_MIN_SECONDS", 3)
# The same person sought by several requesters within this many days is flagged.
PASSAGE_HUNTING_WINDOW_DAYS = env_int("PASSAGE_HUNTING_WINDOW_DAYS", 90)
PASSAGE_COOLING_OFF_HOURS = env_int("PASSAGE_COOLING_OFF_HOURS", 72)
PASSAGE_FAMILY_RETENTION_DAYS = env_int("PASSAGE_FAMILY_RETENTION_DAYS", 365)
PASSAGE_MATCH_THRESHOLD = 0.5
# What the family sees follows the clock, never the match: "received" for this many
# hours after writing, then "in progress"; "closed" no earlier than this many days.
PASSAGE_FAMILY_RECEIVED_HOURS = env_int("PASSAGE_FAMILY_RECEIVED_HOURS", 72)
PASSAGE_FAMILY_CLOSED_AFTER_DAYS = env_int("PASSAGE_FAMILY_CLOSED_AFTER_DAYS", 90)
# Bounds on the work one request can cause (names, parts of a name, rows looked at).
PASSAGE_FAMILY_MAX_NAMES = env_int("PASSAGE_FAMILY_MAX_NAMES", 10)
PASSAGE_FAMILY_MAX_NAME_TOKENS = env_int("PASSAGE_FAMILY_MAX_NAME_TOKENS", 8)
PASSAGE_MATCH_MAX_ROWS_PER_NAME = env_int("PASSAGE_MATCH_MAX_ROWS_PER_NAME", 100)
PASSAGE_FAMILY_SCREEN_MAX_ROWS = env_int("PASSAGE_FAMILY_SCREEN_MAX_ROWS", 100)
PASSAGE_FOLLOW_UPS_PER_REQUEST_PER_DAY = env_int("PASSAGE_FOLLOW_UPS_PER_REQUEST_PER_DAY", 5)
PASSAGE_FOLLOW_UP_RATE_PER_HOUR = env_int("PASSAGE_FOLLOW_UP_RATE_PER_HOUR", 10)
# Bodies larger than this get the friendly "too long" page (fields have their own limits).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Staff accounts --------------------------------------------------------------------------
# One administrator may not both reset the password and the second factor (or change the
# e-mail) of one account within this many days: that needs a second administrator.
PASSAGE_RESET_PAIR_DAYS = env_int("PASSAGE_RESET_PAIR_DAYS", 7)
PASSAGE_ENROLMENT_LINK_MINUTES = env_int("PASSAGE_ENROLMENT_LINK_MINUTES", 60)
# Roles whose holders must use a passkey or security key as their second factor (an
# authenticator app's code can be phished in real time; a passkey answers only for our
# own address). Production: coordinators and administrators. Development: none, so the
# demo logins work with the printed TOTP secrets (browsers refuse passkeys on an IP
# address such as 127.0.0.1: try them on http://localhost:8000).
PASSAGE_PASSKEY_ROLES = env_list(
    "PASSAGE_PASSKEY_ROLES", [] if DEV else ["coordinator", "administrator"]
)

# --- E-mail ---------------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))  # the file backend's folder
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Passage <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
PASSAGE_BASE_URL = env("PASSAGE_BASE_URL", "http://127.0.0.1:8000")

# --- Passkeys (django-otp-webauthn; casework/passkeys.py) ---------------------------------
# A second factor only, never a login without the password (the lockout stays in front).
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_RP_NAME = "Passage"
# The relying party: the site's host name (passkeys are bound to it for good; changing
# it means every staff member adds their passkeys again).
OTP_WEBAUTHN_RP_ID = env("PASSAGE_WEBAUTHN_RP_ID", urlsplit(PASSAGE_BASE_URL).hostname)
# The one origin a passkey may answer for. In development the page's own origin is
# accepted too (casework/passkeys.py); production insists on https (deploy check E015).
OTP_WEBAUTHN_ALLOWED_ORIGINS = ["{0.scheme}://{0.netloc}".format(urlsplit(PASSAGE_BASE_URL))]
OTP_WEBAUTHN_HELPER_CLASS = "casework.passkeys.PasskeyHelper"
OTP_WEBAUTHN_EXCEPTION_LOGGER_NAME = "passage.passkeys"
SILENCED_SYSTEM_CHECKS = [
    # The library refuses an http origin other than localhost even in development,
    # where `make run` serves http://127.0.0.1:8000; production has E015 instead.
    "otp_webauthn.E031",
]

# --- Background work -------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
# No broker: tasks run eagerly (the test default, whatever the environment says).
CELERY_TASK_ALWAYS_EAGER = TESTING or not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
# Seconds to connect to the broker and to wait for its answer. Publishing is bounded by
# them: one try and one retry (casework/background.py), never a wait on a silent broker.
PASSAGE_BROKER_TIMEOUT = float(env("PASSAGE_BROKER_TIMEOUT", 1))
CELERY_BROKER_CONNECTION_TIMEOUT = PASSAGE_BROKER_TIMEOUT
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# A request waits at most this long for its after-commit enqueue; a slower broker finishes
# in the background and a failed one is caught up by the sweeper (casework/background.py).
PASSAGE_ENQUEUE_WAIT_SECONDS = float(env("PASSAGE_ENQUEUE_WAIT_SECONDS", 0.5))
# The outbox (casework/outbox.py): first retry of a failed e-mail after this many seconds,
# doubling, at most an hour apart; given up this many hours after the event.
PASSAGE_OUTBOX_RETRY_SECONDS = float(env("PASSAGE_OUTBOX_RETRY_SECONDS", 30))
PASSAGE_OUTBOX_GIVE_UP_HOURS = env_int("PASSAGE_OUTBOX_GIVE_UP_HOURS", 48)
# Only one beat publishes (the others stand by); it holds this lock (casework/background.py).
CELERY_BEAT_SCHEDULER = "casework.background:OneBeatScheduler"
# Work whose background step has not run after this many minutes is enqueued again.
PASSAGE_SWEEP_MINUTES = env_int("PASSAGE_SWEEP_MINUTES", 10)
# Fault injection for the failure tests only: seconds a family request's processing
# sleeps inside its transaction (0 in every real deployment).
PASSAGE_FAULT_DELAY_SECONDS = float(env("PASSAGE_FAULT_DELAY_SECONDS", 0))
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if CELERY_BROKER_URL and CELERY_BROKER_URL.startswith("filesystem://"):
    # Kombu's filesystem transport: `make run` gets a real worker and beat with no
    # server to install. In and out share one folder (that is how it queues).
    _queue_dir = VAR_DIR / "celery" / "queue"
    _control_dir = VAR_DIR / "celery" / "control"
    for _folder in (_queue_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
    }
elif CELERY_BROKER_URL:
    # Longer than any task and any countdown, so Redis never redelivers a live task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Without these a silent broker (TCP accepted, nothing answered) holds a publish
        # for ever. A worker's BRPOP waits in its event loop, not on this timeout.
        "socket_connect_timeout": PASSAGE_BROKER_TIMEOUT,
        "socket_timeout": PASSAGE_BROKER_TIMEOUT,
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 4 * 60 * 60),
        # How often a worker looks for messages a dead worker left unacknowledged.
        "unacked_restore_interval": env_int("CELERY_RESTORE_INTERVAL", 10),
        "unacked_restore_throttle": env_int("CELERY_RESTORE_THROTTLE", 10),
    }

# --- Logging ------------------------------------------------------------------------------
# One JSON object a line with the request id; request lines carry method, status and view
# name only. Personal data never reaches a log (casework/logs.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "casework.logs.RequestIdFilter"},
        "redact": {"()": "casework.logs.RedactRequestFilter"},
    },
    "formatters": {"json": {"()": "casework.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        # Axes logs the typed username, which is sometimes a mistyped password.
        "axes": {"level": "ERROR"},
        # Celery's own request lines stay; task arguments are ids by design.
        "celery": {"level": "INFO"},
    },
}
