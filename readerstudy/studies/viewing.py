"""What the viewer gets for a lesion in a study: the served files and the descriptor that names them.

URLs carry only opaque ids (the study's random public id, the lesion's id in that study) and the sequence
name; file contents go through ``readerstudy.cases.serving`` (one transform for image, mask and heat map).
"""

from django.urls import reverse

from inference.domain import SEQUENCES
from readerstudy.cases.models import Lesion, LesionMask, SequenceVolume
from readerstudy.cases.serving import ServedFile, served
from readerstudy.predictions.models import Prediction, Saliency
from readerstudy.studies.identifiers import study_lesion_id
from readerstudy.studies.models import ReaderStudy

KINDS = ("image", "mask", "heat")


def volume_url(study: ReaderStudy, lesion: Lesion, sequence: str, kind: str) -> str:
    return reverse("studies:volume", args=[study.public_id, study_lesion_id(study, lesion), sequence, kind])


def served_file(
    study: ReaderStudy, lesion: Lesion, sequence: str, kind: str, prediction: Prediction | None = None
) -> ServedFile | None:
    """The served ``kind`` file of ``sequence`` of ``lesion`` (None when there is no such file, e.g. a heat
    map of an unfinished prediction)."""
    mask = LesionMask.objects.get(lesion=lesion, sequence=sequence)
    if kind == "image":
        return served_image(study, SequenceVolume.objects.get(case_id=lesion.case_id, sequence=sequence), mask)
    if kind == "mask":
        return served_mask(study, mask)
    saliency = Saliency.objects.filter(prediction=prediction, sequence=sequence).first() if prediction else None
    if saliency is None:
        return None
    return served(
        saliency.heatmap.path,
        f"{prediction.storage_key}/{saliency.heatmap.name}",
        mask.centroid_mm,
        study.field_of_view_mm,
        "heat",
    )


def served_image(study: ReaderStudy, volume: SequenceVolume, mask: LesionMask) -> ServedFile:
    """The served image, cropped around the sequence's own lesion centre (the sequences are not co-registered)."""
    return served(volume.file.path, volume.sha256, mask.centroid_mm, study.field_of_view_mm, "image")


def served_mask(study: ReaderStudy, mask: LesionMask) -> ServedFile:
    """The served mask, on its image's served grid."""
    return served(mask.file.path, mask.sha256, mask.centroid_mm, study.field_of_view_mm, "mask")


def descriptor(study: ReaderStudy, lesion: Lesion) -> dict:
    """The viewer's input: per sequence, in SEQUENCES order, the image and mask URLs, the lesion focus
    (LPS mm: centroid of the slice of largest lesion area) and the initial window [lower, upper]."""
    masks = {m.sequence: m for m in lesion.masks.all()}
    volumes = {v.sequence: v for v in SequenceVolume.objects.filter(case_id=lesion.case_id)}
    sequences = []
    for sequence in SEQUENCES:
        image, mask = served_image(study, volumes[sequence], masks[sequence]), served_mask(study, masks[sequence])
        sequences.append(
            {
                "name": sequence,
                "image": volume_url(study, lesion, sequence, "image"),
                "mask": volume_url(study, lesion, sequence, "mask"),
                "focus": mask.meta["focus"],
                "window": image.meta["window"],
            }
        )
    return {"lesion": study_lesion_id(study, lesion), "sequences": sequences}
