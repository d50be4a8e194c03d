"""Security: login throttling, the deploy check under the production environment, CSRF on every form and every
session-authenticated API write, and no secret in the repository."""

import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from test_reading import make_reader, new_study

from readerstudy.settings import forwarded_client_ip

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/accounts/login/"
PASSWORD = "a-long-test-password"

# --- login throttling ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Many logins here: a fast hasher instead of the real one's million iterations."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(client: Client, username: str, password: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_five_wrong_passwords_lock_that_username_from_that_address_for_15_minutes(client):
    users = get_user_model().objects
    users.create_user("res1", password=PASSWORD)
    users.create_user("res2", password=PASSWORD)
    for _ in range(4):
        assert "did not match" in log_in(client, "res1", "wrong").content.decode()
    assert log_in(client, "res1", "wrong").status_code == 429  # the fifth
    refused = log_in(client, "res1", PASSWORD)
    page = refused.content.decode()
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert "Login locked" in page and "as res1" in page and "after 5 wrong passwords" in page and "15 minutes" in page
    attempt = AccessAttempt.objects.get(username="res1", ip_address="127.0.0.1")
    assert attempt.failures_since_start >= 5
    assert logged_in(log_in(Client(), "res2", PASSWORD))  # another user from the same address
    assert logged_in(log_in(Client(REMOTE_ADDR="10.0.0.2"), "res1", PASSWORD))  # the same user elsewhere
    AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert logged_in(log_in(client, "res1", PASSWORD))  # the cool-off is over


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(client):
    get_user_model().objects.create_user("staff1", password=PASSWORD, is_staff=True)
    for _ in range(5):
        client.post("/admin/login/", {"username": "staff1", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "staff1", "password": PASSWORD})
    assert response.status_code == 429 and "Login locked" in response.content.decode()


