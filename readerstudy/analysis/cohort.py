"""The cohort table (the paper's Table 2): the development and test sets compared on patient and lesion traits.

Age, sex and scanner are patient traits, counted once per patient; lesion type and diameter are counted once
per lesion. Continuous variables get mean ± SD (sample SD, n − 1) and median (IQR: the 25th and 75th
percentiles, linear interpolation); categorical variables get counts and per cent of the split.
"""

import numpy as np
import pandas as pd
from scipy.stats import MonteCarloMethod, chi2_contingency, fisher_exact, kruskal, shapiro, ttest_ind

from inference.domain import CLASSES, SEXES, SPLITS
from readerstudy.analysis.paired import unpaired_proportions

MONTE_CARLO_TABLES = 9_999
"""Random tables drawn for the Fisher-Freeman-Halton p of a table larger than 2 × 2: SE of p ≤ 0.005, enough
for a p shown to two decimals, and fast enough to recompute a dashboard within a second."""

VARIABLES = ("age", "sex", "label", "diameter_mm", "scanner_model")
"""Table 2's variables in the paper's order."""
PATIENT_VARIABLES = ("age", "sex", "scanner_model")
CONTINUOUS = ("age", "diameter_mm")


def independence_test(table, seed: int = 0) -> tuple[str | None, float]:
    """(test name, p) for independence of rows and columns of a table of counts; empty rows and columns are
    dropped first, and a table left with one row or column is not testable: (None, nan).

    Expected counts E = row total · column total / N. Every E ≥ 5: Pearson's chi-square Σ (O − E)² / E
    without Yates' correction, (r − 1)(c − 1) df ("chi-square"). Otherwise Fisher's exact test: for 2 × 2
    scipy's exact two-sided p ("fisher"; both 2 × 2 cases through paired.unpaired_proportions); for larger
    tables the Freeman-Halton extension (p = share of tables with the observed margins no more probable than
    the observed table), which scipy ≥ 1.15 estimates by Monte Carlo (MONTE_CARLO_TABLES tables drawn with
    ``seed``, p = (hits + 1)/(draws + 1)): "fisher-freeman-halton (monte carlo)".
    """
    table = np.asarray(table, dtype=int)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return None, float("nan")
    if table.shape == (2, 2):
        result = unpaired_proportions(int(table[0, 0]), int(table[0].sum()), int(table[1, 0]), int(table[1].sum()))
        return result.test, result.p
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if expected.min() >= 5:
        return "chi-square", float(chi2_contingency(table, correction=False).pvalue)
    method = MonteCarloMethod(n_resamples=MONTE_CARLO_TABLES, rng=np.random.default_rng(seed))
    p = np.ravel(fisher_exact(table, method=method).pvalue)[0]  # scipy gives shape (1,) for some tables
    return "fisher-freeman-halton (monte carlo)", float(p)


def continuous_test(first, second) -> tuple[str, float]:
    """(test name, p) comparing two samples: Student's t-test (pooled variance, two-sided) when each sample has
    n ≥ 3 and a Shapiro-Wilk p > 0.05, else the Kruskal-Wallis H test (with ties correction; for two groups
    the same p as a two-sided Mann-Whitney U with the normal approximation and no continuity correction)."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if all(len(x) >= 3 and shapiro(x).pvalue > 0.05 for x in (first, second)):
        return "t-test", float(ttest_ind(first, second).pvalue)
    return "kruskal-wallis", float(kruskal(first, second).pvalue)


def _one_per(frame: pd.DataFrame, unit: str, variables: tuple[str, ...]) -> pd.DataFrame:
    """One row per ``unit`` with its split and ``variables``; ValueError if a unit has two values of any."""
    rows = frame[[unit, "split", *variables]].drop_duplicates()
    repeated = rows[unit][rows[unit].duplicated()]
    if not repeated.empty:
        raise ValueError(f"{unit} {repeated.iloc[0]!r} has more than one split or value of {', '.join(variables)}")
    return rows


def _levels(values: pd.Series, variable: str) -> list:
    """Observed levels: those the domain orders (sex, label) in its order, then any others sorted."""
    order = {"sex": SEXES, "label": CLASSES}.get(variable, ())
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))


def _rows(variable: str, unit: str, cells: dict, test: str | None, p: float) -> list[dict]:
    """Table rows from {level: {split: text}}, the test and its p on the first row only."""
    return [
        {
            "variable": variable,
            "unit": unit,
            "level": level,
            **texts,
            "p": p if i == 0 else np.nan,
            "method": test if i == 0 else None,
        }
        for i, (level, texts) in enumerate(cells.items())
    ]


def _continuous_rows(rows: pd.DataFrame, variable: str, unit: str) -> list[dict]:
    samples = {s: rows.loc[rows["split"] == s, variable].astype(float) for s in SPLITS}
    cells = {
        "mean ± SD": {s: f"{x.mean():.1f} ± {x.std():.1f}" for s, x in samples.items()},
        "median (IQR)": {
            s: f"{x.median():.1f} ({x.quantile(0.25):.1f}-{x.quantile(0.75):.1f})" for s, x in samples.items()
        },
    }
    return _rows(variable, unit, cells, *continuous_test(*samples.values()))


def _categorical_rows(rows: pd.DataFrame, variable: str, unit: str, seed: int) -> list[dict]:
    levels = _levels(rows[variable], variable)
    counts = pd.crosstab(rows[variable], rows["split"]).reindex(index=levels, columns=list(SPLITS), fill_value=0)
    percent = 100 * counts / counts.sum()
    cells = {level: {s: f"{counts.at[level, s]} ({percent.at[level, s]:.1f} %)" for s in SPLITS} for level in levels}
    return _rows(variable, unit, cells, *independence_test(counts.to_numpy(), seed))


def cohort_table(lesions: pd.DataFrame, patient: str = "case", seed: int = 0) -> pd.DataFrame:
    """Table 2: one row per variable level with one text column per split (development, test), and the p of
    the split comparison with its test's name (column ``method``: ``test`` is a split) on each variable's
    first row.

    ``lesions``: one row per lesion (``lesion`` column, if present, unique) with split, age, sex, label (class
    name), diameter_mm, scanner_model and ``patient``, the column that identifies a patient (reads_frame's
    ``case``, the exam, is the patient unless a patient was scanned twice). Rows "patients" and "lesions"
    give the n of each split. Continuous: continuous_test; categorical: independence_test of levels × splits.
    ValueError if a split has no lesions, a lesion is repeated, or a patient has two splits, ages, sexes or
    scanners (the splits are at patient level).
    """
    if "lesion" in lesions and lesions["lesion"].duplicated().any():
        raise ValueError("cohort_table needs one row per lesion; drop repeated lesions (e.g. reads of one lesion)")
    missing = [s for s in SPLITS if not (lesions["split"] == s).any()]
    if missing:
        raise ValueError(f"cohort_table needs lesions in every split; none in {', '.join(missing)}")
    patients = _one_per(lesions, patient, PATIENT_VARIABLES)
    units = {"patient": patients, "lesion": lesions}
    table = []
    for unit, rows in units.items():
        table += _rows(f"{unit}s", unit, {"n": {s: str(int((rows["split"] == s).sum())) for s in SPLITS}}, None, np.nan)
    for variable in VARIABLES:
        unit = "patient" if variable in PATIENT_VARIABLES else "lesion"
        if variable in CONTINUOUS:
            table += _continuous_rows(units[unit], variable, unit)
        else:
            table += _categorical_rows(units[unit], variable, unit, seed)
    return pd.DataFrame(table, columns=["variable", "unit", "level", *SPLITS, "p", "method"])
