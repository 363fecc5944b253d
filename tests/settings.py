"""Settings for the test suite. DATABASE_URL picks the database (default: SQLite in memory)."""

import os
import tempfile

import environ

env = environ.Env()

SECRET_KEY = "tests-only-secret-key-not-for-production-0123456789"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

DATABASES = {"default": env.db("DATABASE_URL", default="sqlite://:memory:")}
_engine = DATABASES["default"]["ENGINE"]
if "sqlite" in _engine:
    # A file, not memory, so that commands run in a subprocess see the test database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"bounce_tracker_test_{os.getpid()}.sqlite3")
    }
if "mysql" in _engine:
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
if "sqlite" not in _engine and os.environ.get("TEST_DATABASE_NAME"):
    # Lets two test runs share one server (e.g. two checkouts) without colliding.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["TEST_DATABASE_NAME"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bounce_tracker",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"
BOUNCE_TRACKER = {
    "BOUNCE_DOMAIN": "bounces.example.com",
    "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
}

# django-anymail's webhooks (tests/test_esp_events.py): basic auth for every ESP, and
# the key Mailgun signs its webhooks with. "anymail" needn't be in INSTALLED_APPS for
# its webhook views and signals.
ANYMAIL = {
    "WEBHOOK_SECRET": "esp-webhook:5ecret-for-tests",
    "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key-for-tests",
}