@pytest.mark.django_db
def test_behind_the_proxy_the_address_it_appended_is_counted_and_forged_ones_are_not(client, settings):
    settings.AXES_CLIENT_IP_CALLABLE = forwarded_client_ip
    get_user_model().objects.create_user("res1", password=PASSWORD)
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for n in range(5):  # the attacker forges a new address in front of the real one each time
        log_in(client, "res1", "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.7", **proxy)
    assert AccessAttempt.objects.get(username="res1").ip_address == "203.0.113.7"
    forged = log_in(client, "res1", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.9, 203.0.113.7", **proxy)
    assert forged.status_code == 429
    assert logged_in(log_in(Client(), "res1", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy))


# --- deployment settings -------------------------------------------------------------------------------------


def production_environment(var_dir: Path) -> dict[str, str]:
    """What docker-compose.yml gives the web service, with fresh secrets and the site's host name."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT"}}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
        "LIVERREAD_VAR": str(var_dir),
        "DEBUG": "0",
        "HTTPS": "1",
        "BEHIND_PROXY": "1",
        "SECRET_KEY": secrets.token_urlsafe(38)[:50],
        "PSEUDONYM_KEY": secrets.token_urlsafe(38),
        "ALLOWED_HOSTS": "liverread.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://liverread.example.org",
    }


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_deploy_check_is_clean_under_the_production_environment(tmp_path):
    result = deploy_check(production_environment(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout and "WARNINGS" not in result.stdout + result.stderr


def test_the_embedded_default_fails_the_deploy_check():
    """The control: without HTTPS (the demo serves plain HTTP) the site is not deployable, and says why."""
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", deploy=True, fail_level="WARNING")
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in str(failed.value)


# --- CSRF ----------------------------------------------------------------------------------------------------

WRITE_METHODS = ("post", "put", "patch", "delete")


def api_writes() -> dict[str, tuple[str, ...]]:
    """Every DRF view of the project that accepts a write: {route name: its write methods}."""
    found = {}

    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace)
            elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
                methods = tuple(m for m in WRITE_METHODS if hasattr(pattern.callback.cls, m))
                if methods:
                    found[f"{namespace}{pattern.name}"] = methods

    walk(get_resolver().url_patterns)
    return found


@pytest.mark.django_db
def test_every_session_authenticated_api_write_needs_the_csrf_token(eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader.user)
    task = client.get(f"/api/studies/{study.public_id}/next/").json()["task"]
    # Each write endpoint with a valid request; a new write endpoint must join this table.
    requests = {
        "studies:api-reads": (
            "post",
            f"/api/studies/{study.public_id}/reads/",
            {**task, "diagnosis": "HCC", "confidence": 4, "malignancy": 80},
            201,
        ),
    }
    assert {name: (method,) for name, (method, *_) in requests.items()} == api_writes()
    token = client.get(f"/studies/{study.public_id}/read/").cookies["csrftoken"].value
    for name, (method, url, body, status) in requests.items():
        send = getattr(client, method)
        refused = send(url, body, content_type="application/json")
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"], name
        accepted = send(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert accepted.status_code == status, (name, accepted.content)


@pytest.mark.django_db
def test_login_logout_and_admin_actions_refuse_a_post_without_the_csrf_token():
    user = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    assert log_in(client, "boss", PASSWORD).status_code == 403
    client.force_login(user)
    assert client.post("/admin/studies/reader/", {"action": "assign_to_study"}).status_code == 403
    assert client.post("/accounts/logout/").status_code == 403


FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.IGNORECASE | re.DOTALL)
POST_FORM = re.compile(r"<form\b[^>]*\bmethod=[\"']?post\b", re.IGNORECASE)


def post_forms_without_token(text: str) -> list[str]:
    return [form for form in FORM.findall(text) if POST_FORM.match(form) and "{% csrf_token %}" not in form]


def test_every_post_form_in_the_templates_carries_the_csrf_token():
    templates = sorted(ROOT.glob("templates/**/*.html")) + sorted(ROOT.glob("readerstudy/*/templates/**/*.html"))
    post_forms = [form for path in templates for form in FORM.findall(path.read_text()) if POST_FORM.match(form)]
    assert len(post_forms) >= 3  # login, logout, the admin's assign page
    missing = {str(path.relative_to(ROOT)): post_forms_without_token(path.read_text()) for path in templates}
    assert not {path: forms for path, forms in missing.items() if forms}
    assert post_forms_without_token('<form method="post" action="/x"><button>Go</button></form>')  # the control


# --- no secret in the repository -----------------------------------------------------------------------------

PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
KEY_LITERAL = re.compile(r"""(SECRET_KEY|PSEUDONYM_KEY)["']?\s*[:=]\s*["'][^"'\s]+["']""")
LONG_KEY_LITERAL = re.compile(r"""(SECRET_KEY|PSEUDONYM_KEY)["']?\s*[:=]\s*["'][^"'\s]{32,}["']|django-(?:insecure)-""")
PASSWORD_LITERAL = re.compile(r"""(?i)(password\w*["']?\s*[:=]\s*["'][^"']+["']|set_password\(\s*["'])""")
CONFIG_PASSWORD = re.compile(r"(?i)password\w*\s*[:=]\s*(?![\s\"']*\$|\?)\S+|://[^/\s:@]+:(?!\$\{)[^@\s]+@")
# Where each rule applies: deployed code, settings and fixtures hold no key or password literal at all; the
# configuration files take passwords from the environment only; tests and benchmarks make throwaway users and
# fake keys in throwaway databases and subprocesses, so there only a real-looking key (32+ characters, Django's
# insecure prefix) or a private key block counts.
CODE_AND_FIXTURES = re.compile(r"^(readerstudy|inference|fixtures)/|^manage\.py$")
CONFIGURATION = re.compile(r"^(docker-compose\.yml|Dockerfile|Makefile|\.ci/.*|pyproject\.toml|\.dockerignore)$")


def leaks(path: str, text: str) -> list[str]:
    """The secrets ``text`` (the file at ``path``, relative to the repository root) holds, by the rules above."""
    rules = [PRIVATE_KEY, LONG_KEY_LITERAL]
    if CODE_AND_FIXTURES.search(path):
        rules += [KEY_LITERAL, PASSWORD_LITERAL]
    if CONFIGURATION.search(path):
        rules += [KEY_LITERAL, CONFIG_PASSWORD]
    return [match.group(0) for rule in rules for match in rule.finditer(text)]


def test_no_secret_is_committed():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [p for p in tracked.decode().split("\0") if p and (ROOT / p).is_file()]
    assert "readerstudy/settings.py" in paths and "docker-compose.yml" in paths
    found = {}
    for path in paths:
        raw = (ROOT / path).read_bytes()
        if b"\0" not in raw[:8192]:
            found[path] = leaks(path, raw.decode("utf-8", errors="replace"))
    assert not {path: hits for path, hits in found.items() if hits}
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret_key"], cwd=ROOT)
    assert ignored.returncode == 0, "the generated secrets in var/ must stay out of git"


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("readerstudy/settings.py", 'SECRET_KEY = "abc123"'),
        ("fixtures/users.json", '{"username": "a", "password": "hunter2"}'),
        ("readerstudy/x.py", 'user.set_password("hunter2")'),
        ("docker-compose.yml", "      POSTGRES_PASSWORD: hunter2"),
        ("docker-compose.yml", "DATABASE_URL: postgres://liverread:hunter2@db:5432/liverread"),
        ("tests/test_x.py", f'env = {{"SECRET_KEY": "{"k" * 40}"}}'),
        ("README.md", "-----BEGIN OPENSSH " + "PRIVATE KEY-----"),  # split: this file is scanned too
    ],
)
def test_the_scan_finds_planted_secrets(path, text):
    assert leaks(path, text)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("docker-compose.yml", "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"),
        ("docker-compose.yml", "DATABASE_URL: postgres://liverread:${POSTGRES_PASSWORD:?set it}@db:5432/liverread"),
        ("readerstudy/settings.py", 'SECRET_KEY = _secret("SECRET_KEY")'),
        ("tests/test_x.py", 'create_user("r1", password="x")'),
    ],
)
def test_the_scan_passes_secrets_taken_from_the_environment_and_test_users(path, text):
    assert not leaks(path, text)


@pytest.mark.django_db
def test_an_unknown_url_answers_json_under_the_api_and_the_site_page_elsewhere(client):
    api = client.get("/api/no-such-thing/")
    assert api.status_code == 404 and api["Content-Type"] == "application/json"
    assert api.json() == {"detail": "Not found."}
    page = client.get("/no-such-thing/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_an_unexpected_error_answers_json_under_the_api_and_the_site_page_elsewhere(settings):
    settings.ROOT_URLCONF = "failing_urls"
    client = Client(raise_request_exception=False)
    api = client.get("/api/fail/")
    assert api.status_code == 500 and api["Content-Type"] == "application/json"
    assert api.json() == {"detail": "Server error."}
    page = client.get("/fail/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
