"""``python manage.py import_dataset DIR [--dataset NAME]``: import a dataset folder."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.manifest import ManifestError
from readerstudy.cases.importer import InvalidDatasetName, StorageFailed, import_dataset


class Command(BaseCommand):
    help = "Import a dataset folder (manifest.csv + one folder per case); see README 'Dataset layout'."

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument("--dataset", help="name of the dataset (default: the folder name)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, directory: Path, dataset: str | None, no_progress: bool, **options):
        if not directory.is_dir():
            raise CommandError(f"{directory}: not a directory")
        try:
            report = import_dataset(directory, dataset=dataset, progress=not no_progress)
        except (InvalidDatasetName, ManifestError, StorageFailed) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.summary())
        if report.rejected:
            raise CommandError(f"{len(report.rejected)} case(s) rejected; nothing of them was stored")
