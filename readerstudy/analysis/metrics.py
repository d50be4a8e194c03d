"""Diagnostic-accuracy statistics as pure functions over counts and label arrays.

Proportions are fractions in [0, 1] (not per cent); likelihood ratios are unitless. Confidence intervals are
two-sided 95 % by default, with z = 1.96 as the study used (not norm.ppf(0.975) = 1.959964).
"""

from dataclasses import dataclass, fields, replace

import numpy as np
from scipy.stats import chi2

from inference.domain import CLASSES, MALIGNANT_CLASSES

Z95 = 1.96
"""The normal quantile the study used for 95 % intervals."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval; all None, with a reason, where it cannot be estimated."""

    estimate: float | None
    low: float | None
    high: float | None
    reason: str | None = None

    def __getitem__(self, key: str) -> float | str | None:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    @classmethod
    def not_estimable(cls, reason: str) -> "Estimate":
        return cls(None, None, None, reason)


def _check_count(x: int, n: int) -> None:
    if n < 0 or x < 0 or x > n:
        raise ValueError(f"need 0 <= x <= n, got x = {x}, n = {n}")


def wilson(x: int, n: int, z: float = Z95) -> Estimate:
    """Wilson score interval for the proportion x/n.

    centre = (x + z²/2) / (n + z²); half-width = z·√n / (n + z²) · √(p̂(1 − p̂) + z²/(4n)), p̂ = x/n.
    """
    _check_count(x, n)
    if n == 0:
        return Estimate.not_estimable("n = 0: no observations")
    p = x / n
    centre = (x + z * z / 2) / (n + z * z)
    half = z * np.sqrt(n) / (n + z * z) * np.sqrt(p * (1 - p) + z * z / (4 * n))
    return Estimate(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def wilson_modified(x: int, n: int, alpha: float = 0.05, z: float = Z95) -> Estimate:
    """Modified Wilson interval (Brown, Cai & DasGupta 2001, Stat Sci 16:101, section 4.1.1) for x/n.

    The Wilson score interval with quantile z, except near the boundaries, where its coverage dips:
    for x in {1, 2} the lower bound is ½·χ²₂ₓ(α)/n = chi2.ppf(α, 2x) / (2n) (the α quantile, not α/2), and for
    n − x in {1, 2} the upper bound is 1 − chi2.ppf(α, 2(n − x)) / (2n). The modification is applied for
    x (or n − x) in {1, 2} whatever n; the paper's cut-offs for larger x when n > 50 are not applied.
    x = 0 gives lower bound 0 and x = n upper bound 1.
    """
    interval = wilson(x, n, z)
    if interval.reason:
        return interval
    low, high = interval.low, interval.high
    if x == 0:
        low = 0.0
    elif x <= 2:
        low = float(chi2.ppf(alpha, 2 * x) / (2 * n))
    if x == n:
        high = 1.0
    elif n - x <= 2:
        high = float(1 - chi2.ppf(alpha, 2 * (n - x)) / (2 * n))
    return Estimate(interval.estimate, low, high)


def _ratio_of_proportions(a: int, n1: int, c: int, n2: int, names: tuple[str, str], label: str, z: float) -> Estimate:
    """(a/n1) / (c/n2) with the log-method interval: exp(log R ± z·√(1/a − 1/n1 + 1/c − 1/n2))."""
    for count, name in ((a, names[0]), (c, names[1])):
        if count == 0:
            return Estimate.not_estimable(f"{name} = 0: {label} or its log is undefined")
    ratio = (a / n1) / (c / n2)
    se = np.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n2)
    return Estimate(ratio, float(np.exp(np.log(ratio) - z * se)), float(np.exp(np.log(ratio) + z * se)))


def likelihood_ratio(tp: int, fp: int, tn: int, fn: int, z: float = Z95) -> dict[str, Estimate]:
    """Positive and negative likelihood ratios with log-method intervals (Simel, Samsa & Matchar 1991).

    LR+ = sens / (1 − spec), SE(log LR+) = √(1/tp − 1/(tp + fn) + 1/fp − 1/(fp + tn));
    LR− = (1 − sens) / spec, SE(log LR−) = √(1/fn − 1/(tp + fn) + 1/tn − 1/(fp + tn));
    interval exp(log LR ± z·SE). A zero count in a ratio makes it not estimable, with the count named.
    Returns {"plr": ..., "nlr": ...}.
    """
    for count in (tp, fp, tn, fn):
        _check_count(count, tp + fp + tn + fn)
    return {
        "plr": _ratio_of_proportions(tp, tp + fn, fp, fp + tn, ("tp", "fp"), "LR+", z),
        "nlr": _ratio_of_proportions(fn, tp + fn, tn, fp + tn, ("fn", "tn"), "LR-", z),
    }


