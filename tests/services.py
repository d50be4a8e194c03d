"""Services of a test's own, to break at will: a PostgreSQL cluster and a redis-server on spare ports (never
the machine's shared ones), gunicorn serving the app against whatever the environment names, and a media
storage that fails as a full disk or an unwritable folder does.

Each runs in its own process group and is stopped by ``stop()`` (call it in a ``finally`` or a fixture's
teardown). initdb refuses to run as root, so under root the cluster's commands run as the ``postgres`` OS
user (``runuser``), in a folder that user owns.
"""

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_binary(name: str) -> Path:
    """``name`` from the newest PostgreSQL under /usr/lib/postgresql (Debian's layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError(f"no PostgreSQL server binaries ({name}) under /usr/lib/postgresql")
    return found[-1]


def stop_group(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the process's group, SIGKILL it if it has not exited after ``timeout_s``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


class PrivatePostgres:
    """A throwaway cluster (trust authentication, user ``postgres``) listening on 127.0.0.1:``port``."""

    def __init__(self):
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="liverread-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        try:
            if self.as_owner:
                shutil.chown(self.folder, "postgres", "postgres")
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
            self.start()
        except BaseException:
            self.remove()
            raise

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args) -> None:
        command = [*self.as_owner, str(postgres_binary(tool)), *map(str, args)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        self._run("pg_ctl", "start", "-w", "-D", self.data, "-l", self.log, "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: "fast" ends every session (their open transactions roll back), "immediate"
        kills it as a crash would."""
        self._run("pg_ctl", "stop", "-w", "-D", self.data, "-m", mode)

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", name)

    def remove(self) -> None:
        """Stop the server (if running) and delete the cluster."""
        with suppress(RuntimeError):  # it was not running
            self._run("pg_ctl", "stop", "-w", "-D", self.data, "-m", "immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """redis-server on 127.0.0.1:``port`` keeping nothing on disk."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def kill(self) -> None:
        """SIGKILL: the broker is gone at once, as in a crash."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_group(self.process)


class Gunicorn:
    """gunicorn serving readerstudy.wsgi on 127.0.0.1:``port`` with ``workers`` processes of ``threads``
    threads (gthread), the app loaded once before forking; the environment chooses the database, broker and
    media. Its output goes to ``log``. Starting takes seconds (the app imports torch): do other work before
    ``wait_ready``."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 2, threads: int = 4):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "readerstudy.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            "60",
            "--preload",
        ]
        with log.open("a") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until /healthz answers at all (503 too: the broker may be down on purpose)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{self.base_url}/healthz", timeout=5)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start on port {self.port}:\n{self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system, s) used so far by the master and its live workers."""
        pids = [self.process.pid]
        pids += map(int, Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split())
        ticks = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop_group(self.process)


class FillsTheDisk(File):
    """A file whose writing runs out of space halfway."""

    def chunks(self, chunk_size=None):
        data = self.file.read()
        yield data[: len(data) // 2]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FailingStorage(FileSystemStorage):
    """FileSystemStorage that stores ``files_before_failure`` files, then fails every write with ``error``:
    ENOSPC writes half the file first and leaves it, as a full disk does under FileSystemStorage; any other
    errno (EACCES: an unwritable folder, which root's permissions cannot simulate) fails before writing."""

    def __init__(self, files_before_failure: int = 0, error: int = errno.ENOSPC, **options):
        super().__init__(**options)
        self.files_left, self.error = files_before_failure, error

    def _save(self, name, content):
        if self.files_left > 0:
            self.files_left -= 1
            return super()._save(name, content)
        if self.error == errno.ENOSPC:
            return super()._save(name, FillsTheDisk(content.file))
        raise OSError(self.error, os.strerror(self.error), self.path(name))
