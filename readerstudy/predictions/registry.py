"""Registering a trained run as a ModelVersion, and activating a version.

Registration verifies the run's manifest (every file against its SHA-256), copies the folder into the media
store (``MEDIA_ROOT/models/<name>/``, so that every worker sharing the store sees the same bytes) and verifies
the copy again before the row is created. Activation makes a version the one used for new predictions and
queues a prediction for every lesion that has none under it.
"""

import json
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from inference.runs import verify_run
from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import record
from readerstudy.predictions.dispatch import enqueue_predictions
from readerstudy.predictions.models import ModelVersion

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistrationError(ValueError):
    """A run that cannot be registered; the message names the file or field and the problem."""


def register_run(run_dir: Path, *, name: str | None = None) -> ModelVersion:
    """Verify ``run_dir``, copy it into the media store and create its ModelVersion (inactive)."""
    run_dir = Path(run_dir)
    name = name or run_dir.resolve().name
    if not NAME.match(name):
        raise RegistrationError(f"name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    if ModelVersion.objects.filter(name=name).exists():
        raise RegistrationError(f"name {name!r}: a model version of that name is already registered")
    try:
        files = verify_run(run_dir)
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        folds = int(config["training"]["folds"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistrationError(str(exc)) from None
    missing = [f"fold-{k}.pt" for k in range(1, folds + 1) if f"fold-{k}.pt" not in files]
    if missing:
        raise RegistrationError(f"{run_dir}: incomplete run, {', '.join(missing)} not in manifest.json")
    same = ModelVersion.objects.filter(files_sha256=files).first()
    if same is not None:
        raise RegistrationError(f"{run_dir}: the same files are already registered as {same.name!r}")

    relative = Path("models") / name
    target = Path(settings.MEDIA_ROOT) / relative
    if target.exists():
        raise RegistrationError(f"{target}: already exists in the media store")
    partial = target.with_name(f".{name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        for file_name in [*files, "manifest.json"]:
            (partial / file_name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / file_name, partial / file_name)
        if verify_run(partial) != files:
            raise RegistrationError(f"{run_dir}: the copy in the media store differs from the run")
        partial.rename(target)
        return ModelVersion.objects.create(
            name=name, config=config, run_path=str(relative), files_sha256=files, metrics=metrics
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if target.exists() and not ModelVersion.objects.filter(name=name).exists():
            shutil.rmtree(target, ignore_errors=True)
        raise


def activate(version: ModelVersion) -> int:
    """Make ``version`` the active one and queue its missing predictions; returns how many were queued.

    Studies that pinned another version keep showing that version's predictions."""
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True
    record(
        AuditEvent.Action.MODEL_ACTIVATED,
        version,
        f"model version {version.name!r} activated",
        after={"name": version.name, "checkpoints_sha256": version.checkpoints_sha256},
    )
    return enqueue_predictions(version)
