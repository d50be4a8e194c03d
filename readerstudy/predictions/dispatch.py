"""Queueing predictions and training, and the sweep that re-sends what a broker outage or a lost worker
left behind.

A Prediction row is created (status queued) before any message is sent, one per (model version, lesion);
messages carry batches of row ids. If the broker cannot be reached the rows stay queued with the reason in
``error`` and nothing else fails: an import never depends on Redis. ``sweep`` re-sends queued rows whose
message may be lost, running rows whose worker's lease expired, and training runs whose worker went silent.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable
from tqdm import tqdm

from readerstudy.cases.models import Case, Lesion
from readerstudy.predictions.models import ModelVersion, Prediction, TrainingRun
from readerstudy.predictions.signals import lesions_needed_first
from readerstudy.predictions.tasks import predict_batch, train_model

log = logging.getLogger(__name__)

WAITING_FOR_BROKER = "not sent to a worker yet: the broker is unreachable ({}); the sweep re-sends it"


def enqueue_predictions(version: ModelVersion, lesions=None) -> int:
    """Create the missing Prediction rows of ``version`` for ``lesions`` (default: every lesion) and send
    them to the inference queue; returns how many rows were created."""
    lesions = Lesion.objects.all() if lesions is None else lesions
    have = Prediction.objects.filter(model_version=version).values_list("lesion_id", flat=True)
    new = [
        Prediction(model_version=version, lesion_id=pk)
        for pk in lesions.exclude(pk__in=have).values_list("pk", flat=True)
    ]
    Prediction.objects.bulk_create(new, ignore_conflicts=True)
    rows = Prediction.objects.filter(model_version=version, lesion__in=lesions, status=Prediction.Status.QUEUED)
    dispatch(needed_first(rows.filter(dispatched_at__isnull=True)))
    return len(new)


def needed_first(predictions) -> list[int]:
    """The primary keys of ``predictions`` ordered by when readers need their lesions
    (``signals.lesions_needed_first``), then by primary key."""
    wanted = [pk for _, pks in lesions_needed_first.send(sender=Prediction) for pk in pks or ()]
    rank: dict[int, int] = {}
    for position, lesion in enumerate(wanted):
        rank.setdefault(lesion, position)
    rows = predictions.order_by("pk").values_list("pk", "lesion_id")
    return [pk for pk, lesion in sorted(rows, key=lambda row: (rank.get(row[1], len(wanted)), row[0]))]


def predict_case(case: Case) -> int:
    """Queue the active version's predictions for the lesions of a newly imported ``case``."""
    version = ModelVersion.objects.filter(is_active=True).first()
    return 0 if version is None else enqueue_predictions(version, Lesion.objects.filter(case=case))


def dispatch(prediction_ids: list[int]) -> int:
    """Send ``prediction_ids`` in batches of PREDICTION_BATCH_SIZE; returns how many batches were sent. A batch
    the broker refuses stays queued with the reason (in eager mode the batch runs here and now)."""
    size, sent = settings.PREDICTION_BATCH_SIZE, 0
    eager = settings.CELERY_TASK_ALWAYS_EAGER and len(prediction_ids) > size  # show progress when it runs here
    starts = range(0, len(prediction_ids), size)
    for start in tqdm(starts, desc="predicting", unit="batch", disable=not eager):
        batch = prediction_ids[start : start + size]
        rows = Prediction.objects.filter(pk__in=batch, status=Prediction.Status.QUEUED)
        try:
            rows.update(dispatched_at=timezone.now(), error="")
            predict_batch.apply_async((batch,), retry=False)
        except BrokerUnreachable as exc:
            log.warning("prediction batch of %d not sent: %s", len(batch), exc)
            rows.update(dispatched_at=None, error=WAITING_FOR_BROKER.format(exc))
        else:
            sent += 1
    return sent


def dispatch_training(run: TrainingRun, *, progress: bool = False) -> bool:
    """Send ``run`` to the inference queue (eager: train here); False when the broker is unreachable."""
    try:
        train_model.apply_async((run.pk,), {"progress": progress}, retry=False)
    except BrokerUnreachable as exc:
        TrainingRun.objects.filter(pk=run.pk).update(message=WAITING_FOR_BROKER.format(exc))
        return False
    return True


def sweep() -> dict[str, int]:
    """Re-send what may have been lost: queued predictions never sent or sent longer than
    PREDICTION_RESEND_SECONDS ago, running ones whose lease (PREDICTION_LEASE_SECONDS) expired, and training
    runs queued or silent for TRAINING_STALE_SECONDS. Returns counts by kind."""
    now = timezone.now()
    resend = now - timedelta(seconds=settings.PREDICTION_RESEND_SECONDS)
    lease = now - timedelta(seconds=settings.PREDICTION_LEASE_SECONDS)
    stale = Prediction.objects.filter(
        Q(status=Prediction.Status.QUEUED, dispatched_at__isnull=True)
        | Q(status=Prediction.Status.QUEUED, dispatched_at__lt=resend)
        | Q(status=Prediction.Status.RUNNING, started_at__lt=lease)
    )
    ids = needed_first(stale)
    dispatch(ids)  # a running row with an expired lease is claimed again by the batch's worker
    silent = now - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    runs = TrainingRun.objects.filter(
        Q(status=TrainingRun.Status.QUEUED, created__lt=silent)
        | Q(status=TrainingRun.Status.RUNNING, heartbeat__lt=silent)
    )
    resumed = sum(dispatch_training(run) for run in runs)
    return {"predictions": len(ids), "training_runs": resumed}
