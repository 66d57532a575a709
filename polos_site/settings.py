"""Settings: one module driven by environment variables, with embedded defaults when unset.

Unset ``DATABASE_URL`` and ``REDIS_URL`` give the embedded mode (SQLite, in-process broker,
in-memory channel layer); set, they give PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import (
    ConfigError,
    base_url,
    broker_url,
    channel_layers,
    csv_list,
    database_config,
    env_bool,
    env_float,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    DEBUG = env_bool(os.environ, "DJANGO_DEBUG", default=False)
    _database = database_config(os.environ.get("DATABASE_URL"), BASE_DIR)
    REDIS_URL = redis_url(os.environ.get("REDIS_URL"))
    POLOS_BASE_URL = base_url(os.environ.get("POLOS_BASE_URL"))
    POLOS_SWEEP_INTERVAL = env_float(os.environ, "POLOS_SWEEP_INTERVAL", 1.0)
    POLOS_REQUEUE_AFTER = env_float(os.environ, "POLOS_REQUEUE_AFTER", 30.0)
    # Deadlines nearer than this get their own eta message at suspend; farther ones are armed
    # by the beat sweep as they come near (workflows/timers.py).
    POLOS_TIMER_HORIZON = env_float(os.environ, "POLOS_TIMER_HORIZON", 300.0)
    POLOS_MAX_BODY_BYTES = int(env_float(os.environ, "POLOS_MAX_BODY_BYTES", 1024 * 1024))
    _secret = os.environ.get("DJANGO_SECRET_KEY", "")
    if not _secret:
        # Test runs and type checks get the dev key too, so they need no secret of their own.
        if not DEBUG and not {"pytest", "mypy"} & sys.modules.keys():
            raise ConfigError("DJANGO_SECRET_KEY", "required when DJANGO_DEBUG is off")
        _secret = "django-insecure-dev-only-key-do-not-use-in-production"  # noqa: S105
except ConfigError as _exc:
    # One line naming the variable, not a traceback: SystemExit prints its message and exits 1.
    raise SystemExit(f"polos: configuration error: {_exc}") from None

SECRET_KEY = _secret
EMBEDDED = REDIS_URL is None
ALLOWED_HOSTS = csv_list(os.environ.get("DJANGO_ALLOWED_HOSTS")) or [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "testserver",
]
CSRF_TRUSTED_ORIGINS = [POLOS_BASE_URL]
POLOS_WORKFLOW_MODULES = csv_list(os.environ.get("POLOS_WORKFLOW_MODULES"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_celery_beat",
    "workflows",
    "approvals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "polos_site.urls"
ASGI_APPLICATION = "polos_site.asgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": _database}
if _database["ENGINE"].endswith("sqlite3") and _database["NAME"] != ":memory:":
    # The embedded database (and its test copy) live under var/, which a fresh clone lacks.
    Path(_database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/approvals/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

DATA_UPLOAD_MAX_MEMORY_SIZE = POLOS_MAX_BODY_BYTES

EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if EMBEDDED
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(env_float(os.environ, "DJANGO_EMAIL_PORT", 25))
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "polos@localhost")

CHANNEL_LAYERS = channel_layers(REDIS_URL)

# Celery: the database is the source of truth; the broker only nudges workers.
CELERY_BROKER_URL = broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task unless
# this is set (a new PostgreSQL connection per task: about 5-10 ms). With it, connections live
# by CONN_MAX_AGE and CONN_HEALTH_CHECKS, recycled per task as Django does per request
# (workflows/tasks.py); the fixup's own forced close then comes once per million tasks.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"polling_interval": 0.005} if EMBEDDED else {"visibility_timeout": 3600}
)
DJANGO_CELERY_BEAT_TZ_AWARE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("POLOS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
    },
}
