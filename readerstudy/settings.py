"""Django settings, configured by the environment only.

Variables: DATABASE_URL (PostgreSQL via psycopg 3, e.g.
``postgres://user@host:5432/liverread``), CELERY_BROKER_URL (Redis), MEDIA_ROOT,
SECRET_KEY, DEBUG, ALLOWED_HOSTS (comma-separated), PSEUDONYM_KEY (the key of
the keyed hash that turns patient ids into pseudonyms), LIVERREAD_VAR (where the
embedded default keeps its state), CELERY_VISIBILITY_TIMEOUT and the PREDICTION_*
/ TRAINING_* timings below. With none set: SQLite, Celery eager and media
under ``var/``; generated secrets are kept in ``var/`` and never committed.

Security (``python manage.py check --deploy`` is clean with HTTPS on, DEBUG off):
- HTTPS: the site is served over HTTPS only. Plain HTTP is redirected to HTTPS
  (except ``/healthz``, which the container's health check asks over plain HTTP),
  the session and CSRF cookies are sent over HTTPS only, and HSTS tells browsers
  to use HTTPS for a year on this host and its subdomains, preload included (a
  host below a registrable domain cannot be submitted to the preload list, so
  ``preload`` commits nothing more than the year and the subdomains). Off by
  default: the embedded demo serves plain HTTP on 127.0.0.1 (DEBUG off too), so
  its cookies must not be HTTPS-only.
- BEHIND_PROXY: a reverse proxy terminates TLS in front of gunicorn and is the
  only client that reaches it. Its ``X-Forwarded-Proto: https`` marks a request
  secure, and the last address of ``X-Forwarded-For`` (the one the proxy
  appended) is the client address that login throttling counts.
- CSRF_TRUSTED_ORIGINS (comma-separated, e.g. ``https://liverread.example.org``):
  origins allowed to POST besides the request's own host.
- Always: 5 failed logins for one username from one client address lock that
  pair out for 15 minutes (django-axes; a success resets the count; a superuser
  unlocks in the admin's "Access attempts" or with ``manage.py axes_reset_username``);
  pages may not be framed (X-Frame-Options DENY: the viewer is a page of its
  own, never framed); the Referer is sent to this site only (same-origin); the
  session cookie is hidden from JavaScript and lasts a working day (10 hours),
  after which the reader logs in again.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LIVERREAD_VAR", BASE_DIR / "var"))


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret(name: str) -> str:
    """The environment's value, else one generated once into ``var/<name>``."""
    if os.environ.get(name):
        return os.environ[name]
    path = VAR_DIR / name.lower()
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret("SECRET_KEY")
PSEUDONYM_KEY = _secret("PSEUDONYM_KEY")
DEBUG = _env_flag("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
HTTPS = _env_flag("HTTPS", False)
BEHIND_PROXY = _env_flag("BEHIND_PROXY", False)

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
    "readerstudy.cases",
    "readerstudy.studies",
    "readerstudy.predictions",
    "readerstudy.analysis",
    "readerstudy.audit",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "readerstudy.content_security.content_security_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "readerstudy.unavailable.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "readerstudy.audit.recording.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "readerstudy.urls"
WSGI_APPLICATION = "readerstudy.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=60,
        conn_health_checks=True,  # a connection lost in a database restart is replaced, not used
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dev server read while an import writes.
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"


def forwarded_client_ip(request) -> str | None:
    """The address our reverse proxy appended to X-Forwarded-For (the last one; a client can forge the others)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
    return forwarded or request.META.get("REMOTE_ADDR")


# Login throttling (django-axes), see the docstring.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = forwarded_client_ip if BEHIND_PROXY else None

# Transport, cookies and headers, see the docstring.
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = 365 * 24 * 60 * 60 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 10 * 60 * 60  # seconds: a working day
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# static/ is the viewer's npm project: only its hand-written assets and its built bundle are served.
STATICFILES_DIRS = [BASE_DIR / "static" / "assets", ("dist", BASE_DIR / "static" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "media")
MEDIA_URL = "media/"  # never served directly: case files go through permission-checked views
DICOM_UPLOAD_MAX_BYTES = int(os.environ.get("DICOM_UPLOAD_MAX_BYTES", 4 << 30))  # a DICOM zip, and its unpacked files

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LiverRead API",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",  # served by WhiteNoise: the docs page works offline
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "readerstudy.predictions.tasks.predict_batch": {"queue": "inference"},
    "readerstudy.predictions.tasks.train_model": {"queue": "inference"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a worker holds one batch; the rest stay in Redis for other workers
# An unacknowledged prediction batch goes back to the queue after this many seconds (its worker died).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
CELERY_BEAT_SCHEDULE = {
    "sweep-predictions": {"task": "readerstudy.predictions.tasks.sweep_predictions", "schedule": 300.0}
}

# Predictions (readerstudy.predictions): lesions per message; a claim's lease (must stay below the
# visibility timeout so that a redelivered batch finds it expired); re-send a queued row after this long;
# give up after this many claims; a training run silent this long is re-sent (it resumes).
PREDICTION_BATCH_SIZE = int(os.environ.get("PREDICTION_BATCH_SIZE", "8"))
PREDICTION_LEASE_SECONDS = int(os.environ.get("PREDICTION_LEASE_SECONDS", "1800"))
PREDICTION_RESEND_SECONDS = int(os.environ.get("PREDICTION_RESEND_SECONDS", "3600"))
PREDICTION_MAX_ATTEMPTS = 3
TRAINING_STALE_SECONDS = int(os.environ.get("TRAINING_STALE_SECONDS", "1800"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