def binary_metrics(tp: int, fp: int, tn: int, fn: int, z: float = Z95) -> dict[str, Estimate]:
    """Accuracy, sensitivity, specificity, PPV, NPV (modified Wilson intervals) and LR+, LR− (log method).

    accuracy = (tp + tn)/N, sensitivity = tp/(tp + fn), specificity = tn/(tn + fp), ppv = tp/(tp + fp),
    npv = tn/(tn + fn). A proportion with an empty denominator is not estimable, with the denominator named.
    """
    proportions = {
        "accuracy": (tp + tn, tp + fp + tn + fn, "tp + fp + tn + fn"),
        "sensitivity": (tp, tp + fn, "tp + fn"),
        "specificity": (tn, tn + fp, "tn + fp"),
        "ppv": (tp, tp + fp, "tp + fp"),
        "npv": (tn, tn + fn, "tn + fn"),
    }
    result = {}
    for key, (x, n, denominator) in proportions.items():
        est = wilson_modified(x, n, z=z)
        result[key] = replace(est, reason=f"{denominator} = 0") if est.reason else est
    return result | likelihood_ratio(tp, fp, tn, fn, z)


def class_indices(labels, k: int, name: str) -> np.ndarray:
    """labels as an integer array, checked to hold class indices 0..k-1; ValueError names the argument."""
    labels = np.asarray(labels)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"{name} must hold integer class indices in 0..{k - 1}")
    return labels.astype(int)


def confusion_matrix(truth, predicted, k: int = len(CLASSES)) -> np.ndarray:
    """k × k matrix of counts: rows are the reference class, columns the predicted class (class indices 0..k-1)."""
    truth, predicted = class_indices(truth, k, "truth"), class_indices(predicted, k, "predicted")
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(
            f"truth and predicted must be 1-D and equal in length, got {truth.shape} and {predicted.shape}"
        )
    return np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)


def _square(matrix) -> np.ndarray:
    matrix = np.asarray(matrix)
    k = len(CLASSES)
    if matrix.shape != (k, k):
        raise ValueError(f"expected a {k} × {k} confusion matrix, got shape {matrix.shape}")
    return matrix


def one_vs_rest(matrix) -> dict[str, dict[str, Estimate]]:
    """binary_metrics per class from the 7 × 7 confusion matrix, the class against all others.

    For class i: tp = M[i, i], fn = row i − tp, fp = column i − tp, tn = N − tp − fn − fp.
    """
    matrix = _square(matrix)
    total = int(matrix.sum())
    result = {}
    for i, name in enumerate(CLASSES):
        tp = int(matrix[i, i])
        fn = int(matrix[i].sum()) - tp
        fp = int(matrix[:, i].sum()) - tp
        result[name] = binary_metrics(tp, fp, total - tp - fn - fp, fn)
    return result


def two_way(matrix) -> dict[str, Estimate]:
    """binary_metrics for benign vs malignant (malignant = positive) from the 7 × 7 confusion matrix.

    Seven-way reads are collapsed by inference.domain.MALIGNANT_CLASSES: a malignant lesion read as any
    malignant class is a true positive.
    """
    matrix = _square(matrix)
    malignant = np.array([name in MALIGNANT_CLASSES for name in CLASSES])
    tp = int(matrix[np.ix_(malignant, malignant)].sum())
    fn = int(matrix[np.ix_(malignant, ~malignant)].sum())
    fp = int(matrix[np.ix_(~malignant, malignant)].sum())
    tn = int(matrix[np.ix_(~malignant, ~malignant)].sum())
    return binary_metrics(tp, fp, tn, fn)


def accuracy(matrix) -> Estimate:
    """Overall accuracy trace(M) / N of a confusion matrix, with the modified Wilson interval."""
    matrix = np.asarray(matrix)
    return wilson_modified(int(np.trace(matrix)), int(matrix.sum()))
