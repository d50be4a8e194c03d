"""``python manage.py train_model --data DIR [--config cpu] [--name NAME] [--activate] [--unless-active]``."""

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inference.config import load_config
from readerstudy.predictions.dispatch import dispatch_training, enqueue_predictions
from readerstudy.predictions.models import ModelVersion, TrainingRun
from readerstudy.predictions.registry import NAME


class Command(BaseCommand):
    help = (
        "Train a config on a dataset folder (import layout) as a task on the inference worker, register the run "
        "as a model version and optionally activate it. Shows the progress until the run ends."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, required=True, help="dataset folder the worker can read")
        parser.add_argument("--config", default="cpu", help="config name (cpu, paper) or path to a config JSON")
        parser.add_argument("--name", help="model version name (default: <config>-<date>-<time>)")
        parser.add_argument("--activate", action="store_true", help="activate the new version and predict with it")
        parser.add_argument(
            "--unless-active",
            action="store_true",
            help="if a version is already active, only queue its missing predictions",
        )
        parser.add_argument("--no-wait", action="store_true", help="queue the training and return")

    def handle(
        self,
        data: Path,
        config: str,
        name: str | None,
        activate: bool,
        unless_active: bool,
        no_wait: bool,
        verbosity: int,
        **options,
    ):
        active = ModelVersion.objects.filter(is_active=True).first()
        if unless_active and active is not None:
            queued = enqueue_predictions(active)
            self.stdout.write(f"{active.name} is active; {queued} missing prediction(s) queued")
            return
        if not (data / "manifest.csv").is_file():
            raise CommandError(f"--data {data}: no manifest.csv (not a dataset folder)")
        try:
            loaded = load_config(config)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--config {config}: {exc}") from None
        name = name or f"{loaded.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not NAME.match(name) or ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"--name {name}: not a valid new version name")
        run = TrainingRun.objects.create(
            config_name=config,
            data_dir=str(data.resolve()),
            activate=activate,
            run_dir=str(Path(settings.MEDIA_ROOT) / "training" / name),
            epochs_total=loaded.training.folds * loaded.training.epochs,
        )
        eager = settings.CELERY_TASK_ALWAYS_EAGER
        self.stdout.write(f"training run {run.pk}: {name} ({'in this process' if eager else 'on the worker'})")
        if not dispatch_training(run, progress=eager and verbosity > 0):
            run.refresh_from_db()
            raise CommandError(f"training run {run.pk} queued but not sent: {run.message}")
        if not no_wait:
            run = self.follow(run, show=verbosity > 0 and not eager)
            if run.status == TrainingRun.Status.FAILED:
                raise CommandError(f"training run {run.pk} failed: {run.message}")
            self.stdout.write(f"training run {run.pk}: {run.message}")

    def follow(self, run: TrainingRun, show: bool) -> TrainingRun:
        """Poll the row until the run is done or failed, with a progress bar of epochs."""
        with tqdm(total=run.epochs_total, desc="training", unit="epoch", disable=not show) as bar:
            while True:
                run.refresh_from_db()
                bar.update(run.epochs_done - bar.n)
                bar.set_postfix_str(run.message[-60:])
                if run.status in (TrainingRun.Status.DONE, TrainingRun.Status.FAILED):
                    return run
                time.sleep(2)
