"""Inter-reader agreement: Cohen's kappa for two readers, Fleiss' kappa for several, with Z tests of κ = 0.

Kappa is unitless (1 = perfect agreement, 0 = chance agreement); p-values are two-sided from the normal.
"""

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from inference.domain import CLASSES
from readerstudy.analysis.metrics import Z95, class_indices, confusion_matrix


@dataclass(frozen=True)
class Kappa:
    """A kappa with its null SE (se0), Z = κ / se0 and two-sided p; se, low, high: the non-null SE and interval
    where the method gives one. n counts the subjects (lesions), raters the readers. Values are None, with a
    reason, where they are not defined."""

    kappa: float | None
    se0: float | None
    z: float | None
    p: float | None
    n: int
    raters: int
    se: float | None = None
    low: float | None = None
    high: float | None = None
    reason: str | None = None


def _kappa(kappa: float, se0: float, n: int, raters: int, se: float | None = None, z: float = Z95) -> Kappa:
    """Z = κ / se0, p = 2·(1 − Φ(|Z|)); interval κ ± z·se when se is given."""
    low, high = (float(kappa - z * se), float(kappa + z * se)) if se is not None else (None, None)
    if se0 <= 0:
        reason = "the SE under the null is 0 (a reader used a single category)"
        return Kappa(kappa, se0, None, None, n, raters, se, low, high, reason)
    stat = kappa / se0
    return Kappa(kappa, se0, stat, float(2 * norm.sf(abs(stat))), n, raters, se, low, high)


def cohen_kappa(a, b, k: int = len(CLASSES), z: float = Z95) -> Kappa:
    """Cohen's kappa of two readers' class indices on the same subjects (Fleiss, Cohen & Everitt 1969 SEs).

    With p_ij the proportions of the k × k table (rows a, columns b), margins p_i· and p_·j:
    po = Σ p_ii, pe = Σ p_i· p_·i, κ = (po − pe) / (1 − pe).
    Null SE: se0 = √(pe + pe² − Σ p_i· p_·i (p_i· + p_·i)) / ((1 − pe) √n); Z = κ / se0.
    Non-null SE for the interval κ ± z·se:
    se² = [Σ p_ii (1 − (p_i· + p_·i)(1 − κ))² + (1 − κ)² Σ_{i≠j} p_ij (p_·i + p_j·)² − (κ − pe (1 − κ))²]
          / ((1 − pe)² n).
    Both are the formulas of statsmodels' cohens_kappa (std_kappa0, std_kappa) and SAS PROC FREQ.
    """
    table = confusion_matrix(a, b, k).astype(float)
    n = int(table.sum())
    if n == 0:
        return Kappa(None, None, None, None, 0, 2, reason="no subjects")
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    po, pe = float(np.trace(p)), float(rows @ cols)
    if pe >= 1:
        return Kappa(None, None, None, None, n, 2, reason="chance agreement is 1: both readers used one category")
    kappa = (po - pe) / (1 - pe)
    se0 = np.sqrt(pe + pe**2 - float(np.sum(rows * cols * (rows + cols)))) / ((1 - pe) * np.sqrt(n))
    diagonal = np.diag(p) * (1 - (rows + cols) * (1 - kappa)) ** 2
    off = p * (cols[:, None] + rows[None, :]) ** 2
    np.fill_diagonal(off, 0)
    variance = (diagonal.sum() + (1 - kappa) ** 2 * off.sum() - (kappa - pe * (1 - kappa)) ** 2) / ((1 - pe) ** 2 * n)
    return _kappa(kappa, float(se0), n, 2, float(np.sqrt(max(variance, 0.0))), z)


def fleiss_kappa(ratings, k: int = len(CLASSES)) -> Kappa:
    """Fleiss' kappa for m readers who each rated every subject; ratings: subjects × readers class indices.

    With n_ij the number of readers putting subject i in class j (N subjects, m readers):
    P_i = (Σ_j n_ij² − m) / (m (m − 1)), P̄ = mean P_i, p_j = Σ_i n_ij / (N m), q_j = 1 − p_j,
    P̄e = Σ p_j², κ = (P̄ − P̄e) / (1 − P̄e).
    Null SE (Fleiss, Nee & Landis 1979):
    se0 = √2 / (Σ p_j q_j √(N m (m − 1))) · √((Σ p_j q_j)² − Σ p_j q_j (q_j − p_j)); Z = κ / se0.
    No non-null SE is given (se, low, high are None).
    """
    ratings = class_indices(ratings, k, "ratings")
    if ratings.ndim != 2 or ratings.shape[1] < 2:
        raise ValueError(f"ratings must be subjects × readers with at least two readers, got shape {ratings.shape}")
    subjects, m = ratings.shape
    if subjects == 0:
        return Kappa(None, None, None, None, 0, m, reason="no subjects")
    n_ij = (ratings[:, :, None] == np.arange(k)).sum(axis=1)
    p_bar = float(np.mean((np.sum(n_ij**2, axis=1) - m) / (m * (m - 1))))
    p_j = n_ij.sum(axis=0) / (subjects * m)
    pe = float(np.sum(p_j**2))
    if pe >= 1:
        return Kappa(None, None, None, None, subjects, m, reason="chance agreement is 1: all readers used one category")
    kappa = (p_bar - pe) / (1 - pe)
    q_j = 1 - p_j
    pq = float(np.sum(p_j * q_j))
    se0 = np.sqrt(2) / (pq * np.sqrt(subjects * m * (m - 1))) * np.sqrt(pq**2 - np.sum(p_j * q_j * (q_j - p_j)))
    return _kappa(kappa, float(se0), subjects, m)
