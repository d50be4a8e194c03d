"""Configuration comes from the environment only; with none set, the embedded default."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "MEDIA_ROOT",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "PSEUDONYM_KEY",
    "HTTPS",
    "BEHIND_PROXY",
    "CSRF_TRUSTED_ORIGINS",
)
SECURITY = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
    "AXES_CLIENT_IP_CALLABLE",
    "X_FRAME_OPTIONS",
    "SECURE_REFERRER_POLICY",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_AGE",
)
ALWAYS = {
    "X_FRAME_OPTIONS": "DENY",
    "SECURE_REFERRER_POLICY": "same-origin",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_AGE": 10 * 3600,
}
PROBE = (
    f"SECURITY = {SECURITY!r}"
    + """
import json, django
from django.conf import settings
django.setup()
from readerstudy.celery import app
db = settings.DATABASES["default"]
print(json.dumps({"engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"),
    "eager": app.conf.task_always_eager, "broker": app.conf.broker_url, "media": str(settings.MEDIA_ROOT),
    "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS, "secret": settings.SECRET_KEY,
    "pseudonym": settings.PSEUDONYM_KEY, "security": {name: getattr(settings, name) for name in SECURITY}},
    default=lambda value: value.__name__))
"""
)


def settings_under(env: dict[str, str], var_dir: Path) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "LIVERREAD_VAR": str(var_dir), **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_embedded_default_is_sqlite_eager_celery_and_media_under_var(tmp_path):
    config = settings_under({}, tmp_path)
    assert config["engine"] == "django.db.backends.sqlite3" and config["name"] == str(tmp_path / "db.sqlite3")
    assert config["eager"] is True and config["media"] == str(tmp_path / "media")
    assert config["debug"] is False and config["hosts"] == ["127.0.0.1", "localhost"]
    # The demo serves plain HTTP: cookies sent over HTTP, no redirect, no HSTS, no proxy trusted.
    assert config["security"] == ALWAYS | {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "CSRF_TRUSTED_ORIGINS": [],
        "AXES_CLIENT_IP_CALLABLE": None,
    }


def test_generated_secrets_are_kept_in_var_and_reused(tmp_path):
    first, second = settings_under({}, tmp_path), settings_under({}, tmp_path)
    assert len(first["secret"]) > 40 and first["secret"] == second["secret"]
    assert first["pseudonym"] == second["pseudonym"] != first["secret"]
    assert (tmp_path / "secret_key").read_text() == first["secret"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_environment_configures_postgres_redis_media_hosts_and_https(tmp_path):
    config = settings_under(
        {
            "DATABASE_URL": "postgres://reader@db.example:5432/liverread",
            "CELERY_BROKER_URL": "redis://cache.example:6379/0",
            "MEDIA_ROOT": "/srv/media",
            "SECRET_KEY": "from-the-environment",
            "DEBUG": "true",
            "ALLOWED_HOSTS": "liverread.example, 10.0.0.5",
            "HTTPS": "1",
            "BEHIND_PROXY": "yes",
            "CSRF_TRUSTED_ORIGINS": "https://liverread.example, https://10.0.0.5",
        },
        tmp_path,
    )
    assert config["engine"] == "django.db.backends.postgresql" and config["host"] == "db.example"
    assert config["name"] == "liverread"
    assert config["eager"] is False and config["broker"] == "redis://cache.example:6379/0"
    assert config["media"] == "/srv/media" and config["debug"] is True
    assert config["hosts"] == ["liverread.example", "10.0.0.5"] and config["secret"] == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()
    assert config["security"] == ALWAYS | {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://liverread.example", "https://10.0.0.5"],
        "AXES_CLIENT_IP_CALLABLE": "forwarded_client_ip",
    }
