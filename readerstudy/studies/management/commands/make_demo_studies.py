"""``python manage.py make_demo_studies``: the demo reader studies on the demo cohort's test split.

Run after ``make_demo`` and after a model version is active (``make run`` does both first), so that the
studies pin it. Creates, once each, with every demo reader assigned in their own group: a study with the
model's output and saliency after each read, a sequential AI-assisted study, and a practice study that also
shows the reference diagnosis; and a closed, clearly labelled study whose reads are simulated from reader
profiles (``readerstudy.studies.simulation``) for the dashboards. Safe to run again.
"""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from readerstudy.cases.models import Lesion
from readerstudy.predictions.models import ModelVersion
from readerstudy.studies.management.commands.make_demo import ACCOUNTS_FILE
from readerstudy.studies.models import Assignment, Design, Feedback, Reader, ReaderStudy
from readerstudy.studies.simulation import simulate_reads

FIELD_OF_VIEW_MM = 120.0
DEMO_STUDIES = (
    {"name": "Demo: unaided reading with model feedback", "design": Design.UNAIDED, "feedback": Feedback.MODEL,
     "instructions": "Read each lesion; after each locked read you see the model's output and saliency maps."},
    {"name": "Demo: sequential AI-assisted reading", "design": Design.SEQUENTIAL, "feedback": Feedback.NONE,
     "instructions": "Give your read, then see the model's output and read the lesion again."},
    {"name": "Demo: practice with the reference diagnosis", "design": Design.UNAIDED,
     "feedback": Feedback.REFERENCE, "practice": True, "allow_revisit": True,
     "instructions": "Practice: after each read you see the model's output and the reference diagnosis."},
)  # fmt: skip
SIMULATED_STUDY = {
    "name": "Demo (simulated reads): sequential AI-assisted", "design": Design.SEQUENTIAL, "is_open": False,
    "instructions": "Not for reading: its reads are simulated from reader profiles, for the dashboards.",
}  # fmt: skip


class Command(BaseCommand):
    help = "Create the demo reader studies on the demo cohort's test split (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default="demo")

    @transaction.atomic
    def handle(self, dataset: str, **options):
        lesions = Lesion.objects.filter(case__dataset=dataset, split="test")
        if not lesions.exists():
            raise CommandError(f"no test-split lesions of dataset {dataset!r}: run make_demo first")
        if not ModelVersion.objects.filter(is_active=True).exists():
            raise CommandError("no active model version: train or register one first (make run does)")
        owner = get_user_model().objects.filter(username="studyadmin").first()
        accounts = json.loads(ACCOUNTS_FILE.read_text())
        readers = Reader.objects.filter(user__username__in=[a["username"] for a in accounts if "group" in a])
        for spec in (*DEMO_STUDIES, SIMULATED_STUDY):
            study, created = ReaderStudy.objects.get_or_create(
                name=spec["name"], defaults={**spec, "owner": owner, "field_of_view_mm": FIELD_OF_VIEW_MM}
            )
            if created:
                study.lesions.set(lesions)
            for reader in readers:
                Assignment.assign(study, reader)
            if spec is SIMULATED_STUDY:
                simulate_reads(study)
            self.stdout.write(f"{study.name}: {study.lesions.count()} lesions, {study.assignments.count()} readers")
