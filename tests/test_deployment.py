"""docker-compose.yml stays valid (Debian's docker-compose validates it offline)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"SECRET_KEY": "s", "PSEUDONYM_KEY": "p", "POSTGRES_PASSWORD": "pw"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing: `make test` installs Debian's package"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "ALLOWED_HOSTS"}
    return subprocess.run(
        [docker_compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={**clean, **env}, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_has_web_workers_database_and_broker_with_health_checks(compose):
    services = compose["services"]
    assert set(services) == {"web", "worker", "scheduler", "db", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    assert "gunicorn readerstudy.wsgi" in services["web"]["command"]
    for name in ("web", "worker", "scheduler"):
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }


def test_the_gpu_worker_consumes_only_the_inference_queue_one_task_at_a_time(compose):
    worker, scheduler = compose["services"]["worker"]["command"], compose["services"]["scheduler"]["command"]
    assert worker.startswith("celery -A readerstudy worker --queues inference --concurrency 1")
    assert scheduler.startswith("celery -A readerstudy worker --beat --queues default")


def test_web_and_workers_share_media_and_configuration(compose):
    services = [compose["services"][name] for name in ("web", "worker", "scheduler")]
    assert all(service["volumes"] == ["media:/srv/media:rw"] for service in services)
    for service in services:
        env = service["environment"]
        assert env["DATABASE_URL"] == "postgres://liverread:pw@db:5432/liverread"
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert env["MEDIA_ROOT"] == "/srv/media" and env["DEBUG"] == "false"
        assert env["SECRET_KEY"] == "s" and env["PSEUDONYM_KEY"] == "p"


def test_worker_reserves_a_gpu(compose):
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in compose["services"]["web"] and "deploy" not in compose["services"]["scheduler"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret(missing):
    result = compose_config({k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0 and f"set {missing}" in result.stderr


def test_dockerfile_serves_the_wsgi_app_as_an_unprivileged_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11" in dockerfile
    assert "USER liverread" in dockerfile and '"gunicorn", "readerstudy.wsgi"' in dockerfile
    for copied in ("pyproject.toml", "inference", "readerstudy"):
        assert (ROOT / copied).exists()
