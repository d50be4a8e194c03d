"""ROC analysis as pure functions over score and truth arrays: empirical (trapezoidal) AUC, DeLong variance
and paired test, ROC points, one-vs-rest AUCs and readers' operating points.

AUCs, rates and placement values are fractions in [0, 1]. ``truth`` is 0/1 or boolean (1 = positive, e.g.
malignant); a larger score means more suspicious. Ties count ½ throughout (the Mann-Whitney / trapezoidal AUC).
Placement values come from mid-ranks (Sun & Xu 2014, IEEE Signal Process Lett 21:1389), so every function is
O(n log n) in the number of cases and never builds an n_pos × n_neg matrix.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from inference.domain import CLASSES, MALIGNANT_CLASSES
from readerstudy.analysis.metrics import Z95

MALIGNANT_INDICES = [k for k, c in enumerate(CLASSES) if c in MALIGNANT_CLASSES]


def _boolean(values, name: str, n: int | None = None) -> np.ndarray:
    """``values`` (0/1 or boolean) as a boolean 1-D array, of length ``n`` when given; ValueError otherwise."""
    b = np.asarray(values)
    if b.ndim != 1 or (n is not None and b.size != n):
        raise ValueError(f"{name} must be 1-D with one entry per case ({n}), got shape {b.shape}")
    if b.dtype != bool:
        if not np.isin(b, (0, 1)).all():
            raise ValueError(f"{name} must be 0/1 or boolean")
        b = b.astype(bool)
    return b


def binary_truth(truth, n: int | None = None) -> np.ndarray:
    """``truth`` as a boolean 1-D array of length ``n`` (when given) holding both classes; ValueError otherwise."""
    t = _boolean(truth, "truth", n)
    if t.all() or not t.any():
        raise ValueError("truth needs at least one positive and one negative case")
    return t


def _scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim == 0 or not np.isfinite(s).all():
        raise ValueError("scores must be a finite array with cases along the last axis")
    return s


def ratio(numerator: float, denominator: float) -> float:
    """A test statistic numerator / denominator (an SE or a mean square), with 0 / 0 = 0 and x / 0 = ±∞."""
    if denominator > 0:
        return float(numerator / denominator)
    return 0.0 if numerator == 0 else float(np.copysign(np.inf, numerator))


def placements(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """DeLong placement values (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837).

    V10_i = (#negatives scored below positive i + ½ #tied) / n_neg, for each positive i;
    V01_j = (#positives scored above negative j + ½ #tied) / n_pos, for each negative j.
    From mid-ranks: V10 = (rank among all − rank among positives) / n_neg,
    V01 = 1 − (rank among all − rank among negatives) / n_pos. ``scores`` may have leading axes
    (e.g. [reader, modality, case]); cases lie along the last axis, in the order of ``truth``.
    """
    s = _scores(scores)
    t = binary_truth(truth, s.shape[-1])
    pos, neg = s[..., t], s[..., ~t]
    ranks = rankdata(s, axis=-1)
    v10 = (ranks[..., t] - rankdata(pos, axis=-1)) / neg.shape[-1]
    v01 = 1.0 - (ranks[..., ~t] - rankdata(neg, axis=-1)) / pos.shape[-1]
    return v10, v01


def jackknife_auc(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """AUC [...] and the AUC with each case left out in turn [..., case], in closed form from the placements.

    Leaving out positive i: (m·AUC − V10_i) / (m − 1); leaving out negative j: (n·AUC − V01_j) / (n − 1),
    with m positives and n negatives (each needs at least two).
    """
    s = _scores(scores)
    t = binary_truth(truth, s.shape[-1])
    v10, v01 = placements(s, t)
    m, n = v10.shape[-1], v01.shape[-1]
    if m < 2 or n < 2:
        raise ValueError("the jackknife needs at least two positive and two negative cases")
    auc = v10.mean(axis=-1)
    loo = np.empty_like(s)
    loo[..., t] = (m * auc[..., None] - v10) / (m - 1)
    loo[..., ~t] = (n * auc[..., None] - v01) / (n - 1)
    return auc, loo


def delong_covariance(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of k score vectors [k, case] on the same cases and their DeLong covariance matrix [k, k].

    AUC_r = mean(V10_r); Cov = S10 / m + S01 / n, where S10 and S01 are the sample covariance matrices
    (ddof 1) of the placement values over the m positives and the n negatives.
    """
    v10, v01 = placements(np.atleast_2d(scores), truth)
    if v10.ndim != 2:
        raise ValueError("scores must be [k, case]")
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        raise ValueError("the DeLong variance needs at least two positive and two negative cases")
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return v10.mean(axis=1), cov


@dataclass(frozen=True)
class AUC:
    """An AUC with its DeLong standard error and 95 % Wald interval (estimate ± z·SE clipped to [0, 1]);
    all None, with a reason, where it cannot be estimated."""

    estimate: float | None
    se: float | None
    low: float | None
    high: float | None
    reason: str | None = None


def auc_delong(scores, truth, z: float = Z95) -> AUC:
    """Empirical (Mann-Whitney, trapezoidal) AUC = P(score_pos > score_neg) + ½ P(tie), its DeLong standard
    error √Var and the Wald interval AUC ± z·SE clipped to [0, 1] (z = 1.96 as the study used); not estimable
    (with the reason) with fewer than two positive or two negative cases."""
    s = _scores(scores)
    positives = int(binary_truth(truth, s.shape[-1]).sum())
    if min(positives, s.shape[-1] - positives) < 2:
        return AUC(None, None, None, None, "needs at least two positive and two negative cases")
    auc, cov = delong_covariance(s[None], truth)
    se = float(np.sqrt(cov[0, 0]))
    est = float(auc[0])
    return AUC(est, se, max(0.0, est - z * se), min(1.0, est + z * se))


@dataclass(frozen=True)
class PairedAUC:
    """DeLong's test of two correlated AUCs: difference = AUC_a − AUC_b, its SE, z = difference / SE,
    two-sided normal p and the interval difference ± z_crit·SE."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p: float
    low: float
    high: float


def delong_paired(scores_a, scores_b, truth, z: float = Z95) -> PairedAUC:
    """DeLong et al. (1988) test for two AUCs on the same cases (e.g. the model vs one reader).

    Var(AUC_a − AUC_b) = Var_a + Var_b − 2·Cov_ab from the DeLong covariance matrix; z = difference / SE,
    p = 2·(1 − Φ(|z|)). With SE = 0 (both ROCs perfect or identical) z is 0 for no difference, ±∞ otherwise.
    """
    auc, cov = delong_covariance(np.stack([np.asarray(scores_a, float), np.asarray(scores_b, float)]), truth)
    diff = float(auc[0] - auc[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    stat = ratio(diff, se)
    p = float(2 * norm.sf(abs(stat)))
    return PairedAUC(float(auc[0]), float(auc[1]), diff, se, stat, p, diff - z * se, diff + z * se)


def roc_points(scores, truth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC curve: (FPR, TPR, thresholds), one point per distinct score from the highest down,
    starting at (0, 0) with threshold +∞; a case is called positive when its score ≥ the threshold.
    The same points as sklearn.metrics.roc_curve(drop_intermediate=False)."""
    s = _scores(scores)
    if s.ndim != 1:
        raise ValueError("scores must be 1-D")
    t = binary_truth(truth, s.size)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(t)[last]
    fp = last + 1 - tp
    return np.r_[0, fp] / fp[-1], np.r_[0, tp] / tp[-1], np.r_[np.inf, s[last]]


def operating_point(predicted_positive, truth) -> tuple[float, float]:
    """(FPR, TPR) of a binary call: FPR = FP / negatives = 1 − specificity, TPR = TP / positives = sensitivity;
    places a reader's call on the model's ROC curve."""
    call = _boolean(predicted_positive, "predicted_positive")
    t = binary_truth(truth, call.size)
    return float(call[~t].mean()), float(call[t].mean())


@dataclass(frozen=True)
class OneVsRest:
    """Per-class one-vs-rest AUCs and their unweighted (macro) mean over the classes that could be estimated."""

    per_class: dict[str, AUC]
    macro: float | None


def one_vs_rest_auc(probabilities, truth, classes: Sequence[str] = CLASSES, z: float = Z95) -> OneVsRest:
    """AUC of P(class c) for "class c vs all others", for each column c of ``probabilities`` [n × k], with
    ``truth`` [n] the class index; macro = mean of the k AUCs (as sklearn's roc_auc_score(multi_class="ovr",
    average="macro")). A class absent from ``truth`` (or the only one present) is not estimable and is left
    out of the macro mean."""
    p = _scores(probabilities)
    labels = np.asarray(truth)
    if p.ndim != 2 or p.shape != (labels.size, len(classes)):
        raise ValueError(f"probabilities must be [n × {len(classes)}] for {labels.size} cases, got {p.shape}")
    per_class = {}
    for k, name in enumerate(classes):
        hits = labels == k
        if hits.all() or not hits.any():
            per_class[name] = AUC(None, None, None, None, f"{name}: needs cases in and out of the class")
        else:
            per_class[name] = auc_delong(p[:, k], hits, z)
    estimable = [a.estimate for a in per_class.values() if a.reason is None]
    return OneVsRest(per_class, float(np.mean(estimable)) if estimable else None)


def two_way_auc(p_malignant, truth, z: float = Z95) -> AUC:
    """Benign-vs-malignant AUC of P(malignant) against the seven-way ``truth`` (class index; malignant =
    HCC, ICC, metastasis). ``p_malignant`` is [n] (the binary head) or [n × 7] seven-way probabilities,
    summed over the malignant classes."""
    p = _scores(p_malignant)
    if p.ndim == 2:
        p = p[:, MALIGNANT_INDICES].sum(axis=1)
    malignant = np.isin(np.asarray(truth), MALIGNANT_INDICES)
    return auc_delong(p, malignant, z)
