"""Production settings: refuse to start with a default secret key or with DEBUG on."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from glasshouse.config.settings.base import *  # noqa: F403
from glasshouse.config.settings.base import BASE_DIR
from glasshouse.core.env import envbool, envint, envlist, envsecret, envstr

if envbool("GLASSHOUSE_DEBUG", False):
    raise ImproperlyConfigured("GLASSHOUSE_DEBUG must not be true in production settings")
DEBUG = False

_secret = envsecret("GLASSHOUSE_SECRET_KEY")
if not _secret:
    raise ImproperlyConfigured("GLASSHOUSE_SECRET_KEY (or GLASSHOUSE_SECRET_KEY_FILE) is required in production")
if "insecure" in _secret or "development" in _secret or len(_secret) < 50 or len(set(_secret)) < 5:
    raise ImproperlyConfigured(
        "GLASSHOUSE_SECRET_KEY looks like a default or weak key; generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(64))'`"
    )
SECRET_KEY = _secret

SECURE_SSL_REDIRECT = envbool("GLASSHOUSE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = envint("GLASSHOUSE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("GLASSHOUSE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = envbool("GLASSHOUSE_HSTS_PRELOAD", True)
CSRF_TRUSTED_ORIGINS = envlist("GLASSHOUSE_CSRF_TRUSTED_ORIGINS", [])
STATIC_ROOT = Path(envstr("GLASSHOUSE_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
