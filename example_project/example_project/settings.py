"""Settings of the django-bounce-tracker example site.

Everything that differs between machines comes from environment variables, read
with django-environ:

``DATABASE_URL``
    Default: the SQLite file ``demo.sqlite3`` next to ``manage.py``.
    E.g. ``mysql://user:password@127.0.0.1:3306/bounces`` or
    ``postgres://user@127.0.0.1:5432/bounces``.
``EMAIL_URL``
    The backend that really sends, wrapped by the bounce tracking backend. Default
    ``consolemail://`` (print every message copy); e.g. ``smtp://127.0.0.1:25`` for
    a local Postfix.
``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS``, ``TIME_ZONE``
    As in Django; the default secret key is for local development only.
``BOUNCE_TRACKER_<KEY>``
    One variable per ``BOUNCE_TRACKER`` key (``BOUNCE_TRACKER_BOUNCE_DOMAIN``,
    ``BOUNCE_TRACKER_SOFT_BOUNCE_LIMIT``...). Unset variables leave the app's default.
``ENV_FILE``
    Optional: the absolute path of a file of ``NAME=VALUE`` lines (django-environ's
    ``.env`` format) holding any of the variables above, e.g. ``DATABASE_URL`` with
    its password. Variables set in the environment win over the file. This is how
    secrets reach the Postfix pipe without being written into the world-readable
    ``master.cf``: ``bounce_postfix_config --env ENV_FILE=/etc/site/site.env``
    (docs/postfix.rst). A file that is named but can't be read stops the settings
    with ImproperlyConfigured, instead of silently falling back to the defaults.
"""

import io
import os
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

# example_project/ (the directory holding manage.py).
BASE_DIR = Path(__file__).resolve().parent.parent


def _read_env_file() -> None:
    """Add the variables of the file ``ENV_FILE`` names to the environment, if it names one.

    django-environ's ``read_env`` only logs a file it can't open and carries on, so
    the file is read here first: a pipe user who can't read it must get an error that
    names the file (Postfix then keeps the bounce), not the SQLite default database.
    """
    path = os.environ.get("ENV_FILE")
    if not path:
        return
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ImproperlyConfigured(
            f"ENV_FILE={path} can't be read: {exc.strerror or exc} (the user running "
            "this must be able to read it)"
        ) from exc
    # overwrite=False: a variable already in the environment keeps its value.
    environ.Env.read_env(io.StringIO(content), overwrite=False)


_read_env_file()
env = environ.Env()

SECRET_KEY = env.str(
    "SECRET_KEY", default="django-insecure-example-project-dev-only-do-not-use-in-production"
)
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bounce_tracker",
    "demo",
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

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database ---------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'demo.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # Full Unicode (4-byte UTF-8) for addresses and diagnostics.
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Internationalization, static files -------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# --- Mail ---------------------------------------------------------------------------

# EMAIL_URL names the backend that really sends (console, SMTP...) and its host
# settings; Django's EMAIL_BACKEND is the tracking backend that wraps it.
_email: dict[str, Any] = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL", False))
if _email.get("EMAIL_FILE_PATH"):
    # filemail: the path after "filemail://", so "filemail:////tmp/mail" is /tmp/mail.
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]

EMAIL_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Example site <news@example.com>")


def _bounce_tracker_settings() -> dict[str, Any]:
    """``BOUNCE_TRACKER`` from ``BOUNCE_TRACKER_*`` variables; unset ones keep the app default."""
    casts: dict[str, Any] = {
        "VERP_PREFIX": env.str,
        "VERP_DELIMITER": env.str,
        "VERP_FORMAT": env.str,
        "VERP_SECRET": env.str,
        "POLICY": env.str,
        "SOFT_BOUNCE_LIMIT": env.int,
        "SOFT_BOUNCE_WINDOW_DAYS": env.int,
        "OBSERVE_ONLY": env.bool,
        "MAX_MESSAGE_BYTES": env.int,
        "RAW_MESSAGE_MAX_BYTES": env.int,
        "UNMATCHED_MAX_MESSAGES": env.int,
        "SEND_WHEN_DATABASE_DOWN": env.str,
        "MAILBOX_URL": env.str,
        "MAILBOX_PROCESSED_FOLDER": env.str,
    }
    values: dict[str, Any] = {
        "BOUNCE_DOMAIN": env.str("BOUNCE_TRACKER_BOUNCE_DOMAIN", default="bounces.example.com"),
        "BACKEND": _email["EMAIL_BACKEND"],
    }
    for key, cast in casts.items():
        name = f"BOUNCE_TRACKER_{key}"
        if name in env.ENVIRON:
            values[key] = cast(name)
    return values


BOUNCE_TRACKER = _bounce_tracker_settings()

# --- Logging ------------------------------------------------------------------------

# This site wants to see what the tracker suppresses; the library itself only logs
# to the "bounce_tracker" logger and leaves the configuration to the site.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "simple": {"format": "{levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "simple"},
    },
    "loggers": {
        "bounce_tracker": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
