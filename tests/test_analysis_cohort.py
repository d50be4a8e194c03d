"""The cohort table (Table 2) and its tests: hand-worked values, scipy and statsmodels."""

from itertools import product
from math import exp, factorial, prod

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, chi2_contingency, fisher_exact, mannwhitneyu, t, ttest_ind
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from readerstudy.analysis.cohort import cohort_table, continuous_test, independence_test
from readerstudy.analysis.paired import unpaired_proportions


def table_probability(table: np.ndarray) -> float:
    """Probability of an r × c table given its margins (multivariate hypergeometric)."""
    rows, columns = table.sum(axis=1), table.sum(axis=0)
    numerator = prod(factorial(int(m)) for m in (*rows, *columns))
    return numerator / (factorial(int(table.sum())) * prod(factorial(int(x)) for x in table.ravel()))


def freeman_halton_exact(table) -> float:
    """Exact Freeman-Halton p for a 2 × c table by enumerating every table with the observed margins."""
    table = np.asarray(table)
    top, columns = int(table[0].sum()), table.sum(axis=0)
    observed = table_probability(table)
    total = 0.0
    for first in product(*(range(int(c) + 1) for c in columns[:-1])):
        last = top - sum(first)
        if 0 <= last <= columns[-1]:
            row = np.array([*first, last])
            candidate = table_probability(np.array([row, columns - row]))
            total += candidate if candidate <= observed * (1 + 1e-7) else 0.0
    return total


def test_chi_square_by_hand():
    # Every expected count is 15: X² = (4 · 5² + 2 · 0) / 15 = 20/3 on 2 df, p = exp(−X²/2).
    assert independence_test([[10, 20], [20, 10], [15, 15]]) == ("chi-square", pytest.approx(exp(-10 / 3)))


def test_chi_square_has_no_yates_correction_and_matches_the_unpaired_test():
    table = np.array([[30, 20], [22, 28]])
    test, p = independence_test(table)
    assert test == "chi-square"
    assert p == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    assert p != pytest.approx(chi2_contingency(table, correction=True).pvalue)
    assert p == unpaired_proportions(30, 50, 22, 50).p


def test_two_by_two_fisher_by_hand():
    # Margins 4, 3 × 4, 3 (N = 7): P(x) = C(4, x) C(3, 4 − x) / 35 = 4, 18, 12, 1 /35 for x = 1..4; observed
    # x = 3 (12/35); tables no more probable: x = 1, 3, 4, p = 17/35.
    assert independence_test([[3, 1], [1, 2]]) == ("fisher", pytest.approx(17 / 35))
    assert independence_test([[8, 2], [1, 5]])[1] == pytest.approx(fisher_exact([[8, 2], [1, 5]]).pvalue)


@pytest.mark.parametrize("table", [[[8, 2, 3], [1, 5, 4]], [[5, 0, 1, 2], [1, 4, 3, 0]], [[40, 2, 30], [10, 3, 1]]])
def test_freeman_halton_monte_carlo_is_close_to_exact_enumeration(table):
    test, p = independence_test(table)
    assert test == "fisher-freeman-halton (monte carlo)"
    assert p == pytest.approx(freeman_halton_exact(table), abs=0.015)  # 3 SE of 9,999 draws
    assert independence_test(table) == (test, p)  # fixed seed: the same p every time
    assert independence_test(table, seed=1)[1] != p


def test_empty_levels_are_dropped_and_one_level_is_not_testable():
    assert independence_test([[3, 0, 1], [1, 0, 2], [0, 0, 0]]) == independence_test([[3, 1], [1, 2]])
    test, p = independence_test([[3, 4], [0, 0]])
    assert test is None and np.isnan(p)


def test_t_test_by_hand():
    # Means 3 and 5, pooled variance 2.5, SE = √(2.5 · (1/5 + 1/5)) = 1, t = −2 on 8 df.
    test, p = continuous_test([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])
    assert test == "t-test"
    assert p == pytest.approx(2 * t.sf(2, 8))


def test_t_test_matches_scipy_and_statsmodels():
    rng = np.random.default_rng(3)
    a, b = rng.normal(50, 10, 40), rng.normal(54, 12, 30)
    test, p = continuous_test(a, b)
    assert test == "t-test"
    assert p == pytest.approx(sm_ttest_ind(a, b, usevar="pooled")[1])
    assert p != pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)


