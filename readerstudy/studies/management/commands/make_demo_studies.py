"""``python manage.py make_demo_studies``: the demo reader studies on the demo cohort's test split.

Run after ``make_demo`` and after a model version is active (``make run`` does both first), so that the
studies pin it. Creates, once each, with every demo reader assigned in their own group, three open studies on
disjoint sets of test-split lesions, so that no reader meets a lesion unread in one study whose model output or
reference diagnosis another has shown them: a study with the model's output and saliency after each read, a
sequential AI-assisted study, and a practice study that also shows the reference diagnosis.

The split (``split_lesions``): the test-split lesions sorted by class, then case and lesion name (the dataset's
own names, the same in every import, unlike the random public ids), dealt in turn by the cycle ``DEAL``:
sequential, feedback, sequential, practice. So each class goes about half to the sequential study (the one the
AI-effect analysis reads) and a quarter to each of the others, and a class with four or more test lesions is
in all three: the demo cohort's 28 test lesions (4 per class) give 14 / 7 / 7. Never the development split,
which the model was trained on.

Also a closed, clearly labelled study on all the test-split lesions whose reads are simulated from reader
profiles (``readerstudy.studies.simulation``) for the dashboards; simulated reads record no Disclosure, as no
reader was shown anything. Safe to run again: existing studies keep their lesions and assignments.
"""

import json
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from readerstudy.cases.models import Lesion
from readerstudy.predictions.models import ModelVersion
from readerstudy.studies.management.commands.make_demo import ACCOUNTS_FILE
from readerstudy.studies.models import Design, Feedback, Reader, ReaderStudy
from readerstudy.studies.overlap import OverlapRefused, assign_readers, conflicts
from readerstudy.studies.simulation import simulate_reads

FIELD_OF_VIEW_MM = 120.0
DEMO_STUDIES = {
    "feedback": {
        "name": "Demo: unaided reading with model feedback",
        "design": Design.UNAIDED,
        "feedback": Feedback.MODEL,
        "instructions": "Read each lesion; after each locked read you see the model's output and saliency maps.",
    },
    "sequential": {
        "name": "Demo: sequential AI-assisted reading",
        "design": Design.SEQUENTIAL,
        "feedback": Feedback.NONE,
        "instructions": "Give your read, then see the model's output and read the lesion again.",
    },
    "practice": {
        "name": "Demo: practice with the reference diagnosis",
        "design": Design.UNAIDED,
        "feedback": Feedback.REFERENCE,
        "practice": True,
        "allow_revisit": True,
        "instructions": "Practice: after each read you see the model's output and the reference diagnosis.",
    },
}
DEAL = ("sequential", "feedback", "sequential", "practice")
"""The open demo study each lesion goes to, in turn, down the sorted test split."""
SIMULATED_STUDY = {
    "name": "Demo (simulated reads): sequential AI-assisted",
    "design": Design.SEQUENTIAL,
    "is_open": False,
    "instructions": "Not for reading: its reads are simulated from reader profiles, for the dashboards.",
}


def split_lesions(lesions: Iterable[Lesion]) -> dict[str, list[Lesion]]:
    """``lesions`` dealt by ``DEAL`` in (class, case name, lesion name) order: disjoint lists per DEMO_STUDIES key."""
    ordered = sorted(lesions, key=lambda lesion: (lesion.label, lesion.case.source_name, lesion.source_name))
    shares: dict[str, list[Lesion]] = {key: [] for key in DEMO_STUDIES}
    for n, lesion in enumerate(ordered):
        shares[DEAL[n % len(DEAL)]].append(lesion)
    return shares


class Command(BaseCommand):
    help = "Create the demo reader studies on disjoint parts of the demo cohort's test split (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default="demo")

    @transaction.atomic
    def handle(self, dataset: str, **options):
        lesions = list(Lesion.objects.filter(case__dataset=dataset, split="test").select_related("case"))
        if not lesions:
            raise CommandError(f"no test-split lesions of dataset {dataset!r}: run make_demo first")
        shares = split_lesions(lesions)
        if not all(shares.values()):
            raise CommandError(
                f"{len(lesions)} test-split lesions of dataset {dataset!r} are too few for three "
                f"disjoint demo studies: {len(DEAL)} at least"
            )
        if not ModelVersion.objects.filter(is_active=True).exists():
            raise CommandError("no active model version: train or register one first (make run does)")
        owner = get_user_model().objects.filter(username="studyadmin").first()
        accounts = json.loads(ACCOUNTS_FILE.read_text())
        readers = Reader.objects.filter(user__username__in=[a["username"] for a in accounts if "group" in a])
        plan = [(spec, shares[key]) for key, spec in DEMO_STUDIES.items()] + [(SIMULATED_STUDY, lesions)]
        for spec, share in plan:
            study, created = ReaderStudy.objects.get_or_create(
                name=spec["name"], defaults={**spec, "owner": owner, "field_of_view_mm": FIELD_OF_VIEW_MM}
            )
            if created:
                study.lesions.set(share)
            try:  # through the set-up guard: the demo builds no overlap
                assign_readers(study, readers.exclude(assignments__study=study))
            except OverlapRefused as refused:
                raise CommandError("\n".join(refused.messages)) from None
            if not created and conflicts(study):
                self.stderr.write(
                    f"{study.name} shares lesions with another demo study (made by an earlier version); "
                    "the blinding rules hold back what would leak; delete var/ to rebuild the demo."
                )
            if spec is SIMULATED_STUDY:
                simulate_reads(study)
            self.stdout.write(f"{study.name}: {study.lesions.count()} lesions, {study.assignments.count()} readers")
