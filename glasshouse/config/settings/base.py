"""Settings shared by every way of running Glasshouse. All values come from the environment.

`development` (the demo and the tests) and `production` import this and change only what
differs between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from glasshouse.core.env import envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parents[3]
VAR_DIR = Path(envstr("GLASSHOUSE_VAR_DIR", str(BASE_DIR / "var")))

ALLOWED_HOSTS = envlist("GLASSHOUSE_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "ninja",
    "glasshouse.core",
    "glasshouse.accounts",
    "glasshouse.audit",
    "glasshouse.org",
    "glasshouse.activity",
    "glasshouse.devices",
    "glasshouse.ingest",
    "glasshouse.controls",
    "glasshouse.reports",
    "glasshouse.alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "glasshouse.core.middleware.RefuseNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "glasshouse.config.urls"
WSGI_APPLICATION = "glasshouse.config.wsgi.application"

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "glasshouse" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "glasshouse.core.context_processors.navigation",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    url = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'glasshouse.sqlite3'}")
    config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=envint("DB_CONN_MAX_AGE", 0)))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets the web UI read while the worker writes; IMMEDIATE takes the write lock at
        # the start of every atomic block so two writers queue instead of failing mid-way;
        # synchronous=FULL because an acknowledged agent batch must survive a power cut too.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
        }
        # A file, not :memory:, so background threads (CSV import) see the same test database.
        config["TEST"] = {"NAME": str(VAR_DIR / "test-glasshouse.sqlite3")}
    else:
        config.setdefault("TEST", {})["NAME"] = envstr("GLASSHOUSE_TEST_DB_NAME", "test_glasshouse")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Failed logins allowed per e-mail address and per client address inside the window.
LOGIN_FAILURE_LIMIT = envint("GLASSHOUSE_LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW_SECONDS = envint("GLASSHOUSE_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)
# How long a stated purpose covers further looks at the same person's monitoring data.
MONITORING_PURPOSE_TTL_SECONDS = envint("GLASSHOUSE_MONITORING_PURPOSE_TTL_SECONDS", 30 * 60)
# The live view shows a team's active/idle split only when at least this many of its people are
# online, so that a count never stands for one person (docs/architecture.md, "Live view").
LIVE_MIN_GROUP = envint("GLASSHOUSE_LIVE_MIN_GROUP", 3)

# Whole UTC days of raw agent spans kept before today (0 = keep forever). Rollups are kept.
SPAN_RETENTION_DAYS = envint("GLASSHOUSE_SPAN_RETENTION_DAYS", 180)

SESSION_COOKIE_AGE = envint("GLASSHOUSE_SESSION_SECONDS", 8 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

OTP_TOTP_ISSUER = "Glasshouse"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

DATA_UPLOAD_MAX_MEMORY_SIZE = envint("GLASSHOUSE_MAX_UPLOAD_BYTES", 20 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

EMAIL_BACKEND = envstr("GLASSHOUSE_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("GLASSHOUSE_EMAIL_HOST", "localhost")
EMAIL_PORT = envint("GLASSHOUSE_EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = envstr("GLASSHOUSE_FROM_EMAIL", "glasshouse@localhost")

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("GLASSHOUSE_LOG_LEVEL", "INFO")},
}
