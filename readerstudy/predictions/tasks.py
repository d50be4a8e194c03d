"""Celery tasks: the only bridge between the app and the ``inference`` package.

Both model tasks are routed to the ``inference`` queue (settings.CELERY_TASK_ROUTES), away from the default
queue. Prediction batches are acknowledged late and rejected back to the broker when their worker dies, so
another worker redoes them; the rows' claim lease (``runner.claim``) makes the redelivery idempotent.
Training is acknowledged early: a lost training message is never redelivered blindly; the sweep re-sends a
silent run and ``inference.training.train`` resumes it from its last saved epoch.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def predict_batch(prediction_ids: list[int]) -> dict[str, int]:
    """Compute the predictions ``prediction_ids`` (those not already done or claimed by a live worker)."""
    from readerstudy.predictions.runner import run_batch  # torch and MONAI: the worker's, never the web's

    return run_batch(prediction_ids)


@shared_task(acks_late=False)
def train_model(training_run_id: int, progress: bool = False) -> None:
    """Train, register and (if asked) activate the TrainingRun ``training_run_id``."""
    from readerstudy.predictions.training_job import run_training  # registry → dispatch → this module

    run_training(training_run_id, progress=progress)


@shared_task
def sweep_predictions() -> dict[str, int]:
    """Periodic (CELERY_BEAT_SCHEDULE): re-send predictions and training runs left behind."""
    from readerstudy.predictions.dispatch import sweep  # dispatch imports this module

    return sweep()
