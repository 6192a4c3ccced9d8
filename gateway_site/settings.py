"""Tollgate settings, all from the environment (django-environ).

With no environment at all this is the embedded default: SQLite, an in-process cache and eager Celery
tasks, so a newcomer can `make run` with zero services. Production (DEBUG off) refuses to start without
SECRET_KEY and TOLLGATE_ENCRYPTION_KEY.
"""
import datetime as dt
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
# Fernet keys (comma-separated, newest first) that encrypt upstream secrets at rest.
TOLLGATE_ENCRYPTION_KEYS = env.list("TOLLGATE_ENCRYPTION_KEY", default=[])
if not DEBUG and not (SECRET_KEY and TOLLGATE_ENCRYPTION_KEYS):
    raise ImproperlyConfigured(
        "SECRET_KEY and TOLLGATE_ENCRYPTION_KEY must be set when DEBUG is off "
        "(`make run` writes both to .env; generate a key with "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)."
    )
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "dev-only-insecure-secret-key"
if DEBUG and not TOLLGATE_ENCRYPTION_KEYS:
    TOLLGATE_ENCRYPTION_KEYS = ["ZGV2LW9ubHktaW5zZWN1cmUtZmVybmV0LWtleS0wMDA="]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
# Served over HTTPS (TOLLGATE_HTTPS=1): the console redirects http to https, cookies are secure-only and HSTS
# is sent for a year, subdomains included, preload-ready; each can be set on its own too (the names are
# Django's). `DEBUG=0 TOLLGATE_HTTPS=1 manage.py check --deploy` is clean. Behind a proxy that terminates
# TLS, TOLLGATE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO trusts its X-Forwarded-Proto: https. The relay's
# paths are never redirected (an API client does not follow a redirected POST).
TOLLGATE_HTTPS = env.bool("TOLLGATE_HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=TOLLGATE_HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if TOLLGATE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=TOLLGATE_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=TOLLGATE_HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=TOLLGATE_HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=TOLLGATE_HTTPS)
if env("TOLLGATE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = (env("TOLLGATE_PROXY_SSL_HEADER"), "https")
PORT = env.int("PORT", default=8000)
TOLLGATE_CURRENCY = env("TOLLGATE_CURRENCY", default="USD")
if TOLLGATE_CURRENCY not in ("USD", "CNY"):
    raise ImproperlyConfigured("TOLLGATE_CURRENCY must be USD or CNY")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "accounts",
    "keys",
    "routing",
    "billing",
    "support",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the lockout page
]
# The relay's own paths skip the console's middleware (see gateway_site/asgi.py).
APPEND_SLASH = False

ROOT_URLCONF = "gateway_site.urls"
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
                "billing.context_processors.budget_alerts",
            ]
        },
    }
]
WSGI_APPLICATION = "gateway_site.wsgi.application"
ASGI_APPLICATION = "gateway_site.asgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)   # a kept connection is checked before reuse
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default writes from several threads of one process (journal flush, periodic tasks,
    # console): WAL lets readers run beside a writer, IMMEDIATE transactions queue writers on the busy
    # timeout instead of failing when a read lock cannot be upgraded.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BEAT_SCHEDULE = {
    "flush-usage-journal": {"task": "billing.tasks.flush_orphan_journals", "schedule": 30.0},
    "reconcile-usage": {"task": "billing.tasks.reconcile_usage", "schedule": 60.0},
    "sweep-stale-holds": {"task": "billing.tasks.sweep_stale_holds", "schedule": 60.0},
    "expire-credit-bundles": {"task": "billing.tasks.expire_credit_bundles", "schedule": 3600.0},
    "check-budget-alerts": {"task": "billing.tasks.check_budget_alerts", "schedule": 300.0},
    "probe-channels": {"task": "routing.tasks.probe_channels",
                       "schedule": env.float("TOLLGATE_PROBE_INTERVAL_SECONDS", default=60.0)},
}
# With no broker (the embedded default) nothing runs Celery beat: the gateway process runs the schedule above
# itself (gateway_site/periodic.py). Production (REDIS_URL set) keeps `make worker` + `make beat`.
TOLLGATE_EMBEDDED_PERIODIC = env.bool("TOLLGATE_EMBEDDED_PERIODIC", default=not REDIS_URL)
# For tests and demos only: every embedded interval multiplied by this (0.1: reconcile every 6 s).
TOLLGATE_PERIODIC_SCALE = env.float("TOLLGATE_PERIODIC_SCALE", default=1.0)
# Each embedded task first runs this soon after start-up (or after its interval, if shorter).
TOLLGATE_PERIODIC_FIRST_RUN_SECONDS = env.float("TOLLGATE_PERIODIC_FIRST_RUN_SECONDS", default=5.0)
# `ledger_audit` reports usage unbilled for longer than this; unset: derived from the schedule (two reconcile
# intervals plus one journal replay interval, see gateway_site.periodic.unbilled_window).
TOLLGATE_UNBILLED_WINDOW_SECONDS = env.float("TOLLGATE_UNBILLED_WINDOW_SECONDS", default=None)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
]
# Sign-in throttling (django-axes, accounts/login_throttle.py): AXES_FAILURE_LIMIT wrong passwords for one
# username from one address within AXES_COOLOFF_MINUTES lock that pair out for AXES_COOLOFF_MINUTES; a
# correct sign-in resets the count. The address is REMOTE_ADDR: behind a reverse proxy set
# AXES_IPWARE_META_PRECEDENCE_ORDER=HTTP_X_FORWARDED_FOR,REMOTE_ADDR and AXES_IPWARE_PROXY_COUNT (trusting a
# client's X-Forwarded-For otherwise would let it pick a new address per attempt).
AUTHENTICATION_BACKENDS = ["accounts.login_throttle.LoginThrottleBackend",
                           "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [part.split("+") if "+" in part else part
                           for part in env.list("AXES_LOCKOUT_PARAMETERS", default=["username+ip_address"])]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.login_throttle.locked_out"
