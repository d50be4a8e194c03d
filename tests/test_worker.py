"""A real Celery worker process against the real Redis and PostgreSQL on 127.0.0.1: predictions computed by
the worker, exactly once after the worker is SIGKILLed mid-batch, and an import that survives a Redis outage.

The commands run as separate processes (``manage.py`` with the broker set), as an admin would run them;
the worker consumes the inference and default queues. These tests run in the PostgreSQL pass of
``make test`` (marker ``worker``): a worker process cannot share pytest's SQLite test database.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection

from readerstudy.cases.models import Lesion
from readerstudy.predictions.models import ModelVersion, Prediction, Saliency, TrainingRun

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def env(media) -> dict[str, str]:
    """Environment of the worker and the commands: this test database, the test Redis, short timeouts."""
    if connection.vendor != "postgresql":
        pytest.fail("worker tests need PostgreSQL: run them with DATABASE_URL=postgres://… (make test does)")
    redis.Redis.from_url(REDIS_URL).flushdb()
    db = connection.settings_dict
    return os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": REDIS_URL,
        "MEDIA_ROOT": str(media),
        "PYTHONUNBUFFERED": "1",
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "PREDICTION_LEASE_SECONDS": "2",
        "OMP_NUM_THREADS": "1",
    }


def manage(env: dict, *args: str, **extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env | extra, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Worker:
    """``celery worker`` (prefork, concurrency 1) in its own process group, logging to a file."""

    def __init__(self, env: dict, log: Path):
        self.log = log
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "readerstudy",
            "worker",
            "-Q",
            "inference,default",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{uuid.uuid4().hex[:8]}@%h",
            "--loglevel",
            "INFO",
        ]
        with log.open("a") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool child): nothing is acknowledged or cleaned up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(env, tmp_path):
    workers = []

    def start(**extra: str) -> Worker:
        workers.append(Worker(env | extra, tmp_path / "worker.log"))
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


def wait_for(condition, timeout: float = 180, what: str = "condition", log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tail}")


def done() -> int:
    return Prediction.objects.filter(status="done").count()


def test_the_worker_computes_each_prediction_once_and_ignores_duplicate_messages(
    env, trained_run, phantom_subset, start_worker
):
    manage(env, "import_dataset", str(phantom_subset), "--dataset", "tiny", "--no-progress")
    lesions = Lesion.objects.count()
    worker = start_worker()

    manage(env, "register_model", str(trained_run), "--name", "tiny", "--activate")
    wait_for(lambda: done() == lesions, what=f"{lesions} predictions", log=worker.log)

    version = ModelVersion.objects.get(name="tiny")
    assert Prediction.objects.filter(model_version=version).count() == lesions
    assert Saliency.objects.count() == 7 * lesions
    assert {p.worker.split(":")[1].split()[0] for p in Prediction.objects.all()} != {str(os.getpid())}
    finished = dict(Prediction.objects.values_list("pk", "finished_at"))

    consumed = worker.log.read_text().count(" succeeded in ")
    ids = list(finished) * 2
    manage(env, "shell", "-c", f"from readerstudy.predictions.dispatch import dispatch; dispatch({ids})")
    batches = -(-len(ids) // 8)  # PREDICTION_BATCH_SIZE
    wait_for(
        lambda: worker.log.read_text().count(" succeeded in ") == consumed + batches,
        timeout=60,
        what=f"{batches} duplicate batches to be consumed",
        log=worker.log,
    )
    assert worker.log.read_text().count("'done': 0, 'failed': 0") >= batches
    assert dict(Prediction.objects.values_list("pk", "finished_at")) == finished
    assert Prediction.objects.count() == lesions and Saliency.objects.count() == 7 * lesions
    assert worker.log.read_text().count("loaded model tiny on cpu") == 1  # once per worker process


def test_a_prediction_interrupted_by_sigkill_completes_exactly_once_on_a_new_worker(
    env, trained_run, phantom_cohort, start_worker, media
):
    manage(env, "import_dataset", str(phantom_cohort), "--dataset", "tiny", "--no-progress")
    lesions = Lesion.objects.count()
    first = start_worker(PREDICTION_BATCH_SIZE="100")  # one message holds every lesion

    manage(env, "register_model", str(trained_run), "--name", "tiny", "--activate", PREDICTION_BATCH_SIZE="100")
    wait_for(lambda: done() >= 2, what="the first predictions", log=first.log)
    first.kill()

    before = dict(Prediction.objects.filter(status="done").values_list("pk", "finished_at"))
    interrupted = Prediction.objects.filter(status="running")
    assert 0 < len(before) < lesions, "the worker finished before it was killed; the test needs a longer batch"
    assert interrupted.count() == 1
    interrupted_pk = interrupted.get().pk

    second = start_worker()
    wait_for(lambda: done() == lesions, what="every prediction after the restart", log=second.log)

    assert Prediction.objects.count() == lesions and Saliency.objects.count() == 7 * lesions
    assert Prediction.objects.get(pk=interrupted_pk).attempts == 2
    assert set(Prediction.objects.exclude(pk=interrupted_pk).values_list("attempts", flat=True)) == {1}
    assert {pk: at for pk, at in Prediction.objects.values_list("pk", "finished_at") if pk in before} == before
    for prediction in Prediction.objects.all():  # one set of files each: the dead attempt's were removed
        folder = media / "saliency" / prediction.storage_key
        assert [p.name for p in folder.iterdir()] == [str(prediction.attempts)]


def test_an_import_during_a_redis_outage_succeeds_and_its_predictions_complete_later(
    env, trained_run, phantom_subset, start_worker
):
    manage(env, "register_model", str(trained_run), "--name", "tiny", "--activate")
    assert not Prediction.objects.exists()

    output = manage(
        env, "import_dataset", str(phantom_subset), "--dataset", "tiny", "--no-progress", CELERY_BROKER_URL=UNREACHABLE
    )

    lesions = Lesion.objects.count()
    assert "imported" in output and lesions > 0
    waiting = Prediction.objects.filter(status="queued", dispatched_at__isnull=True)
    assert waiting.count() == lesions
    assert all("the broker is unreachable" in error for error in waiting.values_list("error", flat=True))

    worker = start_worker()
    assert f"re-sent {lesions} prediction(s)" in manage(env, "sweep_predictions")
    wait_for(lambda: done() == lesions, what="the swept predictions", log=worker.log)
    assert Prediction.objects.filter(error="").count() == lesions


def test_train_model_trains_on_the_worker_while_the_command_follows_it(
    env, phantom_cohort, phantom_subset, start_worker, tmp_path
):
    from test_training import tiny_config

    tiny_config(tmp_path)
    config_path = next(tmp_path.glob("tiny-*.json"))
    manage(env, "import_dataset", str(phantom_subset), "--dataset", "tiny", "--no-progress")
    worker = start_worker()

    output = manage(
        env,
        "train_model",
        "--data",
        str(phantom_cohort),
        "--config",
        str(config_path),
        "--name",
        "on-worker",
        "--activate",
    )

    assert "(on the worker)" in output and "registered as on-worker" in output
    run = TrainingRun.objects.get()
    assert run.status == "done" and run.epochs_done == run.epochs_total == 4 and run.heartbeat is not None
    assert run.model_version.is_active and " succeeded in " in worker.log.read_text()
    lesions = Lesion.objects.count()
    wait_for(lambda: done() == lesions, what="the new version's predictions", log=worker.log)
