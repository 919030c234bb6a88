"""Settings for the demo and the test suite: DEBUG on, a fixed local secret key.

Never used in production: `production.py` refuses both.
"""

from __future__ import annotations

from glasshouse.config.settings.base import *  # noqa: F403
from glasshouse.core.env import envbool, envsecret

DEBUG = envbool("GLASSHOUSE_DEBUG", True)
SECRET_KEY = envsecret("GLASSHOUSE_SECRET_KEY") or "glasshouse-development-only-insecure-key"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# Serve static files straight from the apps: no collectstatic step for the demo or the tests.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