AXES_IPWARE_META_PRECEDENCE_ORDER = env.list("AXES_IPWARE_META_PRECEDENCE_ORDER", default=["REMOTE_ADDR"])
AXES_IPWARE_PROXY_COUNT = env.int("AXES_IPWARE_PROXY_COUNT", default=None)
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/console/login/"

LANGUAGE_CODE = "en"
# The console speaks English and Simplified Chinese; each user's choice is kept (accounts.UserPreference).
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "templates" / "static"]

REST_FRAMEWORK = {
    # Personal access tokens (`Authorization: Bearer tgp_…`) first, so an anonymous call is told 401.
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.tokens.PersonalAccessTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "gateway_site.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.api_schema.AutoSchema",
}
# OpenAPI schema at /api/schema/, Swagger UI at /api/docs/ with its assets from drf-spectacular-sidecar
# (served from /static/: nothing is loaded from a CDN; the validator badge that would call out is off).
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollgate management API",
    "DESCRIPTION": "Team-scoped management API. Authenticate with a personal access token "
                   "(`Authorization: Bearer tgp_…`) or a console session. Errors: "
                   '`{"error": {"message", "type", "param", "code"}}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs pages are for signed-in users (a session or a personal access token) unless the
    # operator publishes them (TOLLGATE_PUBLIC_API_SCHEMA=1): a deployment's API surface is not advertised.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny" if env.bool("TOLLGATE_PUBLIC_API_SCHEMA", default=False)
                          else "rest_framework.permissions.IsAuthenticated"],
    "SCHEMA_PATH_PREFIX": r"/api/",
    "DEFAULT_GENERATOR_CLASS": "core.api_schema.SchemaGenerator",   # loads the apps' schema extensions
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "TicketStatusEnum": "support.models.Ticket.STATUSES",
        "TicketPriorityEnum": "support.models.Ticket.PRIORITIES",
        "TicketCategoryEnum": "support.models.Ticket.CATEGORIES",
        "KeyStatusEnum": "keys.models.ApiKey.STATUSES",
        "BudgetPeriodEnum": "keys.models.Limits.PERIODS",
    },
}

