"""What the viewer gets for a lesion in a study: the served files and the descriptor that names them.

URLs carry only opaque ids (the study's and the lesion's random public ids) and the sequence name; file
contents go through ``readerstudy.cases.serving`` (one transform for image, mask and heat map).
"""

from django.urls import reverse

from inference.domain import SEQUENCES
from readerstudy.cases.models import Lesion, LesionMask, SequenceVolume
from readerstudy.cases.serving import ServedFile, served
from readerstudy.predictions.models import Prediction, Saliency
from readerstudy.studies.models import ReaderStudy

KINDS = ("image", "mask", "heat")


def volume_url(study: ReaderStudy, lesion: Lesion, sequence: str, kind: str) -> str:
    return reverse("studies:volume", args=[study.public_id, lesion.public_id, sequence, kind])


def served_file(study: ReaderStudy, lesion: Lesion, sequence: str, kind: str,
                prediction: Prediction | None = None) -> ServedFile | None:  # fmt: skip
    """The served ``kind`` file of ``sequence`` of ``lesion`` (None when there is no such file, e.g. a heat
    map of an unfinished prediction). Every kind is cropped around the sequence's own lesion centre."""
    mask = LesionMask.objects.get(lesion=lesion, sequence=sequence)
    fov = study.field_of_view_mm
    if kind == "image":
        volume = SequenceVolume.objects.get(case_id=lesion.case_id, sequence=sequence)
        return served(volume.file.path, volume.sha256, mask.centroid_mm, fov, kind)
    if kind == "mask":
        return served(mask.file.path, mask.sha256, mask.centroid_mm, fov, kind)
    saliency = Saliency.objects.filter(prediction=prediction, sequence=sequence).first() if prediction else None
    if saliency is None:
        return None
    return served(saliency.heatmap.path, f"{prediction.storage_key}/{saliency.heatmap.name}",
                  mask.centroid_mm, fov, kind)  # fmt: skip


def descriptor(study: ReaderStudy, lesion: Lesion) -> dict:
    """The viewer's input: per sequence, in SEQUENCES order, the image and mask URLs, the lesion focus
    (LPS mm: centroid of the slice of largest lesion area) and the initial window [lower, upper]."""
    sequences = []
    for sequence in SEQUENCES:
        image = served_file(study, lesion, sequence, "image")
        mask = served_file(study, lesion, sequence, "mask")
        sequences.append({
            "name": sequence,
            "image": volume_url(study, lesion, sequence, "image"),
            "mask": volume_url(study, lesion, sequence, "mask"),
            "focus": mask.meta["focus"],
            "window": image.meta["window"],
        })  # fmt: skip
    return {"lesion": lesion.public_id, "sequences": sequences}
