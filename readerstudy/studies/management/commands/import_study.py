"""``python manage.py import_study FILE``: restore a reader study from an archive made by ``export_study``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from readerstudy.studies.archive import ArchiveError, import_study


class Command(BaseCommand):
    help = (
        "Restore a reader study from an export_study archive into a database that holds its cases and model "
        "version; all or nothing. New users get no usable password (they reset it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the archive written by export_study")

    def handle(self, file: Path, **options):
        try:
            study = import_study(file)
        except ArchiveError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"restored study {study.name!r} ({study.public_id}) from {file}: "
                          f"{study.assignments.count()} readers, {study.lesions.count()} lesions")  # fmt: skip
