"""Faults: PostgreSQL restarted under load, Redis gone while readers read, the media store full or unwritable
during an import.

The first two run simulated readers (tests/reader_client.py) against gunicorn serving a private PostgreSQL
cluster and a private redis-server (tests/services.py), never the machine's shared ones. Marker ``faults``:
they run in the SQLite pass of ``make test`` only (the services they break are their own).
"""

import errno
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from random import Random

import pytest

from inference.domain import CLASSES
from readerstudy.cases.importer import StorageFailed, import_dataset
from readerstudy.cases.models import Case, LesionMask, SequenceVolume
from readerstudy.unavailable import RETRY_AFTER_SECONDS
from tests.conftest import DatasetBuilder, stored_files
from tests.reader_client import Behaviour, Crowd, Log, SimulatedReader, reconcile
from tests.services import ROOT, Gunicorn, PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.faults

PASSWORD = "fault-test-password"
QUICK = Behaviour(think_s=(0.05, 0.3), double_submit=0.3, retry_for_s=30, timeout_s=10)
"""Readers who think briefly, double-submit often and retry for up to 30 s."""


@dataclass
class Stack:
    env: dict
    postgres: PrivatePostgres
    redis: PrivateRedis
    server: Gunicorn
    study: str
    accounts: list[str]


def django_shell(env: dict, code: str):
    """Run ``code`` in ``manage.py shell`` with ``env``; the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"manage.py shell failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Six one-lesion cases and eight readers in an open study, on a private cluster and redis-server,
    served by gunicorn (one worker, four threads)."""
    folder = tmp_path_factory.mktemp("faults")
    dataset = DatasetBuilder(folder / "dataset")
    for n in range(6):
        dataset.add_case(f"C{n}", patient=f"P{n}", lesions=(("L1", CLASSES[n]),), split="test")
    dataset.write_manifest()
    postgres = redis = server = None
    try:
        postgres = PrivatePostgres()
        postgres.create_database("liverread")
        redis = PrivateRedis(folder)
        env = os.environ | {
            "DATABASE_URL": postgres.url("liverread"),
            "CELERY_BROKER_URL": redis.url(),
            "MEDIA_ROOT": str(folder / "media"),
            "LIVERREAD_VAR": str(folder / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        server = Gunicorn(env, folder / "gunicorn.log", workers=1, threads=4)
        world = django_shell(
            env,
            "import json; from tests.load_study import prepare; "
            f"print(json.dumps(prepare({str(dataset.root)!r}, 8, {PASSWORD!r})))",
        )
        server.wait_ready()
        yield Stack(env, postgres, redis, server, world["study"], world["accounts"])
    finally:
        for service in (server, redis):
            if service is not None:
                service.stop()
        if postgres is not None:
            postgres.remove()


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def acknowledged_after(log: Log, moment: float) -> int:
    return sum(r.endpoint == "read" and r.status in (200, 201) and r.started_s > moment for r in log.requests)


def test_a_postgresql_restart_under_load_answers_503_then_recovers_and_loses_no_read(stack):
    log = Log()
    crowd = Crowd(stack.server.base_url, stack.study, [(a, PASSWORD) for a in stack.accounts[:4]], QUICK, log, 1)
    probe = SimulatedReader(
        stack.server.base_url,
        stack.study,
        stack.accounts[4],
        PASSWORD,
        Log(),
        QUICK,
        threading.Event(),
        Random(0),
        threading.Event(),
    )
    probe.login()
    try:
        crowd.add(4)
        assert crowd.wait_logged_in(30)
        wait_until(lambda: len(log.acknowledged) >= 2, 30, "reads before the restart")
        stack.postgres.stop("fast")
        try:
            time.sleep(2)
            api = probe.connection.exchange("GET", f"/api/studies/{stack.study}/next/", None, {})
            page = probe.connection.exchange("GET", f"/studies/{stack.study}/read/", None, {})
        finally:
            stack.postgres.start()
        restarted = time.monotonic()
        wait_until(lambda: log.failures or acknowledged_after(log, restarted) >= 3, 30, "reads after the restart")
    finally:
        crowd.stop()
        probe.connection.close()

    status, headers, body = api
    assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert headers["Content-Type"] == "application/json" and "unavailable" in json.loads(body)["detail"]
    status, headers, body = page
    assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert headers["Content-Type"].startswith("text/html") and b"Unavailable for a moment" in body
    statuses = Counter(r.status for r in log.requests)
    assert set(statuses) <= {200, 201, 302, 503}, statuses  # never a 500, never a hang (status 0)
    assert statuses[503] >= 1, "no reader met the outage: the test did not test it"
    assert max(r.latency_s for r in log.requests if r.status == 503) < 2  # answered at once, not after a wait
    assert not [r for r in log.requests if r.status == 503 and r.started_s > restarted]  # no stale connection used
    assert sum(r.endpoint == "read-again" for r in log.requests) >= 1
    code = (
        f"import json; from tests.load_study import stored_reads, half_written; "
        f"print(json.dumps([stored_reads({stack.study!r}), half_written({stack.study!r})]))"
    )
    reads, problems = django_shell(stack.env, code)
    reads = [read for read in reads if read["reader"] in stack.accounts[:4]]  # this test's readers
    assert log.acknowledged and not log.failures, log.failures
    assert reconcile(log.acknowledged, reads) == {"lost": [], "duplicated": [], "unacknowledged": []}
    assert problems == []  # no read half-written: each has its presentation and its audit event


def test_b_reading_and_submitting_go_on_while_redis_is_down(stack):
    log = Log()
    crowd = Crowd(stack.server.base_url, stack.study, [(a, PASSWORD) for a in stack.accounts[5:8]], QUICK, log, 2)
    try:
        crowd.add(3)
        assert crowd.wait_logged_in(30)
        wait_until(lambda: len(log.acknowledged) >= 2, 30, "reads before Redis goes")
        stack.redis.kill()
        killed = time.monotonic()
        wait_until(lambda: acknowledged_after(log, killed) >= 6, 30, "reads without Redis")
    finally:
        crowd.stop()

    statuses = Counter(r.status for r in log.requests)
    assert set(statuses) <= {200, 201, 302}, statuses
    after = [r for r in log.requests if r.started_s > killed]
    assert {r.endpoint for r in after} >= {"next", "lesion", "image", "mask", "read"}
    assert max(r.latency_s for r in after) < 3 and not log.failures
    started = time.monotonic()
    with urllib.request.urlopen(f"{stack.server.base_url}/healthz", timeout=30) as health:  # reports, stays up
        assert health.status == 200 and time.monotonic() - started < 10
        checks = json.loads(health.read())
    assert checks["database"] == "ok" and checks["broker"].startswith("error")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "files_before_failure", "problem", "kept"),
    [(errno.ENOSPC, 14 + 5, "disk full", ["C0"]), (errno.EACCES, 0, "media store not writable", [])],
    ids=["disk-full-in-the-second-case", "media-unwritable"],
)
def test_c_a_full_disk_or_unwritable_media_stops_the_import_with_nothing_half_imported(
    dataset, media, settings, error, files_before_failure, problem, kept
):
    for n in range(3):
        dataset.add_case(f"C{n}", patient=f"P{n}")
    dataset.write_manifest()
    working = settings.STORAGES
    failing = {
        "BACKEND": "tests.services.FailingStorage",
        "OPTIONS": {"files_before_failure": files_before_failure, "error": error},
    }
    settings.STORAGES = working | {"default": failing}
    failed = "C1" if kept else "C0"

    with pytest.raises(StorageFailed, match=rf"^{failed}/\S+: {problem} while storing") as raised:
        import_dataset(dataset.root, dataset="trial")

    assert f"nothing of case {failed} was kept and the import stopped" in str(raised.value)
    assert list(Case.objects.values_list("source_name", flat=True)) == kept
    referenced = list(SequenceVolume.objects.values_list("file", flat=True))
    referenced += list(LesionMask.objects.values_list("file", flat=True))
    assert len(referenced) == 14 * len(kept)
    assert stored_files(media) == sorted(media / name for name in referenced)  # no file of the failed case

    settings.STORAGES = working  # the disk has room again: the same import completes
    report = import_dataset(dataset.root, dataset="trial")
    assert report.skipped == kept and len(report.imported) == 3 - len(kept) and not report.rejected
