"""Computing predictions inside a worker process (or the web process, in eager mode).

For each row id: claim it, load the lesion's seven volumes and masks from the media store, preprocess, run the
five-fold ensemble with saliency (``inference.saliency.compute_saliency`` with the version's saliency settings:
its first forward per fold gives the averaged probabilities too, so a separate batched forward would only repeat
work), write the heat maps and the panel, then commit the outputs and the Saliency rows in one transaction.

Claiming: ``UPDATE … SET status = running, attempts = attempts + 1 WHERE status = queued OR (status = running
AND started_at < now − lease)``; only the claim with the latest attempt number may commit. A message
redelivered after its worker died finds the row running with an expired lease and takes it over; a duplicate
message finds it done (or freshly claimed) and does nothing. Files go to ``saliency/<storage_key>/<attempt>/``
so that a dead attempt's leftovers never mix with the committed ones; they are removed after the commit.

A lesion that fails (unreadable file, bad geometry) marks its row failed with the error and the batch goes
on. After PREDICTION_MAX_ATTEMPTS claims (workers lost mid-task) the row is failed instead of retried.
"""

import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from inference.domain import SEQUENCES
from inference.nifti import load_volume
from inference.prediction import MALIGNANT_THRESHOLD, Ensemble
from inference.preprocess import preprocess_lesion
from inference.saliency import compute_saliency, save_saliency
from readerstudy.cases.models import Lesion
from readerstudy.predictions.models import ModelVersion, Prediction, Saliency

log = logging.getLogger(__name__)

Status = Prediction.Status


def ensemble_of(version: ModelVersion) -> Ensemble:
    """The version's fold models, loaded once per process (GPU when visible, else CPU) after checking that the
    media store holds exactly the registered files; cached by folder and file hashes."""
    return _load(str(version.folder), json.dumps(version.files_sha256, sort_keys=True), version.name)


@functools.lru_cache(maxsize=2)
def _load(folder: str, files_json: str, name: str) -> Ensemble:
    ensemble = Ensemble.load(Path(folder), expected=json.loads(files_json))
    log.info("loaded model %s on %s (pid %d)", name, ensemble.device, os.getpid())
    return ensemble


def claim(prediction_id: int) -> int | None:
    """Claim the row for this process; returns the attempt number, or None if it is done, failed or held by
    a live claim."""
    now = timezone.now()
    expired = now - timedelta(seconds=settings.PREDICTION_LEASE_SECONDS)
    claimed = (
        Prediction.objects.filter(pk=prediction_id)
        .filter(Q(status=Status.QUEUED) | Q(status=Status.RUNNING, started_at__lt=expired))
        .update(
            status=Status.RUNNING,
            started_at=now,
            attempts=F("attempts") + 1,
            error="",
            worker=_worker_name(),
        )
    )
    return Prediction.objects.values_list("attempts", flat=True).get(pk=prediction_id) if claimed else None


def _worker_name(device: object = None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}" + (f" ({device})" if device is not None else "")


def run_batch(prediction_ids: list[int]) -> dict[str, int]:
    """Compute each claimable prediction of the batch; returns counts of done, failed and skipped rows."""
    counts = {"done": 0, "failed": 0, "skipped": 0}
    for prediction_id in prediction_ids:
        attempt = claim(prediction_id)
        if attempt is None:
            counts["skipped"] += 1
            continue
        if attempt > settings.PREDICTION_MAX_ATTEMPTS:
            _fail(prediction_id, attempt, f"gave up after {attempt - 1} attempts: the worker was lost each time")
            counts["failed"] += 1
            continue
        try:
            _compute(prediction_id, attempt)
        except Exception as exc:  # one bad lesion must not block the queue
            log.exception("prediction %s failed", prediction_id)
            _fail(prediction_id, attempt, f"{type(exc).__name__}: {exc}")
            counts["failed"] += 1
        else:
            counts["done"] += 1
    return counts


def _fail(prediction_id: int, attempt: int, error: str) -> None:
    Prediction.objects.filter(pk=prediction_id, status=Status.RUNNING, attempts=attempt).update(
        status=Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )


def lesion_images(lesion: Lesion) -> tuple[dict, dict]:
    """({sequence: Volume}, {sequence: mask Volume}) of ``lesion`` from the media store."""
    media = Path(settings.MEDIA_ROOT)
    volumes = {
        v.sequence: load_volume(media / v.file.name, label=f"{v.sequence} volume") for v in lesion.case.volumes.all()
    }
    masks = {m.sequence: load_volume(media / m.file.name, label=f"{m.sequence} mask") for m in lesion.masks.all()}
    missing = [s for s in SEQUENCES if s not in volumes or s not in masks]
    if missing:
        raise ValueError(f"lesion {lesion.public_id}: no volume or mask for {', '.join(missing)}")
    return volumes, masks


def _compute(prediction_id: int, attempt: int) -> None:
    prediction = Prediction.objects.select_related("model_version", "lesion__case").get(pk=prediction_id)
    version = prediction.model_version
    ensemble = ensemble_of(version)
    started = time.perf_counter()
    volumes, masks = lesion_images(prediction.lesion)
    size = ensemble.config.model.input_size
    patch = preprocess_lesion(volumes, masks, prediction.lesion.diameter_mm, size=size)
    prepared = time.perf_counter()
    saliency = compute_saliency(ensemble.models, patch, volumes, masks, ensemble.config.saliency)
    computed = time.perf_counter()

    relative = Path("saliency") / prediction.storage_key / str(attempt)
    folder = Path(settings.MEDIA_ROOT) / relative
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".partial-") as scratch:
        save_saliency(saliency, volumes, Path(scratch) / "files")
        os.replace(Path(scratch) / "files", folder)
    probabilities = [float(p) for p in saliency.probabilities]
    with transaction.atomic():
        mine = Prediction.objects.select_for_update().filter(pk=prediction_id, status=Status.RUNNING, attempts=attempt)
        if not mine.exists():
            log.warning("prediction %s was taken over by another claim; attempt %d discarded", prediction_id, attempt)
            shutil.rmtree(folder, ignore_errors=True)
            return
        Saliency.objects.bulk_create(
            Saliency(
                prediction_id=prediction_id,
                sequence=s.sequence,
                heatmap=str(relative / f"{s.sequence}.nii.gz"),
                weight=min(1.0, max(0.0, s.weight)),
                max_area_slice=s.max_area_slice,
            )
            for s in saliency.sequences
        )
        mine.update(
            status=Status.DONE,
            probabilities=probabilities,
            predicted_class=saliency.predicted_class,
            malignant_probability=float(saliency.binary_probabilities[1]),
            predicted_malignant=bool(saliency.binary_probabilities[1] >= MALIGNANT_THRESHOLD),
            checkpoints_sha256=version.checkpoints_sha256,
            panel=str(relative / "panel.png"),
            finished_at=timezone.now(),
            preprocess_seconds=round(prepared - started, 3),
            model_seconds=round(computed - prepared, 3),
            worker=_worker_name(ensemble.device),
        )
    for other in folder.parent.iterdir():  # leftovers of attempts whose worker died
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)
