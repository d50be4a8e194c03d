"""McNemar, the AI-effect switch table and the unpaired comparison: hand-worked, published and statsmodels values."""

from math import comb

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportions_ztest

from readerstudy.analysis.paired import mcnemar, switch_matrix, unpaired_proportions


def pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired correctness arrays with the given cell counts (both right, only a right, only b right, both wrong)."""
    counts = [both, a_only, b_only, neither]
    return np.repeat([True, True, False, False], counts), np.repeat([True, False, True, False], counts)


def test_mcnemar_by_hand():
    # b = 1, c = 5: Binom(6, ½).cdf(1) = 7/64, exact p = 14/64; pmf(1) = 6/64, mid-p = 8/64.
    result = mcnemar(*pairs(10, 1, 5, 4))
    assert (result.b, result.c, result.n) == (1, 5, 20)
    assert result.p_exact == pytest.approx(14 / 64)
    assert result.p_mid == pytest.approx(8 / 64)
    assert result.difference.estimate == pytest.approx((1 - 5) / 20)


def test_mcnemar_is_symmetric_and_signed():
    forward, backward = mcnemar(*pairs(10, 1, 5, 4)), mcnemar(*reversed(pairs(10, 1, 5, 4)))
    assert (backward.b, backward.c) == (5, 1)
    assert backward.p_exact == forward.p_exact and backward.p_mid == forward.p_mid
    assert backward.difference.estimate == -forward.difference.estimate
    assert backward.difference.low == pytest.approx(-forward.difference.high)


@pytest.mark.parametrize("cells", [(3, 3), (0, 0), (4, 4)])
def test_mcnemar_balanced_discordance_gives_p_one(cells):
    result = mcnemar(*pairs(20, *cells, 5))
    assert result.p_exact == 1.0 and result.p_mid == pytest.approx(1.0)
    assert result.difference.estimate == 0.0 and result.difference.low < 0 < result.difference.high


@pytest.mark.parametrize("cells", [(59, 6, 16, 80), (10, 1, 5, 4), (1, 1, 7, 12), (40, 0, 9, 3), (30, 12, 2, 0)])
def test_mcnemar_exact_p_matches_statsmodels(cells):
    both, b, c, neither = cells
    expected = sm_mcnemar([[both, b], [c, neither]], exact=True).pvalue
    assert mcnemar(*pairs(*cells)).p_exact == pytest.approx(expected, abs=1e-12)


def test_newcombe_interval_matches_published_example():
    # Cavo et al. 2012 as worked in Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables,
    # ch. 8: [[59, 6], [16, 80]], Newcombe square-and-add: -0.0621 (95 % CI -0.1186 to -0.0046).
    difference = mcnemar(*pairs(59, 6, 16, 80), z=norm.ppf(0.975)).difference
    assert difference.estimate == pytest.approx(-0.0621, abs=5e-5)
    assert (difference.low, difference.high) == pytest.approx((-0.1186, -0.0046), abs=5e-5)


def test_newcombe_interval_with_a_zero_margin():
    # Every pair has a right: φ = 0 and the limits are square-and-add of two Wilson intervals.
    difference = mcnemar(*pairs(40, 0, 9, 0)).difference
    assert difference.estimate == pytest.approx(-9 / 49)
    assert -1 <= difference.low < difference.estimate < difference.high <= 0.0 + 1e-12


def test_mcnemar_rejects_mismatched_input():
    with pytest.raises(ValueError):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1, 1])
    assert mcnemar(np.array([], bool), np.array([], bool)).difference.reason == "no paired observations"


def test_switch_matrix():
    unaided = np.array([True, True, False, False, False, True, False])
    aided = np.array([True, False, True, True, False, True, False])
    assert switch_matrix(unaided, aided) == {
        "wrong_to_right": 2,
        "right_to_wrong": 1,
        "unchanged_right": 2,
        "unchanged_wrong": 2,
    }


def test_unpaired_chi_square_by_hand_and_against_the_z_test():
    # Model 90/113 against a group's pooled 154/226: [[90, 23], [154, 72]], all expected counts ≥ 5;
    # χ² = N (ad − bc)² / (r1 r2 c1 c2) = 339 · 2938² / (113 · 226 · 244 · 95) and equals the pooled z².
    result = unpaired_proportions(90, 113, 154, 226)
    assert result.test == "chi-square"
    assert result.statistic == pytest.approx(339 * 2938**2 / (113 * 226 * 244 * 95))
    z, p = proportions_ztest([90, 154], [113, 226])
    assert result.statistic == pytest.approx(z**2) and result.p == pytest.approx(p)
    assert result.difference == pytest.approx(90 / 113 - 154 / 226)
    assert result.min_expected == pytest.approx(113 * 95 / 339)


def test_unpaired_falls_back_to_fisher_when_an_expected_count_is_small():
    # [[9, 1], [5, 5]]: expected wrong counts are 3. Two-sided Fisher: sum of the hypergeometric probabilities
    # (14 right among 20, 10 in the first row) no larger than the observed table's.
    result = unpaired_proportions(9, 10, 5, 10)
    assert result.test == "fisher" and result.statistic is None and result.min_expected == 3.0
    probabilities = [comb(10, k) * comb(10, 14 - k) / comb(20, 14) for k in range(4, 11)]
    observed = comb(10, 9) * comb(10, 5) / comb(20, 14)
    assert result.p == pytest.approx(sum(q for q in probabilities if q <= observed * (1 + 1e-9)))


def test_unpaired_switches_at_an_expected_count_of_five():
    assert unpaired_proportions(15, 20, 15, 20).test == "chi-square"  # expected wrong counts exactly 5
    assert unpaired_proportions(16, 20, 16, 20).test == "fisher"  # 4
    with pytest.raises(ValueError):
        unpaired_proportions(3, 0, 1, 2)