def test_kruskal_wallis_by_hand_when_a_group_is_too_small():
    # n = 2 in one group: no Shapiro-Wilk, so Kruskal-Wallis. Ranks 1, 2 | 3, 4, 5 (N = 5):
    # H = 12/30 · (3²/2 + 12²/3) − 3 · 6 = 3, p = P(χ²₁ > 3).
    assert continuous_test([1, 2], [3, 4, 5]) == ("kruskal-wallis", pytest.approx(chi2.sf(3, 1)))


def test_kruskal_wallis_when_a_group_is_not_normal_matches_mann_whitney():
    rng = np.random.default_rng(4)
    a, b = rng.normal(30, 5, 30), rng.lognormal(3.4, 0.8, 25)
    test, p = continuous_test(a, b)
    assert test == "kruskal-wallis"
    assert p == pytest.approx(mannwhitneyu(a, b, use_continuity=False, method="asymptotic").pvalue)


def cohort(**changes) -> pd.DataFrame:
    """Patients p1-p4 in development (p1 with two lesions), q1-q3 in test."""
    frame = pd.DataFrame(
        {
            "lesion": ["a", "b", "c", "d", "e", "f", "g", "h"],
            "case": ["p1", "p1", "p2", "p3", "p4", "q1", "q2", "q3"],
            "split": ["development"] * 5 + ["test"] * 3,
            "age": [40, 40, 50, 60, 70, 45, 55, 65],
            "sex": ["F", "F", "M", "F", "F", "M", "M", "F"],
            "label": ["cyst", "HCC", "cyst", "FNH", "HCC", "metastasis", "cyst", "HCC"],
            "diameter_mm": [10.0, 20.0, 30.0, 40.0, 50.0, 12.0, 14.0, 100.0],
            "scanner_model": ["Signa", "Signa", "Signa", "Prisma", "Prisma", "Signa", "Ingenia", "Ingenia"],
        }
    )
    for column, value in changes.items():
        frame[column] = value
    return frame


def rows(table: pd.DataFrame, variable: str) -> pd.DataFrame:
    return table[table["variable"] == variable].set_index("level")


def test_cohort_counts_patients_and_lesions():
    table = cohort_table(cohort())
    assert rows(table, "patients").loc["n", ["development", "test"]].tolist() == ["4", "3"]
    assert rows(table, "lesions").loc["n", ["development", "test"]].tolist() == ["5", "3"]
    assert table["variable"].unique().tolist() == [
        "patients",
        "lesions",
        "age",
        "sex",
        "label",
        "diameter_mm",
        "scanner_model",
    ]


def test_age_is_per_patient_with_mean_sd_median_iqr_and_t_test():
    # Development ages 40, 50, 60, 70 (p1's two lesions count once): mean 55, SD √(500/3) = 12.9, quartiles
    # by linear interpolation 47.5 and 62.5; test 45, 55, 65: SD 10. Equal means: t = 0, p = 1.
    age = rows(cohort_table(cohort()), "age")
    assert age.loc["mean ± SD", ["development", "test"]].tolist() == ["55.0 ± 12.9", "55.0 ± 10.0"]
    assert age.loc["median (IQR)", ["development", "test"]].tolist() == ["55.0 (47.5-62.5)", "55.0 (50.0-60.0)"]
    assert (age.loc["mean ± SD", "method"], age.loc["mean ± SD", "p"]) == ("t-test", pytest.approx(1.0))
    assert np.isnan(age.loc["median (IQR)", "p"]) and age.loc["median (IQR)", "method"] is None


def test_sex_is_per_patient_with_fisher_exact():
    # Patients: F 3 dev, 1 test; M 1 dev, 2 test: the 2 × 2 worked in test_two_by_two_fisher_by_hand.
    sex = rows(cohort_table(cohort()), "sex")
    assert sex.index.tolist() == ["F", "M"]
    assert sex["development"].tolist() == ["3 (75.0 %)", "1 (25.0 %)"]
    assert sex["test"].tolist() == ["1 (33.3 %)", "2 (66.7 %)"]
    assert (sex.loc["F", "method"], sex.loc["F", "p"]) == ("fisher", pytest.approx(17 / 35))
    assert np.isnan(sex.loc["M", "p"])


def test_lesion_type_is_per_lesion_in_class_order():
    label = rows(cohort_table(cohort()), "label")
    assert label.index.tolist() == ["cyst", "FNH", "HCC", "metastasis"]
    assert label["development"].tolist() == ["2 (40.0 %)", "1 (20.0 %)", "2 (40.0 %)", "0 (0.0 %)"]
    assert label["test"].tolist() == ["1 (33.3 %)", "0 (0.0 %)", "1 (33.3 %)", "1 (33.3 %)"]
    assert label.loc["cyst", "method"] == "fisher-freeman-halton (monte carlo)"
    assert label.loc["cyst", "p"] == pytest.approx(freeman_halton_exact([[2, 1, 2, 0], [1, 0, 1, 1]]), abs=0.015)


