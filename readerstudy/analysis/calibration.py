"""Calibration of probabilities of malignancy against the reference: the reliability table and the Brier score
with Murphy's decomposition.

A probability is in [0, 1]: a reader's malignancy likelihood (0-100) divided by 100, or the model's
P(malignant) from its binary head; the outcome is True (1) for a malignant lesion.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from readerstudy.analysis.metrics import wilson_modified


def _checked(probability, outcome) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities as floats and outcomes as 0.0/1.0, checked: 1-D, equal lengths, no gaps, p in [0, 1]."""
    p, o = np.asarray(probability, dtype=float), np.asarray(outcome)
    if p.ndim != 1 or p.shape != o.shape or not p.size:
        raise ValueError(f"probability and outcome must be 1-D, non-empty and of one length, got {p.shape}, {o.shape}")
    if np.isnan(p).any():
        raise ValueError("probability has missing values: leave out reads or lesions without one")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probability must lie in [0, 1] (divide a 0-100 malignancy likelihood by 100)")
    if not np.isin(o, (0, 1)).all():
        raise ValueError("outcome must be True/False or 1/0 (1 = malignant)")
    return p, o.astype(float)


def bin_index(probability, bins: int) -> np.ndarray:
    """Uniform bin k = 0..bins − 1 of each probability, bins closed on the right: [0, 1/B], (1/B, 2/B], …,
    ((B − 1)/B, 1]. These are sklearn.calibration.calibration_curve(strategy="uniform")'s bins, with edges
    computed as k/B so that e.g. a likelihood of 30/100 falls in (0.2, 0.3] as 0.1 falls in [0, 0.1]."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return np.searchsorted(np.arange(1, bins) / bins, np.asarray(probability, dtype=float), side="left")


def reliability(probability, outcome, bins: int = 10) -> pd.DataFrame:
    """The reliability diagram's table, one row per non-empty bin (bin_index): bin, its edges low_edge and
    high_edge, n, mean_predicted = mean p in the bin, observed = share of outcomes 1 in the bin with its
    modified Wilson 95 % interval (observed_low, observed_high). A calibrated forecaster has observed ≈
    mean_predicted in every bin."""
    p, o = _checked(probability, outcome)
    index = bin_index(p, bins)
    rows = []
    for k in np.unique(index):
        in_bin = index == k
        observed = wilson_modified(int(o[in_bin].sum()), int(in_bin.sum()))
        rows.append(
            {
                "bin": int(k),
                "low_edge": k / bins,
                "high_edge": (k + 1) / bins,
                "n": int(in_bin.sum()),
                "mean_predicted": float(p[in_bin].mean()),
                "observed": observed.estimate,
                "observed_low": observed.low,
                "observed_high": observed.high,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Brier:
    """The Brier score and its decomposition: score = reliability − resolution + uncertainty + within_bin."""

    score: float
    reliability: float
    resolution: float
    uncertainty: float
    within_bin: float


def brier(probability, outcome, bins: int | None = 10) -> Brier:
    """Brier score BS = (1/N) Σ (pᵢ − oᵢ)² with Murphy's (1973) decomposition BS = REL − RES + UNC.

    Over forecast groups k with nₖ forecasts, mean forecast p̄ₖ and observed frequency ōₖ (ō overall):
    REL = (1/N) Σ nₖ (p̄ₖ − ōₖ)² (lower is better), RES = (1/N) Σ nₖ (ōₖ − ō)² (higher is better),
    UNC = ō (1 − ō). The groups are the reliability bins (bin_index), or each distinct forecast value when
    ``bins`` is None (Murphy's setting, e.g. readers' 0-100 likelihoods: then within_bin is 0). Binning
    distinct forecasts together leaves within_bin = (1/N) Σₖ Σᵢ (pᵢ − p̄ₖ)² − (2/N) Σₖ Σᵢ (oᵢ − ōₖ)(pᵢ − p̄ₖ)
    (Stephenson, Coelho & Jolliffe 2008), so that the four terms add up to BS exactly.
    """
    p, o = _checked(probability, outcome)
    group = np.unique(p if bins is None else bin_index(p, bins), return_inverse=True)[1]
    n_k = np.bincount(group)
    mean_p, mean_o = np.bincount(group, weights=p) / n_k, np.bincount(group, weights=o) / n_k
    p_dev, o_dev = p - mean_p[group], o - mean_o[group]
    overall = o.mean()
    return Brier(
        score=float(np.mean((p - o) ** 2)),
        reliability=float(np.sum(n_k * (mean_p - mean_o) ** 2) / len(p)),
        resolution=float(np.sum(n_k * (mean_o - overall) ** 2) / len(p)),
        uncertainty=float(overall * (1 - overall)),
        within_bin=float(np.mean(p_dev**2) - 2 * np.mean(o_dev * p_dev)),
    )
