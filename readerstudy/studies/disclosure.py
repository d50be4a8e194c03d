"""Showing model output (and, in practice studies, the reference) to a reader, and recording that it was.

``disclose`` builds what ``blinding.revealable`` allows for one lesion and writes a Disclosure row naming
the prediction shown (so the model version and checkpoint hashes), the reader and the time. A prediction
that is queued, running or failed is disclosed as its status only.
"""

from inference.domain import CLASS_TITLES, CLASSES, SEQUENCES
from readerstudy.cases.models import Lesion
from readerstudy.studies.blinding import MODEL, REFERENCE, SALIENCY
from readerstudy.studies.models import Assignment, Disclosure
from readerstudy.studies.viewing import volume_url

STATUS_TEXT = {
    "queued": "The model's output for this lesion is not ready yet (queued).",
    "running": "The model is computing its output for this lesion now.",
    "failed": "The model could not produce an output for this lesion.",
    "none": "This study shows no model output.",
}


def disclose(assignment: Assignment, lesion: Lesion, allowed: frozenset[str], purpose: str) -> tuple[dict, Disclosure]:
    """The payload of what ``allowed`` reveals about ``lesion``, and the Disclosure that records it."""
    study = assignment.study
    payload: dict = {"lesion": lesion.public_id, "purpose": purpose, "revealed": sorted(allowed)}
    prediction = study.prediction_for(lesion) if MODEL in allowed else None
    shown = None
    if MODEL in allowed:
        status = prediction.status if prediction else "none"
        payload["model"] = {"status": status}
        if status == "done":
            shown = prediction
            payload["model"] |= {
                "version": study.model_version.name,
                "probabilities": [
                    {"class": c, "title": CLASS_TITLES[c], "probability": p}
                    for c, p in zip(CLASSES, prediction.probabilities, strict=True)
                ],  # fmt: skip
                "predicted_class": CLASSES[prediction.predicted_class],
                "malignant_probability": prediction.malignant_probability,
                "predicted_malignant": prediction.predicted_malignant,
            }
            if SALIENCY in allowed:
                saliencies = {s.sequence: s for s in prediction.saliencies.all()}
                payload["model"]["saliency"] = [
                    {
                        "sequence": seq,
                        "weight": saliencies[seq].weight,
                        "heat": volume_url(study, lesion, seq, "heat"),
                    }  # fmt: skip
                    for seq in SEQUENCES
                    if seq in saliencies
                ]
        else:
            payload["model"]["message"] = STATUS_TEXT[status]
    if REFERENCE in allowed:
        payload["reference"] = {"class": CLASSES[lesion.label], "title": CLASS_TITLES[CLASSES[lesion.label]]}
    record = Disclosure.objects.create(assignment=assignment, lesion=lesion, prediction=shown, purpose=purpose,
                                       revealed=sorted(allowed))  # fmt: skip
    return payload, record
