"""A TrainingRun carried out by a worker: train (resuming the run folder if it exists), register, activate.

Progress (epochs done of folds × epochs, the last epoch's line) and a heartbeat are written to the row after
every epoch, so the admin and ``manage.py train_model`` can follow it from anywhere.
"""

import logging
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from inference.config import load_config
from inference.training import train
from readerstudy.predictions.models import TrainingRun
from readerstudy.predictions.registry import activate, register_run

log = logging.getLogger(__name__)

Status = TrainingRun.Status


def run_training(training_run_id: int, *, progress: bool = False) -> None:
    """Carry out the TrainingRun; a failure marks it failed with the error (the run folder stays, resumable)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=training_run_id)
        if run.status in (Status.DONE, Status.FAILED):
            return
        config = load_config(run.config_name)
        run.status, run.heartbeat = Status.RUNNING, timezone.now()
        run.save(update_fields=["status", "heartbeat"])

    def report(record: dict) -> None:
        done = (record["fold"] - 1) * config.training.epochs + record["epoch"]
        line = (
            f"fold {record['fold']} epoch {record['epoch']}: train loss {record['train_loss']:.3f}, "
            f"validation accuracy {record['val_accuracy_seven']:.2f}"
        )
        TrainingRun.objects.filter(pk=run.pk).update(epochs_done=done, message=line, heartbeat=timezone.now())

    try:
        run_dir = train(config, Path(run.data_dir), Path(run.run_dir), progress=progress, callback=report)
        version = register_run(run_dir, name=Path(run.run_dir).name)
    except Exception as exc:
        log.exception("training run %s failed", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=Status.FAILED, message=f"{type(exc).__name__}: {exc}"[:2000], finished=timezone.now()
        )
        return
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.DONE,
        model_version=version,
        epochs_done=run.epochs_total,
        finished=timezone.now(),
        message=f"registered as {version.name}",
    )
    if run.activate:
        activate(version)
