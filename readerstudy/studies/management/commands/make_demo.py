"""``python manage.py make_demo``: the demo cohort and demo accounts, created once.

Generates the synthetic phantom cohort (``inference.phantoms``) into
``var/<dataset>_dataset`` and imports it through the same importer as real data
when the dataset is not in the database yet; creates the demo accounts of
``fixtures/demo_accounts.json`` with random passwords kept in
``var/demo_credentials.json``; prints the credentials. Safe to run again.
"""

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from inference.phantoms import make_cohort
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Case
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Reader

ACCOUNTS_FILE = settings.BASE_DIR / "fixtures" / "demo_accounts.json"
ADMIN_APPS = ("cases", "studies", "predictions", "audit")


class Command(BaseCommand):
    help = "Create and import the demo phantom cohort and the demo accounts (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--evaluation", action="store_true", help="also make the evaluation cohort: 50 lesions per class, seed 1"
        )
        parser.add_argument("--lesions-per-class", type=int, default=20)
        parser.add_argument(
            "--matrix-scale", type=float, default=1.0, help="shrink matrices (and grow voxels) for a quick, small demo"
        )

    def handle(self, evaluation: bool, lesions_per_class: int, matrix_scale: float, **options):
        self.cohort("demo", lesions_per_class=lesions_per_class, seed=0, matrix_scale=matrix_scale)
        if evaluation:
            self.cohort("evaluation", lesions_per_class=50, seed=1, matrix_scale=matrix_scale)
        credentials = self.accounts()
        self.stdout.write(self.style.SUCCESS("Demo accounts (username / password):"))
        for username, password in credentials.items():
            self.stdout.write(f"  {username:<12} {password}")

    def cohort(self, dataset: str, **params) -> None:
        if Case.objects.filter(dataset=dataset).exists():
            self.stdout.write(f"Dataset {dataset!r} already imported.")
            return
        folder = Path(settings.VAR_DIR) / f"{dataset}_dataset"
        if not (folder / "manifest.csv").exists():
            self.stdout.write(f"Generating the {dataset} phantom cohort in {folder} …")
            make_cohort(folder, progress=True, **params)
        report = import_dataset(folder, dataset=dataset, progress=True)
        self.stdout.write(report.summary())
        if report.rejected:
            raise CommandError(f"the {dataset} cohort did not import cleanly")

    @transaction.atomic
    def accounts(self) -> dict[str, str]:
        """Create missing demo users; return every demo username with its password."""
        path = Path(settings.VAR_DIR) / "demo_credentials.json"
        credentials = json.loads(path.read_text()) if path.exists() else {}
        admins, _ = Group.objects.get_or_create(name=STUDY_ADMINS_GROUP)
        admins.permissions.set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
        users = get_user_model().objects
        for account in json.loads(ACCOUNTS_FILE.read_text()):
            username = account["username"]
            if users.filter(username=username).exists() and username in credentials:
                continue
            credentials[username] = secrets.token_urlsafe(9)
            user, _ = users.get_or_create(username=username)
            user.first_name, user.last_name = account["first_name"], account["last_name"]
            user.set_password(credentials[username])
            if account.get("study_admin"):
                user.is_staff = True
                user.save()
                user.groups.add(admins)
            else:
                user.save()
                Reader.objects.update_or_create(
                    user=user, defaults={"group": account["group"], "years_of_experience": account["years"]}
                )
        path.write_text(json.dumps(credentials, indent=2))
        path.chmod(0o600)
        return credentials
