"""Configuration comes from the environment only; with none set, the embedded default."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "PSEUDONYM_KEY")
PROBE = """
import json, django
from django.conf import settings
django.setup()
from readerstudy.celery import app
db = settings.DATABASES["default"]
print(json.dumps({"engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"),
    "eager": app.conf.task_always_eager, "broker": app.conf.broker_url, "media": str(settings.MEDIA_ROOT),
    "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS, "secret": settings.SECRET_KEY,
    "pseudonym": settings.PSEUDONYM_KEY}))
"""


def settings_under(env: dict[str, str], var_dir: Path) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "LIVERREAD_VAR": str(var_dir), **env},
        capture_output=True, text=True, cwd=ROOT, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_embedded_default_is_sqlite_eager_celery_and_media_under_var(tmp_path):
    config = settings_under({}, tmp_path)
    assert config["engine"] == "django.db.backends.sqlite3" and config["name"] == str(tmp_path / "db.sqlite3")
    assert config["eager"] is True and config["media"] == str(tmp_path / "media")
    assert config["debug"] is False and config["hosts"] == ["127.0.0.1", "localhost"]


def test_generated_secrets_are_kept_in_var_and_reused(tmp_path):
    first, second = settings_under({}, tmp_path), settings_under({}, tmp_path)
    assert len(first["secret"]) > 40 and first["secret"] == second["secret"]
    assert first["pseudonym"] == second["pseudonym"] != first["secret"]
    assert (tmp_path / "secret_key").read_text() == first["secret"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_environment_configures_postgres_redis_media_and_hosts(tmp_path):
    config = settings_under(
        {
            "DATABASE_URL": "postgres://reader@db.example:5432/liverread",
            "CELERY_BROKER_URL": "redis://cache.example:6379/0",
            "MEDIA_ROOT": "/srv/media",
            "SECRET_KEY": "from-the-environment",
            "DEBUG": "true",
            "ALLOWED_HOSTS": "liverread.example, 10.0.0.5",
        },
        tmp_path,
    )
    assert config["engine"] == "django.db.backends.postgresql" and config["host"] == "db.example"
    assert config["name"] == "liverread"
    assert config["eager"] is False and config["broker"] == "redis://cache.example:6379/0"
    assert config["media"] == "/srv/media" and config["debug"] is True
    assert config["hosts"] == ["liverread.example", "10.0.0.5"] and config["secret"] == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()
