"""A study's results from the database: ``summarise`` of its first reads, cached per study data version
(the reads' count and largest id), so a new read invalidates it; live progress per reader."""

import pandas as pd
from django.core.cache import cache
from django.db.models import Count, Max

from readerstudy.analysis.cohort import cohort_table
from readerstudy.analysis.data import cohort_frame, model_frame, reads_frame
from readerstudy.analysis.results import summarise
from readerstudy.studies.models import Read, ReaderStudy
from readerstudy.studies.workflow import progress


def progress_table(study: ReaderStudy) -> pd.DataFrame:
    rows = []
    for assignment in study.assignments.select_related("reader__user"):
        p = progress(assignment)
        rows.append(
            {
                "reader": assignment.reader.user.get_username(),
                "group": assignment.group,
                "session": p.session,
                "done": p.done,
                "total": p.total,
                "finished": p.finished,
            }
        )
    return pd.DataFrame(rows, columns=["reader", "group", "session", "done", "total", "finished"])


def data_version(study: ReaderStudy) -> str:
    """Changes whenever a read is added to the study: the reads' count and largest id."""
    stats = Read.objects.filter(assignment__study=study).aggregate(n=Count("id"), last=Max("id"))
    return f"{stats['n']}-{stats['last']}"


def results_key(study: ReaderStudy, phase: str) -> str:
    return f"study-results:{study.pk}:{phase}:{data_version(study)}"


def cohort_comparison(lesions: pd.DataFrame) -> pd.DataFrame:
    """Table 2 where the study's datasets have both splits; empty otherwise."""
    if lesions.empty or lesions["split"].nunique() < 2:
        return pd.DataFrame()
    return cohort_table(lesions)


def study_results(study: ReaderStudy, phase: str = "unaided") -> dict:
    """``summarise`` of the study's first reads, cached per data version; progress is live, never cached."""
    key = results_key(study, phase)
    results = cache.get(key)
    if results is None:
        results = summarise(reads_frame(study), model_frame(study), phase)
        results["cohort"] = cohort_comparison(cohort_frame(study))
        cache.set(key, results, timeout=None)
    results["progress"] = progress_table(study)
    return results
