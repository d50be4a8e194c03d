"""``tests/with_services.py`` (what ``make test`` runs its passes under): with the machine's PostgreSQL and
Redis absent, private ones serve the command and are gone after it."""

import socket
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import pytest
from django.conf import settings

pytestmark = pytest.mark.faults

USE_BOTH = textwrap.dedent(
    """
    import os, socket
    import psycopg
    with psycopg.connect(os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres") as connection:
        assert connection.execute("select 1").fetchone() == (1,)
    redis = os.environ["TEST_REDIS_URL"].split("//")[1].split("/")[0].split(":")
    with socket.create_connection((redis[0], int(redis[1])), timeout=5) as connection:
        connection.sendall(b"PING\\r\\n")
        assert connection.recv(16).startswith(b"+PONG")
    print(os.environ["TEST_DATABASE_URL"], os.environ["TEST_REDIS_URL"])
    """
)


def closed(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        return False
    except OSError:
        return True


def test_private_services_serve_the_command_and_are_removed_after(tmp_path):
    script = settings.BASE_DIR / "tests" / "with_services.py"
    done = subprocess.run(
        [sys.executable, str(script), "--private", sys.executable, "-c", USE_BOTH],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    database_url, redis_url = done.stdout.split()[-2:]
    assert urlsplit(database_url).port != 5432 and urlsplit(redis_url).port != 6379
    assert "a private cluster" in done.stdout and "a private redis-server" in done.stdout
    assert closed(database_url) and closed(redis_url)


def test_the_commands_exit_status_is_kept():
    script = settings.BASE_DIR / "tests" / "with_services.py"
    done = subprocess.run([sys.executable, str(script), sys.executable, "-c", "raise SystemExit(3)"], timeout=180)
    assert done.returncode == 3
