"""Comparisons of correctness between two readers (the model counts as one): paired and unpaired tests.

Inputs are per-lesion booleans (True = read correctly) or counts; proportions are fractions in [0, 1].
"""

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, chi2_contingency, fisher_exact

from readerstudy.analysis.metrics import Z95, Estimate, wilson


def _paired_counts(correct_a, correct_b) -> tuple[int, int, int, int]:
    """(both right, only a right, only b right, both wrong) over paired booleans."""
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired results must be 1-D and equal in length, got {a.shape} and {b.shape}")
    if a.dtype != bool or b.dtype != bool:
        raise ValueError("paired results must be booleans (True = correct)")
    return int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b))


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired correctness. b: a right and b wrong; c: a wrong and b right; n: pairs.
    difference: p_a − p_b = (b − c) / n with Newcombe's method-10 interval."""

    b: int
    c: int
    n: int
    p_exact: float
    p_mid: float
    difference: Estimate


def _newcombe_paired(both: int, b: int, c: int, neither: int, z: float) -> Estimate:
    """Newcombe (1998, Stat Med 17:2635) method 10: square-and-add of Wilson intervals for paired proportions.

    p1 = (both + b)/n with Wilson (l1, u1), p2 = (both + c)/n with (l2, u2), D = p1 − p2;
    φ = A / √(row and column margins' product), A = both·neither − b·c, replaced by A − n/2 if A > n/2 and by 0
    if 0 ≤ A ≤ n/2 (continuity correction), φ = 0 if a margin is 0;
    low = D − √((p1 − l1)² − 2φ (p1 − l1)(u2 − p2) + (u2 − p2)²),
    high = D + √((u1 − p1)² − 2φ (u1 − p1)(p2 − l2) + (p2 − l2)²).
    """
    n = both + b + c + neither
    if n == 0:
        return Estimate.not_estimable("no paired observations")
    first, second = wilson(both + b, n, z), wilson(both + c, n, z)
    p1, l1, u1 = first.estimate, first.low, first.high
    p2, l2, u2 = second.estimate, second.low, second.high
    margins = (both + b) * (c + neither) * (both + c) * (b + neither)
    a = both * neither - b * c
    corrected = a - n / 2 if a > n / 2 else min(a, 0)
    phi = corrected / np.sqrt(margins) if margins else 0.0
    d = p1 - p2
    low = d - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return Estimate(d, float(low), float(high))


def mcnemar(correct_a, correct_b, z: float = Z95) -> McNemar:
    """McNemar's test of a against b on the same subjects (e.g. the model vs one reader on the same lesions).

    Exact (conditional binomial) two-sided p = min(1, 2·Binom.cdf(min(b, c); b + c, ½));
    mid-p = 2·Binom.cdf(min(b, c)) − Binom.pmf(min(b, c)) (Fagerland, Lydersen & Laake 2013): the exact p less
    the observed count's probability, taken before the cap at 1, so b = c gives mid-p 1, not 1 − pmf.
    The difference p_a − p_b carries Newcombe's method-10 interval (not a Wald interval).
    """
    both, b, c, neither = _paired_counts(correct_a, correct_b)
    low_count, discordant = min(b, c), b + c
    cdf, pmf = float(binom.cdf(low_count, discordant, 0.5)), float(binom.pmf(low_count, discordant, 0.5))
    return McNemar(
        b=b,
        c=c,
        n=both + b + c + neither,
        p_exact=min(1.0, 2 * cdf),
        p_mid=min(1.0, 2 * cdf - pmf),
        difference=_newcombe_paired(both, b, c, neither, z),
    )


def switch_matrix(unaided_correct, aided_correct) -> dict[str, int]:
    """The AI-effect table: lesions a reader got wrong unaided and right aided (wrong_to_right), the reverse
    (right_to_wrong), and those right both times (unchanged_right) or wrong both times (unchanged_wrong; the
    wrong diagnosis itself may have changed). Counts of lesions."""
    both, right_to_wrong, wrong_to_right, neither = _paired_counts(unaided_correct, aided_correct)
    return {
        "wrong_to_right": wrong_to_right,
        "right_to_wrong": right_to_wrong,
        "unchanged_right": both,
        "unchanged_wrong": neither,
    }


@dataclass(frozen=True)
class ProportionTest:
    """An unpaired test of x1/n1 against x2/n2: test is "chi-square" or "fisher"; statistic is the Pearson
    chi-square (1 df), None for Fisher; difference = p1 − p2; min_expected: the smallest expected count."""

    test: str
    statistic: float | None
    p: float
    p1: float
    p2: float
    difference: float
    min_expected: float


def unpaired_proportions(x1: int, n1: int, x2: int, n2: int) -> ProportionTest:
    """The paper's unpaired comparison, e.g. the model's accuracy x1/n1 against a group's pooled accuracy x2/n2.

    It treats the two as independent samples and so ignores that they read the same lesions (mcnemar does not).
    2 × 2 table [[x1, n1 − x1], [x2, n2 − x2]], expected counts E = row total · column total / N:
    Pearson chi-square Σ (O − E)² / E without Yates' correction, 1 df, when every E ≥ 5; otherwise Fisher's
    exact test (two-sided, summing tables no more probable than the observed).
    """
    if n1 <= 0 or n2 <= 0 or not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"need 0 <= x <= n and n > 0, got {x1}/{n1} and {x2}/{n2}")
    table = np.array([[x1, n1 - x1], [x2, n2 - x2]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    p1, p2 = x1 / n1, x2 / n2
    if expected.min() < 5:
        test, statistic, p = "fisher", None, float(fisher_exact(table).pvalue)
    else:
        result = chi2_contingency(table, correction=False)
        test, statistic, p = "chi-square", float(result.statistic), float(result.pvalue)
    return ProportionTest(test, statistic, p, p1, p2, p1 - p2, float(expected.min()))
