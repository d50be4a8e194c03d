"""Seven-way accuracy within subgroups of lesions (the paper's cirrhosis, fatty liver and scanner subgroups, and
lesion size by the crop-size classes), for a reader group or the model, with a test across the subgroups."""

import numpy as np
import pandas as pd

from inference.domain import MEDIUM_LESION_MM, READER_GROUPS, SMALL_LESION_MM
from readerstudy.analysis.cohort import independence_test
from readerstudy.analysis.metrics import wilson_modified

SIZE_BINS = (f"< {SMALL_LESION_MM:g} mm", f"{SMALL_LESION_MM:g}-{MEDIUM_LESION_MM:g} mm", f"> {MEDIUM_LESION_MM:g} mm")
"""Lesion size classes, those of the crop rule (inference.preprocess.crop_side_mm)."""


def size_bins(diameter_mm) -> pd.Categorical:
    """Ordered size class of each diameter d: d < 16 mm, 16 ≤ d ≤ 32 mm (both ends in the middle class, as in
    the crop rule), d > 32 mm; a missing diameter stays missing."""
    d = np.asarray(diameter_mm, dtype=float)
    codes = (d >= SMALL_LESION_MM).astype(int) + (d > MEDIUM_LESION_MM)
    return pd.Categorical.from_codes(np.where(np.isnan(d), -1, codes), categories=SIZE_BINS, ordered=True)


def subgroup_accuracy(reads: pd.DataFrame, by: str, who: str) -> pd.DataFrame:
    """Seven-way accuracy x/n with the modified Wilson 95 % interval for each level of column ``by`` (e.g.
    cirrhosis, fatty_liver, scanner_model, or a size column made by size_bins), and a test across levels.

    ``reads``: reads_frame rows of one phase. ``who`` is a reader group (its readers' reads pooled, x =
    ``correct``) or "model" (one row per lesion, x = ``model_correct``; lesions without a finished prediction
    left out). Test on the levels × (right, wrong) table by cohort.independence_test: Pearson chi-square
    without Yates' correction when every expected count ≥ 5, else Fisher's exact (2 levels: through
    paired.unpaired_proportions). Like the paper, it treats reads as independent (one group's readers read the
    same lesions). One level, or every read right (or wrong), gives no test (test None, p NaN). Columns:
    variable, level, n, correct, accuracy, low, high, and p and test on the first row.
    """
    if "phase" in reads and reads["phase"].nunique() > 1:
        raise ValueError("subgroup_accuracy needs the reads of one phase; filter reads by phase first")
    if who == "model":
        rows = reads.drop_duplicates("lesion").dropna(subset=["model_correct"])
        correct = rows["model_correct"].astype(bool)
    elif who in READER_GROUPS:
        rows = reads[reads["group"] == who]
        correct = rows["correct"].astype(bool)
    else:
        raise ValueError(f"who must be 'model' or a reader group ({', '.join(READER_GROUPS)}), got {who!r}")
    counts = correct.groupby(rows[by], observed=True, sort=True).agg(["sum", "count"])
    test, p = independence_test(np.column_stack([counts["sum"], counts["count"] - counts["sum"]]))
    table = []
    for i, (level, x, n) in enumerate(zip(counts.index, counts["sum"], counts["count"], strict=True)):
        estimate = wilson_modified(int(x), int(n))
        table.append(
            {
                "variable": by,
                "level": level,
                "n": int(n),
                "correct": int(x),
                "accuracy": estimate.estimate,
                "low": estimate.low,
                "high": estimate.high,
                "p": p if i == 0 else np.nan,
                "test": test if i == 0 else None,
            }
        )
    return pd.DataFrame(table, columns=["variable", "level", "n", "correct", "accuracy", "low", "high", "p", "test"])
