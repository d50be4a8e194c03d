"""``python manage.py register_model RUN_DIR [--name NAME] [--activate]``: register a trained run."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from readerstudy.predictions.registry import RegistrationError, activate, register_run


class Command(BaseCommand):
    help = (
        "Verify a trained run folder (every file against manifest.json), copy it into the media store and "
        "register it as a model version."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_dir", type=Path)
        parser.add_argument("--name", help="version name (default: the folder name)")
        parser.add_argument(
            "--activate",
            action="store_true",
            dest="make_active",
            help="make it the active version and predict every lesion with it",
        )

    def handle(self, run_dir: Path, name: str | None, make_active: bool, **options):
        try:
            version = register_run(run_dir, name=name)
        except RegistrationError as exc:
            raise CommandError(f"refused: {exc}") from None
        self.stdout.write(f"registered {version.name}: {len(version.checkpoints_sha256)} checkpoints verified")
        if make_active:
            self.stdout.write(f"activated {version.name}; {activate(version)} prediction(s) queued")
