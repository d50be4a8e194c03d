"""Simulated reads from reader profiles, so that a demo's dashboards have something to show on first start.

Each simulated reader reads every lesion of a sequential AI-assisted study in their own order. Unaided,
they are right with their group's accuracy (the paper's: residents 68 %, general radiologists 74 %,
academic radiologists 86 %) and otherwise pick one of the six other classes at random. Aided, a wrong
unaided read becomes right with probability ``ADOPT`` when the model is right, and a right one becomes the
model's wrong class with probability ``MISLEAD`` when the model is wrong. Malignancy likelihood: 75 ± 15 %
for a malignant diagnosis, 20 ± 15 % for a benign one (clipped to 0-100); confidence 2-5; 20-120 s a read.
Seeded: the same study and readers give the same reads.
"""

from datetime import timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from inference.domain import CLASSES, is_malignant
from readerstudy.predictions.models import Prediction
from readerstudy.studies.models import Phase, Read, ReaderStudy
from readerstudy.studies.workflow import tasks

ACCURACY = {"resident": 0.68, "general": 0.74, "academic": 0.86}
ADOPT, MISLEAD = 0.5, 0.15


@transaction.atomic
def simulate_reads(study: ReaderStudy, seed: int = 0) -> int:
    """Fill every assigned reader's missing reads of ``study`` (sequential design); returns reads made."""
    made = 0
    start = timezone.now() - timedelta(days=7)
    lesions = {lesion.pk: lesion for lesion in study.lesions.all()}
    done_predictions = Prediction.objects.filter(model_version_id=study.model_version_id, status=Prediction.Status.DONE)
    predictions = {p.lesion_id: p for p in done_predictions.filter(lesion__in=lesions.values())}
    for n, assignment in enumerate(study.assignments.order_by("id")):
        rng = np.random.default_rng([seed, n])
        done = set(assignment.reads.values_list("lesion_id", "phase"))
        clock = start
        unaided: dict[int, int] = {}
        for task in tasks(assignment):
            lesion, prediction = lesions[task.lesion_id], predictions.get(task.lesion_id)
            model_class = prediction.predicted_class if prediction else None
            if task.phase == Phase.UNAIDED:
                right = rng.random() < ACCURACY[assignment.group]
                diagnosis = lesion.label if right else _other(rng, lesion.label)
                unaided[lesion.pk] = diagnosis
            else:
                diagnosis = _aided(rng, unaided[lesion.pk], lesion.label, model_class)
            shown = clock
            clock += timedelta(seconds=float(rng.uniform(20, 120)))
            if (lesion.pk, task.phase) in done:
                continue
            likelihood = rng.normal(75 if is_malignant(diagnosis) else 20, 15)
            read = Read(
                assignment=assignment,
                lesion=lesion,
                phase=task.phase,
                session=task.session,
                diagnosis=diagnosis,
                confidence=int(rng.integers(2, 6)),
                malignancy=int(np.clip(round(likelihood), 0, 100)),
                shown_at=shown,
                prediction_shown=prediction if task.phase == Phase.AIDED else None,
            )
            read.save()
            Read.objects.filter(pk=read.pk).update(submitted_at=clock)  # simulated time, not now
            made += 1
    return made


def _other(rng, label: int) -> int:
    return int(rng.choice([c for c in range(len(CLASSES)) if c != label]))


def _aided(rng, unaided: int, label: int, model_class: int | None) -> int:
    if model_class is None:
        return unaided
    if unaided != label and model_class == label and rng.random() < ADOPT:
        return label
    if unaided == label and model_class != label and rng.random() < MISLEAD:
        return model_class
    return unaided
