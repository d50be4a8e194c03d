"""Showing model output (and, in practice studies, the reference) to a reader, and recording that it was.

``disclose`` builds what ``blinding.reveal`` allows for one lesion and writes a Disclosure row naming
the prediction shown (so the model version and checkpoint hashes), the reader and the time. A prediction
that is queued, running or failed is disclosed as its status only; before an aided read a queued or running
one is not recorded at all (the read waits for it: ``PENDING``). What another open study of the reader holds
back is named only as held back ("withheld"), and nothing held back is recorded as shown.
"""

from inference.domain import CLASS_TITLES, CLASSES, SEQUENCES
from readerstudy.cases.models import Lesion
from readerstudy.studies.blinding import MODEL, REFERENCE, SALIENCY, STILL_OWED_ELSEWHERE, Reveal
from readerstudy.studies.identifiers import study_lesion_id
from readerstudy.studies.models import Assignment, Disclosure
from readerstudy.studies.viewing import volume_url

PENDING = ("queued", "running")
"""Prediction statuses an aided read waits for."""
STATUS_TEXT = {
    "queued": "The model's output for this lesion is not ready yet (queued).",
    "running": "The model is computing its output for this lesion now.",
    "failed": "The model could not produce an output for this lesion.",
    "none": "This study shows no model output.",
}


def disclose(assignment: Assignment, lesion: Lesion, shown: Reveal, purpose: str) -> tuple[dict, Disclosure | None]:
    """The payload of what ``shown.allowed`` reveals about ``lesion``, and the Disclosure that records it (None
    when all the study would show is withheld: the payload only says so)."""
    study, allowed = assignment.study, shown.allowed
    payload: dict = {"lesion": study_lesion_id(study, lesion), "purpose": purpose, "revealed": sorted(allowed)}
    if shown.withheld:
        payload["withheld"] = STILL_OWED_ELSEWHERE
    if not allowed and shown.withheld:
        return payload, None
    prediction = study.prediction_for(lesion) if MODEL in allowed else None
    prediction_shown = None
    if MODEL in allowed:
        status = prediction.status if prediction else "none"
        payload["model"] = {"status": status}
        if status == "done":
            prediction_shown = prediction
            payload["model"] |= {
                "version": study.model_version.name,
                "probabilities": [
                    {"class": c, "title": CLASS_TITLES[c], "probability": p}
                    for c, p in zip(CLASSES, prediction.probabilities, strict=True)
                ],
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
                    }
                    for seq in SEQUENCES
                    if seq in saliencies
                ]
        else:
            payload["model"]["message"] = STATUS_TEXT[status]
            if purpose == "assist" and status in PENDING:
                return payload, None
    if REFERENCE in allowed:
        payload["reference"] = {"class": CLASSES[lesion.label], "title": CLASS_TITLES[CLASSES[lesion.label]]}
    record = Disclosure.objects.create(
        assignment=assignment, lesion=lesion, prediction=prediction_shown, purpose=purpose, revealed=sorted(allowed)
    )
    return payload, record
