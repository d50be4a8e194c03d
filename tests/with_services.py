"""``python tests/with_services.py [--private] COMMAND …``: run COMMAND with the PostgreSQL and Redis the test
suite needs. The machine's own on 127.0.0.1 (5432, 6379) when they answer; otherwise (or with ``--private``)
private ones on spare ports, started for the run and removed after it, whatever its outcome. COMMAND gets
TEST_DATABASE_URL and TEST_REDIS_URL naming the ones in use; its exit status is this script's.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from services import PrivatePostgres, PrivateRedis

POSTGRES_PORT, REDIS_PORT = 5432, 6379


def answers(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main(arguments: list[str]) -> int:
    private = arguments[:1] == ["--private"]
    command = arguments[1:] if private else arguments
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    env, cleanups = dict(os.environ), []
    try:
        if private or not answers(POSTGRES_PORT):
            postgres = PrivatePostgres()
            cleanups.append(postgres.remove)
            env["TEST_DATABASE_URL"] = postgres.url("liverread")
            print(f"PostgreSQL: a private cluster on port {postgres.port} for this run", flush=True)
        if private or not answers(REDIS_PORT):
            folder = Path(tempfile.mkdtemp(prefix="liverread-redis-"))
            cleanups.append(lambda: shutil.rmtree(folder, ignore_errors=True))
            redis = PrivateRedis(folder)
            cleanups.append(redis.stop)
            env["TEST_REDIS_URL"] = redis.url(15)
            print(f"Redis: a private redis-server on port {redis.port} for this run", flush=True)
        return subprocess.run(command, env=env).returncode
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
