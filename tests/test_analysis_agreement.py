"""Cohen's and Fleiss' kappa: hand-worked and published values, and statsmodels / scikit-learn cross-checks."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats import inter_rater

from readerstudy.analysis.agreement import cohen_kappa, fleiss_kappa

# Fleiss (1971) Psychol Bull 76:378: 30 patients, 6 psychiatrists each, diagnoses 1 depression, 2 personality
# disorder, 3 schizophrenia, 4 neurosis, 5 other (as R irr's `diagnoses` data set and statsmodels' tests have it).
FLEISS_1971 = np.array(
    [
        [4, 4, 4, 4, 4, 4],
        [2, 2, 2, 5, 5, 5],
        [2, 3, 3, 3, 3, 5],
        [5, 5, 5, 5, 5, 5],
        [2, 2, 2, 4, 4, 4],
        [1, 1, 3, 3, 3, 3],
        [3, 3, 3, 3, 5, 5],
        [1, 1, 3, 3, 3, 4],
        [1, 1, 4, 4, 4, 4],
        [5, 5, 5, 5, 5, 5],
        [1, 4, 4, 4, 4, 4],
        [1, 2, 4, 4, 4, 4],
        [2, 2, 2, 3, 3, 3],
        [1, 4, 4, 4, 4, 4],
        [2, 2, 4, 4, 4, 5],
        [3, 3, 3, 3, 3, 5],
        [1, 1, 1, 4, 5, 5],
        [1, 1, 1, 1, 1, 2],
        [2, 2, 4, 4, 4, 4],
        [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5],
        [2, 4, 4, 4, 4, 4],
        [2, 2, 4, 5, 5, 5],
        [1, 1, 4, 4, 4, 4],
        [1, 4, 4, 4, 4, 5],
        [2, 2, 2, 2, 2, 4],
        [1, 1, 1, 1, 5, 5],
        [2, 2, 4, 4, 4, 4],
        [1, 3, 3, 3, 3, 3],
        [5, 5, 5, 5, 5, 5],
    ]
)


def expand(table):
    """Two readers' label arrays whose cross-table (rows a, columns b) is `table`."""
    table = np.asarray(table)
    k = table.shape[0]
    rows, cols = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return np.repeat(rows.ravel(), table.ravel()), np.repeat(cols.ravel(), table.ravel())


def test_cohen_kappa_by_hand():
    # [[20, 5], [10, 15]]: po = 0.7, margins (0.5, 0.5) and (0.6, 0.4), pe = 0.5, κ = 0.4;
    # se0 = √(0.5 + 0.25 − (0.5·0.6·1.1 + 0.5·0.4·0.9)) / (0.5·√50) = √0.24 / 3.5355 = 0.138564, Z = 2.886751.
    result = cohen_kappa(*expand([[20, 5], [10, 15]]), k=2)
    assert result.kappa == pytest.approx(0.4)
    assert result.se0 == pytest.approx(0.138564, abs=1e-6)
    assert result.z == pytest.approx(2.886751, abs=1e-6)
    assert result.p == pytest.approx(2 * norm.sf(2.886751), rel=1e-5)
    assert (result.n, result.raters) == (50, 2)
    assert (result.low, result.high) == pytest.approx((0.4 - 1.96 * result.se, 0.4 + 1.96 * result.se))


def test_cohen_kappa_matches_sas_example():
    # SAS PROC FREQ output for [[0, 4, 1], [0, 8, 0], [0, 1, 5]] (reproduced in statsmodels' tests):
    # kappa 0.4842, ASE 0.1380, 95 % CI 0.2137-0.7547; ASE under H0 0.1484, Z 3.2626, two-sided p 0.0011.
    result = cohen_kappa(*expand([[0, 4, 1], [0, 8, 0], [0, 1, 5]]), k=3, z=norm.ppf(0.975))
    assert result.kappa == pytest.approx(0.4842, abs=5e-5)
    assert result.se == pytest.approx(0.1380, abs=5e-5)
    assert (result.low, result.high) == pytest.approx((0.2137, 0.7547), abs=5e-5)
    assert result.se0 == pytest.approx(0.1484, abs=5e-5)
    assert result.z == pytest.approx(3.2626, abs=5e-5)
    assert result.p == pytest.approx(0.0011, abs=5e-5)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_statsmodels_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 7, 113)
    b = np.where(rng.random(113) < 0.75, a, rng.integers(0, 7, 113))
    ours = cohen_kappa(a, b, z=norm.ppf(0.975))
    theirs = inter_rater.cohens_kappa(inter_rater.to_table(np.column_stack([a, b]), bins=np.arange(8) - 0.5)[0])
    assert ours.kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert ours.kappa == pytest.approx(theirs.kappa, abs=1e-12)
    assert ours.se0 == pytest.approx(theirs.std_kappa0, abs=1e-12)
    assert ours.z == pytest.approx(theirs.z_value, abs=1e-9)
    assert ours.p == pytest.approx(theirs.pvalue_two_sided, abs=1e-12)
    assert ours.se == pytest.approx(theirs.std_kappa, abs=1e-12)
    assert (ours.low, ours.high) == pytest.approx((theirs.kappa_low, theirs.kappa_upp), abs=1e-12)


def test_cohen_kappa_perfect_and_undefined():
    perfect = cohen_kappa([0, 1, 2, 2], [0, 1, 2, 2])
    assert perfect.kappa == 1.0 and perfect.se == 0.0 and perfect.z > 0
    one_class = cohen_kappa([3, 3, 3], [3, 3, 3])
    assert one_class.kappa is None and "chance agreement is 1" in one_class.reason
    single_reader_class = cohen_kappa([0, 0, 0, 0], [0, 1, 0, 1])
    assert single_reader_class.kappa == pytest.approx(0.0)
    assert single_reader_class.z is None and "SE under the null is 0" in single_reader_class.reason
    assert cohen_kappa([], []).reason == "no subjects"


def test_fleiss_kappa_on_fleiss_1971():
    # Fleiss (1971): κ = 0.430. R irr::kappam.fleiss(diagnoses), with the Fleiss, Nee & Landis (1979) null SE:
    # kappa 0.4302445, z 17.65183 (as recorded in statsmodels' tests).
    result = fleiss_kappa(FLEISS_1971 - 1, k=5)
    assert round(result.kappa, 3) == 0.430
    assert result.kappa == pytest.approx(0.4302445, abs=1e-7)
    assert result.z == pytest.approx(17.65183, abs=1e-5)
    assert result.se0 == pytest.approx(0.4302445 / 17.65183, rel=1e-6)
    assert (result.n, result.raters, result.se) == (30, 6, None)


def test_fleiss_kappa_on_wikipedia_example():
    # Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories, κ = 0.210.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    ratings = np.stack([np.repeat(np.arange(5), row) for row in counts])
    assert fleiss_kappa(ratings, k=5).kappa == pytest.approx(0.210, abs=5e-4)


@pytest.mark.parametrize("seed", range(3))
def test_fleiss_kappa_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 7, 60)
    ratings = np.column_stack([np.where(rng.random(60) < 0.7, truth, rng.integers(0, 7, 60)) for _ in range(3)])
    expected = inter_rater.fleiss_kappa(inter_rater.aggregate_raters(ratings, n_cat=7)[0])
    assert fleiss_kappa(ratings).kappa == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_rejects_bad_input():
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[0], [1]]))
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[0, 9], [1, 1]]))
    assert fleiss_kappa(np.full((4, 3), 2)).reason.startswith("chance agreement is 1")