# --- Relay -------------------------------------------------------------------------------------
TOLLGATE_MAX_BODY_BYTES = env.int("TOLLGATE_MAX_BODY_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TOLLGATE_MAX_BODY_BYTES + 1
# A request body not fully received this long after the headers is answered 408 (a slow client holds no
# worker slot for ever; gateway_site/asgi.py).
TOLLGATE_BODY_TIMEOUT_SECONDS = env.float("TOLLGATE_BODY_TIMEOUT_SECONDS", default=30.0)
TOLLGATE_UPSTREAM_TIMEOUT = env.float("TOLLGATE_UPSTREAM_TIMEOUT", default=120.0)
TOLLGATE_UPSTREAM_CONNECT_TIMEOUT = env.float("TOLLGATE_UPSTREAM_CONNECT_TIMEOUT", default=10.0)
# Idle (keep-alive) upstream connections kept per host; one released past them is closed (routing/relay/upstream.py).
TOLLGATE_UPSTREAM_MAX_IDLE_PER_HOST = env.int("TOLLGATE_UPSTREAM_MAX_IDLE_PER_HOST", default=64)
# Usage records are appended to a local journal (durable through kill -9) and flushed to the DB in batches.
TOLLGATE_JOURNAL_DIR = Path(env("TOLLGATE_JOURNAL_DIR", default=str(BASE_DIR / "var" / "journal")))
TOLLGATE_JOURNAL_FLUSH_SECONDS = env.float("TOLLGATE_JOURNAL_FLUSH_SECONDS", default=0.5)
# How long a gateway process trusts its local copy of a key/catalog before asking the cache again.
TOLLGATE_LOCAL_TTL_SECONDS = env.float("TOLLGATE_LOCAL_TTL_SECONDS", default=0.5)
# Routing: at most this many upstream attempts (channels × models) and this long, before the first byte.
TOLLGATE_MAX_ATTEMPTS = env.int("TOLLGATE_MAX_ATTEMPTS", default=6)
TOLLGATE_ROUTE_DEADLINE_SECONDS = env.float("TOLLGATE_ROUTE_DEADLINE_SECONDS", default=180.0)
# A stream ends with a stream_deadline_exceeded error event after this long in all (a trickling upstream is
# not held open for ever; long agent generations fit: 64k tokens at 40 tokens/s is under 30 minutes).
TOLLGATE_STREAM_DEADLINE_SECONDS = env.float("TOLLGATE_STREAM_DEADLINE_SECONDS", default=1800.0)
# Calls served by a team's own channel (bring your own key) are charged this share of the catalog price, in
# parts per million (OpenRouter charges 5%: 50000). Default none: the team pays its provider directly.
TOLLGATE_BYOK_FEE_PPM = env.int("TOLLGATE_BYOK_FEE_PPM", default=0)
# A hold in Redis is a lease its process renews while the request runs: a killed process's holds and concurrency
# slots go back at the next sweep after this long, not after the 900 s sweep (billing/limits.py).
TOLLGATE_HOLD_LEASE_SECONDS = env.float("TOLLGATE_HOLD_LEASE_SECONDS", default=30.0)
# A stream whose upstream has not answered (or sent its first chunk) for this long gets an SSE comment
# `: TOLLGATE PROCESSING` every as long, so long thinking trips no client timeout; 0 turns them off.
TOLLGATE_STREAM_KEEPALIVE_SECONDS = env.float("TOLLGATE_STREAM_KEEPALIVE_SECONDS", default=10.0)
# `model: "auto"` sends prompts estimated above this many tokens to the team's route:long-review.
TOLLGATE_AUTO_LONG_PROMPT_TOKENS = env.int("TOLLGATE_AUTO_LONG_PROMPT_TOKENS", default=32_000)
# Worst-case output assumed for holds and context checks when a request sets no max_tokens.
TOLLGATE_DEFAULT_OUTPUT_ALLOWANCE = env.int("TOLLGATE_DEFAULT_OUTPUT_ALLOWANCE", default=1_024)
# A hold not settled after this long belongs to a dead process: the sweep task gives it back.
TOLLGATE_HOLD_SWEEP_SECONDS = env.int("TOLLGATE_HOLD_SWEEP_SECONDS", default=900)
# Channel health (routing/breaker.py): consecutive failures or an error rate within a window open a
# channel's breaker; cool-downs grow on repeated trips up to the maximum.
TOLLGATE_BREAKER_FAILURES = env.int("TOLLGATE_BREAKER_FAILURES", default=3)
TOLLGATE_BREAKER_ERROR_RATE = env.float("TOLLGATE_BREAKER_ERROR_RATE", default=0.5)
TOLLGATE_BREAKER_WINDOW_SECONDS = env.int("TOLLGATE_BREAKER_WINDOW_SECONDS", default=60)
TOLLGATE_BREAKER_MIN_REQUESTS = env.int("TOLLGATE_BREAKER_MIN_REQUESTS", default=10)
TOLLGATE_BREAKER_COOLDOWN_SECONDS = env.float("TOLLGATE_BREAKER_COOLDOWN_SECONDS", default=5.0)
TOLLGATE_BREAKER_MAX_COOLDOWN_SECONDS = env.float("TOLLGATE_BREAKER_MAX_COOLDOWN_SECONDS", default=300.0)
TOLLGATE_PROBE_TIMEOUT_SECONDS = env.float("TOLLGATE_PROBE_TIMEOUT_SECONDS", default=15.0)
# GET /metrics wants "Authorization: Bearer <token>" when set. With several workers set
# PROMETHEUS_MULTIPROC_DIR (an empty directory, emptied before the server starts).
TOLLGATE_METRICS_TOKEN = env("TOLLGATE_METRICS_TOKEN", default="")
TOLLGATE_PUBLIC_BASE_URL = env("TOLLGATE_PUBLIC_BASE_URL", default=f"http://127.0.0.1:{PORT}")

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="tollgate@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "core.redaction.RedactingFilter"},
                "client_error": {"()": "gateway_site.logfilters.ClientErrorWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["client_error", "redact"]}},
    # A refused request (403, 400) is logged as one line, without a traceback, by every handler.
    "loggers": {"django.request": {"filters": ["client_error"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="WARNING")},
}
# Serve /static/ from the ASGI process (no separate web server in the one-command setup).
TOLLGATE_SERVE_STATIC = env.bool("TOLLGATE_SERVE_STATIC", default=True)
