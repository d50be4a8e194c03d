"""``python manage.py export_study STUDY --output FILE``: archive a whole reader study in one file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from readerstudy.studies.archive import ArchiveError, export_study
from readerstudy.studies.models import ReaderStudy


class Command(BaseCommand):
    help = (
        "Write a reader study (lesion references, readers, assignments, presentations, disclosures, reads and the "
        "predictions shown) to one archive file, for backup; import_study restores it."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="the study's public id or name")
        parser.add_argument("--output", type=Path, required=True, help="the archive to write (a new .zip file)")

    def handle(self, study: str, output: Path, **options):
        found = ReaderStudy.objects.filter(Q(public_id=study) | Q(name=study)).first()
        if found is None:
            raise CommandError(f"no study with public id or name {study!r}")
        try:
            digest = export_study(found, output)
        except ArchiveError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"wrote {output}: study {found.name!r} ({found.public_id}), payload SHA-256 {digest}")
