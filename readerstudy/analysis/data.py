"""A study's data as plain tables: the one place where the analysis reads the database.

``reads_frame`` is the tidy table of a study's reads, one row per read, joined with everything an analysis
or a journal's reviewer needs (lesion, patient and scanner metadata, reader and group, the pinned model's
prediction and whether each is correct), so that no join is left to the user. A lesion appears by its own
public id (``lesion``, the same in every study) and by the id the study's readers saw (``study_lesion``).
The statistics modules take these frames (or arrays cut from them) and never query.
"""

import pandas as pd

from inference.domain import CLASSES, is_malignant
from readerstudy.cases.models import Lesion
from readerstudy.predictions.models import Prediction
from readerstudy.studies.identifiers import lesion_id_in_study
from readerstudy.studies.models import Read, ReaderStudy

READ_COLUMNS = {
    "read": "public_id",
    "reader": "assignment__reader__user__username",
    "group": "assignment__group",
    "years_of_experience": "assignment__reader__years_of_experience",
    "lesion": "lesion__public_id",
    "lesion_pk": "lesion_id",
    "case": "lesion__case__public_id",
    "dataset": "lesion__case__dataset",
    "source_case": "lesion__case__source_name",
    "source_lesion": "lesion__source_name",
    "split": "lesion__split",
    "label_index": "lesion__label",
    "diameter_mm": "lesion__diameter_mm",
    "age": "lesion__case__patient__age",
    "sex": "lesion__case__patient__sex",
    "cirrhosis": "lesion__case__patient__cirrhosis",
    "fatty_liver": "lesion__case__patient__fatty_liver",
    "scanner_vendor": "lesion__case__scanner_vendor",
    "scanner_model": "lesion__case__scanner_model",
    "field_strength_t": "lesion__case__field_strength_t",
    "phase": "phase",
    "session": "session",
    "diagnosis_index": "diagnosis",
    "confidence": "confidence",
    "malignancy": "malignancy",
    "shown_at": "shown_at",
    "submitted_at": "submitted_at",
    "amends": "supersedes__public_id",
    "model_output_shown": "prediction_shown_id",
}


def reads_frame(study: ReaderStudy, first_only: bool = True) -> pd.DataFrame:
    """One row per read of ``study`` (its first reads only, unless ``first_only`` is False: then every read,
    amendments included, with ``amends`` naming the read each replaces), with correctness columns:
    ``correct`` (seven-way), ``correct_malignant`` (two-way, malignant = HCC, ICC, metastasis), and the
    pinned model's output for the same lesion (``model_*``; empty when the study pins no model)."""
    reads = Read.objects.filter(assignment__study=study)
    if first_only:
        reads = reads.filter(supersedes__isnull=True)
    paths = list(READ_COLUMNS.values())
    frame = pd.DataFrame.from_records(reads.order_by("submitted_at", "id").values_list(*paths), columns=paths)
    frame.columns = list(READ_COLUMNS)
    frame["label"] = frame["label_index"].map(lambda i: CLASSES[i])
    frame["diagnosis"] = frame["diagnosis_index"].map(lambda i: CLASSES[i])
    frame["label_malignant"] = frame["label_index"].map(is_malignant).astype(bool)
    frame["diagnosis_malignant"] = frame["diagnosis_index"].map(is_malignant).astype(bool)
    frame["correct"] = frame["label_index"] == frame["diagnosis_index"]
    frame["correct_malignant"] = frame["label_malignant"] == frame["diagnosis_malignant"]
    for column in ("shown_at", "submitted_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["seconds"] = (frame["submitted_at"] - frame["shown_at"]).dt.total_seconds()
    frame["model_output_shown"] = frame["model_output_shown"].notna()
    frame["field_strength_t"] = frame["field_strength_t"].astype(float)
    seen_as = frame["lesion"].map(lambda public_id: lesion_id_in_study(study, public_id))
    frame.insert(frame.columns.get_loc("lesion") + 1, "study_lesion", seen_as)
    model = model_frame(study)
    frame = frame.merge(model.drop(columns=["lesion", "label_index"]), on="lesion_pk", how="left")
    return frame.drop(columns=["lesion_pk"])


def model_frame(study: ReaderStudy) -> pd.DataFrame:
    """One row per lesion of ``study`` with the pinned model's finished prediction: ``model_class``,
    ``model_correct``, ``model_p_malignant`` (binary head), ``model_malignant``, ``model_correct_malignant``
    and ``p_<class>`` for the seven classes; lesions without a finished prediction have empty model columns."""
    lesions = pd.DataFrame.from_records(
        study.lesions.values("pk", "public_id", "label"), columns=["pk", "public_id", "label"]
    ).rename(columns={"pk": "lesion_pk", "public_id": "lesion", "label": "label_index"})
    rows = Prediction.objects.filter(
        model_version_id=study.model_version_id, status=Prediction.Status.DONE, lesion__in=study.lesions.all()
    )
    predictions = pd.DataFrame.from_records(
        [
            {
                "lesion_pk": p["lesion_id"],
                "model_class_index": p["predicted_class"],
                "model_p_malignant": p["malignant_probability"],
                "model_malignant": p["predicted_malignant"],
                **{f"p_{c}": q for c, q in zip(CLASSES, p["probabilities"], strict=True)},
            }
            for p in rows.values(
                "lesion_id", "predicted_class", "malignant_probability", "predicted_malignant", "probabilities"
            )
        ],
        columns=[
            "lesion_pk",
            "model_class_index",
            "model_p_malignant",
            "model_malignant",
            *[f"p_{c}" for c in CLASSES],
        ],
    )
    frame = lesions.merge(predictions, on="lesion_pk", how="left")
    done = frame["model_class_index"].notna()
    frame["model_class"] = frame["model_class_index"].map(lambda i: CLASSES[int(i)], na_action="ignore")
    frame["model_correct"] = (frame["model_class_index"] == frame["label_index"]).where(done)
    truth_malignant = frame["label_index"].map(is_malignant)
    frame["model_correct_malignant"] = (frame["model_malignant"] == truth_malignant).where(done)
    return frame.drop(columns=["model_class_index"])


def cohort_frame(study: ReaderStudy) -> pd.DataFrame:
    """One row per lesion of every dataset the study draws from, development and test splits alike (the
    paper's Table 2 compares them): lesion, case, split, label (class name), diameter_mm, age, sex,
    scanner_model."""
    datasets = study.lesions.values_list("case__dataset", flat=True).distinct()
    columns = {
        "lesion": "public_id",
        "case": "case__public_id",
        "split": "split",
        "label_index": "label",
        "diameter_mm": "diameter_mm",
        "age": "case__patient__age",
        "sex": "case__patient__sex",
        "scanner_model": "case__scanner_model",
    }
    rows = Lesion.objects.filter(case__dataset__in=list(datasets)).order_by("pk").values_list(*columns.values())
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    frame["label"] = frame["label_index"].map(lambda i: CLASSES[i])
    return frame.drop(columns=["label_index"])
