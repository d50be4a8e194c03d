"""Reliability table and Brier score with Murphy's decomposition: hand-worked values and scikit-learn."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from readerstudy.analysis.calibration import bin_index, brier, reliability
from readerstudy.analysis.metrics import wilson_modified

# Forecasts 0.1 (twice, both benign), 0.3 (twice, one malignant), 0.8 (four times, three malignant).
PROBABILITY = [0.1, 0.1, 0.3, 0.3, 0.8, 0.8, 0.8, 0.8]
OUTCOME = [0, 0, 0, 1, 1, 1, 1, 0]


def test_brier_by_hand():
    # BS = (2 · 0.01 + 0.09 + 0.49 + 3 · 0.04 + 0.64) / 8 = 0.17.
    # Groups 0.1, 0.3, 0.8 with ō = 0, ½, ¾ and overall ō = ½:
    # REL = (2 · 0.1² + 2 · 0.2² + 4 · 0.05²) / 8 = 0.11/8, RES = (2 · ¼ + 0 + 4 · ¼²) / 8 = 0.75/8, UNC = ¼.
    expected = (0.17, 0.11 / 8, 0.75 / 8, 0.25, 0.0)
    for bins in (None, 10):
        result = brier(PROBABILITY, OUTCOME, bins=bins)
        assert (result.score, result.reliability, result.resolution, result.uncertainty) == pytest.approx(expected[:4])
        assert result.within_bin == pytest.approx(0.0, abs=1e-15)


def test_coarse_bins_leave_a_within_bin_term_by_hand():
    # Two bins: [0, ½] holds 0.1, 0.1, 0.3, 0.3 (p̄ 0.2, ō ¼), (½, 1] the 0.8s (ō ¾).
    # REL = (4 · 0.05² + 4 · 0.05²) / 8 = 0.0025, RES = 8 · ¼² / 8 = 0.0625; within-bin variance 4 · 0.1² / 8 =
    # 0.005, covariance 2/8 · Σ (o − ō)(p − p̄) = 2/8 · 0.1 = 0.025: within_bin = −0.02, and 0.0025 − 0.0625 + 0.25
    # − 0.02 = 0.17.
    result = brier(PROBABILITY, OUTCOME, bins=2)
    assert (result.reliability, result.resolution, result.within_bin) == pytest.approx((0.0025, 0.0625, -0.02))
    assert result.score == pytest.approx(0.17)


def test_reliability_by_hand():
    table = reliability(PROBABILITY, OUTCOME)
    assert table["bin"].tolist() == [0, 2, 7]  # 0.1 in [0, 0.1], 0.3 in (0.2, 0.3], 0.8 in (0.7, 0.8]
    assert table[["low_edge", "high_edge"]].to_numpy() == pytest.approx(np.array([[0, 0.1], [0.2, 0.3], [0.7, 0.8]]))
    assert table["n"].tolist() == [2, 2, 4]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.3, 0.8])
    assert table["observed"].tolist() == pytest.approx([0, 0.5, 0.75])
    expected = wilson_modified(3, 4)
    assert (table.at[2, "observed_low"], table.at[2, "observed_high"]) == pytest.approx((expected.low, expected.high))


def test_bins_are_closed_on_the_right():
    assert bin_index([0.0, 0.1, 0.10001, 0.3, 0.30001, 0.9, 0.90001, 1.0], 10).tolist() == [0, 0, 1, 2, 3, 8, 9, 9]
    assert bin_index(np.arange(101) / 100, 10).tolist() == [0] * 11 + [k for k in range(1, 10) for _ in range(10)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_model_like_probabilities_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 0.6, 250)
    o = rng.uniform(size=250) < p**1.3
    table = reliability(p, o, bins=10)
    observed, predicted = calibration_curve(o, p, n_bins=10, strategy="uniform")
    assert table["observed"].to_numpy() == pytest.approx(observed, abs=1e-12)
    assert table["mean_predicted"].to_numpy() == pytest.approx(predicted, abs=1e-12)
    result = brier(p, o, bins=10)
    assert result.score == pytest.approx(brier_score_loss(o, p), abs=1e-12)
    total = result.reliability - result.resolution + result.uncertainty + result.within_bin
    assert total == pytest.approx(result.score, abs=1e-12)
    assert result.within_bin != pytest.approx(0.0, abs=1e-6)


def test_reader_likelihoods_match_scikit_learn_at_the_bin_edges():
    # Reader likelihoods are whole per cents, many on the edges (10, 20, …): same bins as scikit-learn.
    rng = np.random.default_rng(5)
    malignancy = rng.choice(np.arange(0, 101, 5), 300)
    o = rng.uniform(size=300) < malignancy / 100
    table = reliability(malignancy / 100, o)
    observed, predicted = calibration_curve(o, malignancy / 100, n_bins=10, strategy="uniform")
    assert table["observed"].to_numpy() == pytest.approx(observed, abs=1e-12)
    assert table["mean_predicted"].to_numpy() == pytest.approx(predicted, abs=1e-12)
    exact = brier(malignancy / 100, o, bins=None)
    assert exact.within_bin == pytest.approx(0.0, abs=1e-15)
    assert exact.reliability - exact.resolution + exact.uncertainty == pytest.approx(exact.score, abs=1e-12)
    assert exact.score == pytest.approx(brier_score_loss(o, malignancy / 100), abs=1e-12)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="divide a 0-100"):
        brier([30, 70], [0, 1])
    with pytest.raises(ValueError, match="missing values"):
        reliability([0.3, np.nan], [0, 1])
    with pytest.raises(ValueError, match="outcome must be"):
        brier([0.3, 0.7], [0, 2])
    with pytest.raises(ValueError, match="of one length"):
        brier([0.3, 0.7], [0, 1, 1])
    with pytest.raises(ValueError, match="at least 1"):
        reliability([0.3], [1], bins=0)
