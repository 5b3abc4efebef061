"""Customs settings: one file, driven by the environment.

With no variables set this is the embedded local run (SQLite, a filesystem Celery transport,
console email). Production sets DEBUG=false and the variables the README lists; missing or
development values then stop startup instead of running insecurely.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from accounts.sso import providers_from_env
from portal.env import (
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_secret,
    env_secret_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("CUSTOMS_DATA_DIR", str(BASE_DIR / "var")))

# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)

# Development values: usable only while DEBUG is on. They are public (they are in this file).
DEV_SECRET_KEY = "dev-insecure-customs-secret-key-do-not-use-in-production-0123456789"
_DEV_FERNET_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"customs-dev-encryption-key").digest()).decode()
_DEV_TOKEN_HMAC_KEY = "dev-insecure-customs-token-hmac-key"

SECRET_KEY = env_secret("SECRET_KEY", DEV_SECRET_KEY)
CUSTOMS_ENCRYPTION_KEYS = env_secret_list("CUSTOMS_ENCRYPTION_KEYS", [_DEV_FERNET_KEY])
TOKEN_HMAC_KEY = env_secret("CUSTOMS_TOKEN_HMAC_KEY", _DEV_TOKEN_HMAC_KEY)

if not DEBUG:
    if SECRET_KEY.startswith("dev-insecure") or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "DEBUG is off: set SECRET_KEY (or SECRET_KEY_FILE) to 50+ random characters"
        )
    if _DEV_FERNET_KEY in CUSTOMS_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("DEBUG is off: set CUSTOMS_ENCRYPTION_KEYS to your own Fernet key(s)")
    if TOKEN_HMAC_KEY.startswith("dev-insecure") or len(TOKEN_HMAC_KEY) < 32:
        raise ImproperlyConfigured("DEBUG is off: set CUSTOMS_TOKEN_HMAC_KEY to 32+ random characters")

for _index, _key in enumerate(CUSTOMS_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key)
    except ValueError:
        # Name the position, never the value: this message ends up in logs.
        raise ImproperlyConfigured(
            f"CUSTOMS_ENCRYPTION_KEYS entry {_index} is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None

SITE_URL = env_str("CUSTOMS_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "allauth.usersessions",
    "portal",
    "accounts",
    "registries",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "portal.middleware.LoginRequiredMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------------------------


def _database(url: str) -> dict[str, Any]:
    config: dict[str, Any] = dict(
        dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["CONN_MAX_AGE"] = 0
        # IMMEDIATE: a writer takes the lock when its transaction starts, so the web process and the
        # embedded worker queue up instead of failing with "database is locked" half-way through.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASES = {"default": _database(env_secret("DATABASE_URL", f"sqlite:///{DATA_DIR / 'customs.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str("DATABASE_TEST_NAME", "") or None

# --- Authentication ---------------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 16}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SITE_URL.startswith("https://") else "http"
ACCOUNT_UNIQUE_EMAIL = False  # e-mail addresses are shown, never used to match people
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = providers_from_env()
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # an e-mail address alone never links a sign-in to an account
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_QUERY_EMAIL = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False  # starting a sign-in is a POST: no login CSRF through crafted links
SESSION_COOKIE_AGE = env_int("CUSTOMS_SESSION_HOURS", 12, minimum=1) * 3600

# Username of the local superuser created at first start, for when the identity provider is down.
BREAK_GLASS_USERNAME = env_str("CUSTOMS_BREAK_GLASS_USERNAME", "admin")
# Local accounts that may still sign in with a password once an identity provider is configured.
BREAK_GLASS_USERNAMES = env_list("CUSTOMS_BREAK_GLASS_USERNAMES", [BREAK_GLASS_USERNAME])

# Personal tokens: lifetime in days when none is asked for, and the longest allowed.
TOKEN_DEFAULT_DAYS = env_int("CUSTOMS_TOKEN_DEFAULT_DAYS", 90, minimum=1)
TOKEN_MAX_DAYS = env_int("CUSTOMS_TOKEN_MAX_DAYS", 365, minimum=1)
if TOKEN_DEFAULT_DAYS > TOKEN_MAX_DAYS:
    raise ImproperlyConfigured("CUSTOMS_TOKEN_DEFAULT_DAYS cannot exceed CUSTOMS_TOKEN_MAX_DAYS")
# A token's last use is written at most this often, so a busy CI token does not write on every call.
TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=1)

# Registry token server (/auth/token): how long a registry bearer token lives, and its `iss`.
# Clients treat anything under 60 s as 60 s and would re-ask every minute, so never issue less.
REGISTRY_TOKEN_LIFETIME_SECONDS = max(60, env_int("CUSTOMS_REGISTRY_TOKEN_LIFETIME_SECONDS", 300, minimum=1))
# How long a web process may remember a token, its owner and their rules between requests; any
# change to them empties that memory at once through PostgreSQL NOTIFY (registries/tokenserver/memory.py).
REGISTRY_TOKEN_CACHE_SECONDS = env_int("CUSTOMS_REGISTRY_TOKEN_CACHE_SECONDS", 10, minimum=0)
# Must equal the registry's auth.token.issuer.
REGISTRY_TOKEN_ISSUER = env_str("CUSTOMS_REGISTRY_TOKEN_ISSUER", "customs")

# --- Kubernetes admission webhook (registries/policy/admission.py) -----------------------------

# Bearer token the API server presents (from the kubeconfig its AdmissionConfiguration names).
# Unset: the webhook answers 503 to everyone rather than run unauthenticated.
ADMISSION_TOKEN = env_secret("CUSTOMS_ADMISSION_TOKEN")
if ADMISSION_TOKEN and len(ADMISSION_TOKEN) < 32:
    raise ImproperlyConfigured("CUSTOMS_ADMISSION_TOKEN must be 32+ random characters")
# enforce denies images built on unapproved or banned bases; audit lets them through with a warning.
ADMISSION_MODE = env_str("CUSTOMS_ADMISSION_MODE", "enforce")
if ADMISSION_MODE not in {"enforce", "audit"}:
    raise ImproperlyConfigured("CUSTOMS_ADMISSION_MODE must be enforce or audit")
# Images not in the inventory, or whose base is unknown: allow, warn (allow with a warning) or deny.
ADMISSION_UNKNOWN = env_str("CUSTOMS_ADMISSION_UNKNOWN", "warn")
if ADMISSION_UNKNOWN not in {"allow", "warn", "deny"}:
    raise ImproperlyConfigured("CUSTOMS_ADMISSION_UNKNOWN must be allow, warn or deny")

# --- Corporate cache: base images mirrored into every region (registries/mirror/) ---------------

MIRROR_INTERVAL_MINUTES = env_int("CUSTOMS_MIRROR_INTERVAL_MINUTES", 60, minimum=5)
MIRROR_STUCK_AFTER_MINUTES = env_int("CUSTOMS_MIRROR_STUCK_AFTER_MINUTES", 360, minimum=30)
# Who hears "arrived in region X" (HMAC-signed JSON); the URLs may carry secrets.
MIRROR_EVENT_WEBHOOKS = env_secret_list("CUSTOMS_MIRROR_EVENT_WEBHOOK_URLS", [])
MIRROR_EVENT_WEBHOOK_SECRET = env_secret("CUSTOMS_MIRROR_EVENT_WEBHOOK_SECRET")
if MIRROR_EVENT_WEBHOOKS and not MIRROR_EVENT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("CUSTOMS_MIRROR_EVENT_WEBHOOK_URLS needs CUSTOMS_MIRROR_EVENT_WEBHOOK_SECRET")

# --- Credential hygiene and findings (registries/hygiene.py, portal/notify.py) ------------------

# CIS: credentials unused this long are stale. Unknown last use counts from creation, and says so.
HYGIENE_STALE_DAYS = env_int("CUSTOMS_STALE_DAYS", 45, minimum=1)
# Days before expiry at which a credential is flagged and its owner told, once per stage.
_notice_days = env_list("CUSTOMS_EXPIRY_NOTICE_DAYS", ["14", "7", "1"])
HYGIENE_EXPIRY_NOTICE_DAYS = sorted({int(day) for day in _notice_days if day.isdigit()}, reverse=True)
if (
    len(HYGIENE_EXPIRY_NOTICE_DAYS) != len(set(_notice_days))
    or min(HYGIENE_EXPIRY_NOTICE_DAYS, default=0) < 1
):
    raise ImproperlyConfigured("CUSTOMS_EXPIRY_NOTICE_DAYS must list whole days of 1 or more, e.g. 14,7,1")
# Push or delete granted but only pulls seen in this many days: over-privileged.
HYGIENE_OVERPRIVILEGED_DAYS = env_int("CUSTOMS_OVERPRIVILEGED_DAYS", 90, minimum=1)
# A repository no one pulled in this many days and pushed to in that many is unused.
HYGIENE_UNUSED_PULL_DAYS = env_int("CUSTOMS_UNUSED_PULL_DAYS", 90, minimum=1)
HYGIENE_UNUSED_PUSH_DAYS = env_int("CUSTOMS_UNUSED_PUSH_DAYS", 180, minimum=1)
# Where digests of new findings go: e-mail addresses, and Slack / Microsoft Teams incoming webhooks
# (their URLs carry a secret, so they are read as secrets and never shown or logged).
NOTIFY_DIGEST_EMAILS = env_list("CUSTOMS_DIGEST_EMAILS", [])
NOTIFY_SLACK_WEBHOOKS = env_secret_list("CUSTOMS_SLACK_WEBHOOK_URLS", [])
NOTIFY_TEAMS_WEBHOOKS = env_secret_list("CUSTOMS_TEAMS_WEBHOOK_URLS", [])
# Findings below this severity are listed on the pages but not sent.
NOTIFY_MIN_SEVERITY = env_str("CUSTOMS_NOTIFY_MIN_SEVERITY", "medium")
if NOTIFY_MIN_SEVERITY not in {"info", "low", "medium", "high", "critical"}:
    raise ImproperlyConfigured("CUSTOMS_NOTIFY_MIN_SEVERITY must be info, low, medium, high or critical")
# Tell each credential's owner (by e-mail) before it expires, at each stage above.
NOTIFY_OWNERS_OF_EXPIRING = env_bool("CUSTOMS_NOTIFY_OWNERS_OF_EXPIRING", True)

# --- Posture checks (registries/posture.py) ----------------------------------------------------

# Repositories whose tags must not move (access-rule patterns, comma separated).
POSTURE_PRODUCTION_REPOSITORIES = env_list("CUSTOMS_POSTURE_PRODUCTION_REPOSITORIES", ["prod/**"])

# --- Offboarding (registries/offboarding.py) -------------------------------------------------

# What a departure reported by the directory does with robots and credentials the person created
# that automation still uses: "reassign" gives each to its group's owner (or to the steward below),
# "disable" stops them. An admin's offboarding always asks who takes them over.
OFFBOARDING_ROBOT_POLICY = env_str("CUSTOMS_OFFBOARDING_ROBOT_POLICY", "reassign")
if OFFBOARDING_ROBOT_POLICY not in {"reassign", "disable"}:
    raise ImproperlyConfigured("CUSTOMS_OFFBOARDING_ROBOT_POLICY must be reassign or disable")
# Username of who takes over what has no group owner when the policy is reassign; with none,
# such credentials are disabled.
OFFBOARDING_STEWARD = env_str("CUSTOMS_OFFBOARDING_STEWARD", "")
# A running offboarding is queued again this long after confirmation (its task's retries ran out).
OFFBOARDING_RESUME_AFTER = timedelta(minutes=30)

# --- Security (production) --------------------------------------------------------------------

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("CUSTOMS_TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that always sets (or strips) this header; otherwise clients could forge it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Bearer token for Prometheus scrapes of /metrics; reviewers and admins may also read it signed in.
METRICS_TOKEN = env_secret("CUSTOMS_METRICS_TOKEN")

# --- Internationalisation and static files ----------------------------------------------------

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Email --------------------------------------------------------------------------------------

EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 30
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env_str("DEFAULT_FROM_EMAIL", "customs@localhost")

# --- Background jobs --------------------------------------------------------------------------

_BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env_secret("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # The embedded transport: a folder both the web process and the worker can reach; no Redis needed.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR),
        "data_folder_out": str(_BROKER_DIR),
        "control_folder": str(DATA_DIR / "broker-control"),
    }
CELERY_RESULT_BACKEND = env_secret("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A sync holding its registry longer than this is taken to have died with its worker.
SYNC_STUCK_AFTER = timedelta(minutes=env_int("CUSTOMS_SYNC_STUCK_AFTER_MINUTES", 120, minimum=5))
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = TIME_ZONE

# --- Outbound HTTP ----------------------------------------------------------------------------

OUTBOUND_TIMEOUT = env_int("CUSTOMS_OUTBOUND_TIMEOUT", 30, minimum=1)
_PROXY = env_secret("CUSTOMS_OUTBOUND_PROXY")
OUTBOUND_PROXIES = {"http": _PROXY, "https": _PROXY} if _PROXY else {}
OUTBOUND_CA_BUNDLE = env_str("CUSTOMS_OUTBOUND_CA_BUNDLE") or None
# Cloud instance-metadata services hand out the host's own cloud credentials to anyone who can
# make it send a request; registry endpoints and webhook URLs are typed by people, so no outbound
# call may reach them. Private ranges stay reachable: self-hosted registries live there.
OUTBOUND_DENY_NETWORKS = env_networks(
    "CUSTOMS_OUTBOUND_DENY_NETWORKS",
    ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"],
)

# --- API ----------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Denied by default: a view that does not declare which roles may read and write answers 403.
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Customs API",
    "DESCRIPTION": "Registry governance: inventory, access, credentials, findings and audit.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two models have a "kind" field; name their enums instead of letting a hash tell them apart.
    "ENUM_NAME_OVERRIDES": {
        "RegistryKindEnum": "registries.connectors.KIND_CHOICES",
        "PersonalTokenKindEnum": "accounts.models.PersonalToken.Kind",
        # A credential's owner_kind and a grant's principal_kind are the same choices: one enum.
        "PrincipalKindEnum": "registries.models.Grant.PRINCIPAL_KINDS",
        "CredentialKindEnum": "registries.models.Credential.KINDS",
    },
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# --- Logging ----------------------------------------------------------------------------------

LOG_FORMAT = env_str("CUSTOMS_LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"CUSTOMS_LOG_FORMAT={LOG_FORMAT!r} must be 'text' or 'json'")
LOG_LEVEL = env_str("CUSTOMS_LOG_LEVEL", "INFO").upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "portal.logs.RequestIdFilter"},
        "redact": {"()": "portal.logs.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
        # At DEBUG urllib3 logs each request line, and a chat webhook's path is its secret.
        "urllib3": {"level": "INFO"},
    },
}
