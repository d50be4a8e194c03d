"""``python manage.py import_study FILE [--override-reason TEXT]``: restore a reader study from an archive made
by ``export_study``; a blinding overlap with this database's studies (``overlap``) is refused unless a reason
is given."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from readerstudy.studies.archive import ArchiveError, import_study


class Command(BaseCommand):
    help = (
        "Restore a reader study from an export_study archive into a database that holds its cases and model "
        "version; all or nothing. New users get no usable password (they reset it). A study whose readers would "
        "meet lesions whose model output or reference they were shown in another study, or that another open "
        "study shares while one of the two reveals them, is refused unless --override-reason is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the archive written by export_study")
        parser.add_argument(
            "--override-reason", default="", help="restore despite a blinding overlap, for this reason (audited)"
        )

    def handle(self, file: Path, override_reason: str, **options):
        try:
            study = import_study(file, override_reason)
        except ArchiveError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"restored study {study.name!r} ({study.public_id}) from {file}: "
            f"{study.assignments.count()} readers, {study.lesions.count()} lesions"
        )
