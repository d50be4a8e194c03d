"""docker-compose.yml stays valid (Debian's docker-compose validates it offline), and its web service's
environment and health check work with the app."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


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
        assert env["HTTPS"] == "true" and env["BEHIND_PROXY"] == "true"


def test_only_the_proxy_on_the_host_reaches_gunicorn(compose):
    """BEHIND_PROXY trusts X-Forwarded-*: gunicorn is published on the loopback interface only."""
    assert compose["services"]["web"]["ports"] == ["127.0.0.1:8000:8000/tcp"]


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60)
    except urllib.error.HTTPError:
        return True  # an answer all the same (here 400: 127.0.0.1 is not an allowed host)
    except OSError:
        return False
    return True


@pytest.fixture
def web(compose, tmp_path):
    """gunicorn serving the app with the web service's environment on a free port (SQLite and eager tasks
    in place of the services' database and broker); yields the service's environment and the port."""
    services = {"DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT"}
    env = {k: v for k, v in compose["services"]["web"]["environment"].items() if k not in services}
    env["ALLOWED_HOSTS"] = "liverread.example.org"
    port = free_port()
    ours = {k: v for k, v in os.environ.items() if k not in services}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "readerstudy.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--graceful-timeout",
            "1",
        ],
        env={**ours, **env, "LIVERREAD_VAR": str(tmp_path), "MEDIA_ROOT": str(tmp_path / "media")},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not answers(port):  # the worker imports the app (and torch) before it answers
            assert server.poll() is None, "gunicorn exited"
            time.sleep(0.2)
        yield env, port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_health_check_passes_and_everything_else_is_https_only(compose, web):
    env, port = web
    kind, *command = compose["services"]["web"]["healthcheck"]["test"]
    assert kind == "CMD" and command[:2] == ["python", "-c"]
    check = command[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run([sys.executable, "-c", check], env={**os.environ, **env}, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    site = {"Host": "liverread.example.org"}
    no_redirects = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as plain:
        no_redirects.open(urllib.request.Request(f"http://127.0.0.1:{port}/accounts/login/", headers=site))
    assert plain.value.code == 301 and plain.value.headers["Location"] == f"https://{site['Host']}/accounts/login/"
    proxied = {**site, "X-Forwarded-Proto": "https"}
    with no_redirects.open(urllib.request.Request(f"http://127.0.0.1:{port}/accounts/login/", headers=proxied)) as page:
        assert page.status == 200
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "same-origin"
        assert "; Secure" in page.headers["Set-Cookie"] and page.headers["Set-Cookie"].startswith("csrftoken=")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