def test_diameter_is_per_lesion_with_kruskal_wallis_when_not_normal():
    # Test diameters 12, 14, 100: Shapiro-Wilk p = 0.038. Ranks: dev 1, 4, 5, 6, 7 (23), test 2, 3, 8 (13), N = 8:
    # H = 12/72 · (23²/5 + 13²/3) − 27 = 1/45.
    diameter = rows(cohort_table(cohort()), "diameter_mm")
    assert diameter.loc["mean ± SD", ["development", "test"]].tolist() == ["30.0 ± 15.8", "42.0 ± 50.2"]
    assert diameter.loc["mean ± SD", "method"] == "kruskal-wallis"
    assert diameter.loc["mean ± SD", "p"] == pytest.approx(chi2.sf(1 / 45, 1))


def test_scanner_is_per_patient():
    scanner = rows(cohort_table(cohort()), "scanner_model")
    assert scanner.index.tolist() == ["Ingenia", "Prisma", "Signa"]
    assert scanner["development"].tolist() == ["0 (0.0 %)", "2 (50.0 %)", "2 (50.0 %)"]
    assert scanner["test"].tolist() == ["2 (66.7 %)", "0 (0.0 %)", "1 (33.3 %)"]


def test_cohort_p_values_match_direct_tests_on_a_larger_cohort():
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "lesion": [f"l{i}" for i in range(n)],
            "case": [f"c{i}" for i in range(n)],
            "split": np.where(np.arange(n) < 300, "development", "test"),
            "age": rng.normal(55, 11, n).round(),
            "sex": rng.choice(["F", "M"], n),
            "label": rng.choice(["cyst", "FNH", "HCC", "ICC"], n),
            "diameter_mm": rng.lognormal(3, 0.6, n),
            "scanner_model": rng.choice(["Signa", "Prisma", "Ingenia"], n),
        }
    )
    table = cohort_table(frame)
    dev, test = frame[frame["split"] == "development"], frame[frame["split"] == "test"]
    first = table.dropna(subset=["p"]).set_index("variable")
    assert first.loc["age", "method"] == "t-test"
    assert first.loc["age", "p"] == pytest.approx(ttest_ind(dev["age"], test["age"]).pvalue)
    assert first.loc["diameter_mm", "method"] == "kruskal-wallis"
    for variable in ("sex", "label", "scanner_model"):
        expected = chi2_contingency(pd.crosstab(frame[variable], frame["split"]), correction=False).pvalue
        assert first.loc[variable, "method"] == "chi-square"
        assert first.loc[variable, "p"] == pytest.approx(expected)


def test_cohort_refuses_repeated_lesions_a_patient_in_two_splits_and_a_missing_split():
    reads = pd.concat([cohort(), cohort()])
    with pytest.raises(ValueError, match="one row per lesion"):
        cohort_table(reads)
    with pytest.raises(ValueError, match="'p1' has more than one"):
        cohort_table(cohort(split=["development", "test"] + ["development"] * 3 + ["test"] * 3))
    with pytest.raises(ValueError, match="'p1' has more than one"):
        cohort_table(cohort(age=[40, 41, 50, 60, 70, 45, 55, 65]))
    with pytest.raises(ValueError, match="none in test"):
        cohort_table(cohort(split="development"))


def test_patient_column_is_chosen_by_the_caller():
    # Each lesion its own patient: p1's age now counts twice (mean (40 + 40 + 50 + 60 + 70)/5 = 52).
    table = cohort_table(cohort(), patient="lesion")
    assert rows(table, "patients").loc["n", "development"] == "5"
    assert rows(table, "age").loc["mean ± SD", "development"].startswith("52.0 ± ")


def test_levels_outside_the_domain_are_kept_after_the_domain_order():
    sex = rows(cohort_table(cohort(sex=["F", "F", "X", "M", "F", "M", "M", "F"])), "sex")
    assert sex.index.tolist() == ["F", "M", "X"]


def test_a_tiny_table_whose_monte_carlo_p_scipy_returns_as_an_array_gives_a_float():
    name, p = independence_test([[1, 0], [0, 1], [1, 1]])
    assert name.startswith("fisher") and isinstance(p, float) and 0 < p <= 1
