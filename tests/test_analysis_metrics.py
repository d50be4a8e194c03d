"""Diagnostic-accuracy statistics: hand-worked and published values, and scikit-learn / statsmodels cross-checks."""

import numpy as np
import pytest
from scipy.stats import chi2, norm
from sklearn import metrics as sk
from statsmodels.stats.proportion import proportion_confint

from inference.domain import CLASSES, is_malignant
from readerstudy.analysis.metrics import (
    Estimate,
    accuracy,
    binary_metrics,
    confusion_matrix,
    likelihood_ratio,
    one_vs_rest,
    two_way,
    wilson,
    wilson_modified,
)

Z_EXACT = norm.ppf(0.975)


def test_estimate_reads_like_a_mapping():
    est = Estimate(0.5, 0.2, 0.8)
    assert (est["estimate"], est["low"], est["high"], est["reason"]) == (0.5, 0.2, 0.8, None)
    with pytest.raises(KeyError):
        est["mean"]


def test_wilson_by_hand_45_of_50():
    # z = 1.96: centre (45 + 1.9208) / 53.8416 = 0.871460, half-width 1.96·√50/53.8416·√(0.09 + 0.019208) = 0.085065.
    est = wilson(45, 50)
    assert est.estimate == 0.9
    assert est.low == pytest.approx(0.786395, abs=1e-6)
    assert est.high == pytest.approx(0.956525, abs=1e-6)


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    # Newcombe (1998) Stat Med 17:857, Table II, method 3 (Wilson score, no continuity correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_1998(x, n, low, high):
    est = wilson(x, n)
    assert (est.low, est.high) == pytest.approx((low, high), abs=6e-5)


@pytest.mark.parametrize(("x", "n"), [(0, 7), (3, 7), (7, 7), (45, 50), (90, 113), (1, 200)])
def test_wilson_matches_statsmodels(x, n):
    est = wilson(x, n, z=Z_EXACT)
    assert (est.low, est.high) == pytest.approx(proportion_confint(x, n, method="wilson"), abs=1e-12)


def test_modified_wilson_lower_bound_for_one_success():
    # ½·χ²₂(0.05)/10 = −ln(0.95)/10 = 0.005129; the upper bound stays Wilson's.
    est = wilson_modified(1, 10)
    assert est.low == pytest.approx(chi2.ppf(0.05, 2) / 20) == pytest.approx(-np.log(0.95) / 10)
    assert est.low == pytest.approx(0.005129, abs=1e-6)
    assert est.low < wilson(1, 10).low
    assert est.high == wilson(1, 10).high == pytest.approx(0.404156, abs=1e-6)


def test_modified_wilson_near_n_mirrors_near_zero():
    low_side, high_side = wilson_modified(2, 40), wilson_modified(38, 40)
    assert low_side.low == pytest.approx(chi2.ppf(0.05, 4) / 80) == pytest.approx(0.0088840, abs=1e-6)
    assert high_side.high == pytest.approx(1 - low_side.low)
    assert high_side.low == wilson(38, 40).low


def test_modified_wilson_applies_for_any_n_and_not_beyond_two():
    assert wilson_modified(2, 500).low == pytest.approx(chi2.ppf(0.05, 4) / 1000)
    assert wilson_modified(3, 40) == wilson(3, 40)
    assert wilson_modified(37, 40) == wilson(37, 40)


def test_modified_wilson_edges():
    assert wilson_modified(0, 5).low == 0.0
    assert wilson_modified(5, 5).high == 1.0
    both = wilson_modified(1, 2)
    assert both.low == pytest.approx(chi2.ppf(0.05, 2) / 4)
    assert both.high == pytest.approx(1 - chi2.ppf(0.05, 2) / 4)
    empty = wilson_modified(0, 0)
    assert empty.estimate is None and empty.low is None and "n = 0" in empty.reason
    with pytest.raises(ValueError):
        wilson_modified(6, 5)


def test_likelihood_ratios_by_hand():
    # sens 10/13, 1 − spec 2/32: LR+ = 12.3077, SE(log) = √(1/10 − 1/13 + 1/2 − 1/32) = 0.70130.
    # 1 − sens 3/13, spec 30/32: LR− = 0.24615, SE(log) = √(1/3 − 1/13 + 1/30 − 1/32) = 0.50835.
    lr = likelihood_ratio(tp=10, fp=2, tn=30, fn=3)
    plr, nlr = lr["plr"], lr["nlr"]
    assert plr.estimate == pytest.approx(12.30769, rel=1e-6)
    assert (plr.low, plr.high) == pytest.approx((3.11326, 48.6562), rel=1e-5)
    se = np.sqrt(1 / 3 - 1 / 13 + 1 / 30 - 1 / 32)
    assert nlr.estimate == pytest.approx(0.246154, rel=1e-5)
    assert (nlr.low, nlr.high) == pytest.approx((0.246154 * np.exp(-1.96 * se), 0.246154 * np.exp(1.96 * se)), rel=1e-5)


@pytest.mark.parametrize(
    ("counts", "key", "named"),
    [
        ({"tp": 0, "fp": 3, "tn": 10, "fn": 5}, "plr", "tp = 0"),
        ({"tp": 4, "fp": 0, "tn": 10, "fn": 5}, "plr", "fp = 0"),
        ({"tp": 4, "fp": 3, "tn": 10, "fn": 0}, "nlr", "fn = 0"),
        ({"tp": 4, "fp": 3, "tn": 0, "fn": 5}, "nlr", "tn = 0"),
    ],
)
def test_likelihood_ratio_not_estimable_names_the_count(counts, key, named):
    est = likelihood_ratio(**counts)[key]
    assert est.estimate is None and est.low is None and est.high is None
    assert est.reason.startswith(named)


def test_binary_metrics_by_hand():
    result = binary_metrics(tp=10, fp=2, tn=30, fn=3)
    assert set(result) == {"accuracy", "sensitivity", "specificity", "ppv", "npv", "plr", "nlr"}
    expected = {
        "accuracy": (40, 45),
        "sensitivity": (10, 13),
        "specificity": (30, 32),
        "ppv": (10, 12),
        "npv": (30, 33),
    }
    for key, (x, n) in expected.items():
        assert result[key] == wilson_modified(x, n), key
        assert result[key].estimate == pytest.approx(x / n)
    assert result["specificity"].high == pytest.approx(1 - chi2.ppf(0.05, 4) / 64)  # n − x = 2: modified


def test_binary_metrics_names_an_empty_denominator():
    result = binary_metrics(tp=0, fp=0, tn=6, fn=0)
    assert result["sensitivity"].estimate is None and result["sensitivity"].reason == "tp + fn = 0"
    assert result["ppv"].reason == "tp + fp = 0"
    assert result["specificity"].estimate == 1.0 and result["npv"].estimate == 1.0


@pytest.fixture
def reads():
    """200 random reference and predicted class indices, right about 70 % of the time."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, len(CLASSES), 200)
    predicted = np.where(rng.random(200) < 0.7, truth, rng.integers(0, len(CLASSES), 200))
    return truth, predicted


def test_confusion_matrix_matches_sklearn(reads):
    truth, predicted = reads
    matrix = confusion_matrix(truth, predicted)
    assert matrix.shape == (7, 7) and matrix.sum() == 200
    np.testing.assert_array_equal(matrix, sk.confusion_matrix(truth, predicted, labels=range(7)))
    assert confusion_matrix([0, 1], [1, 1], k=2).tolist() == [[0, 1], [0, 1]]


@pytest.mark.parametrize(
    ("truth", "predicted"), [([0, 7], [0, 1]), ([0, -1], [0, 1]), ([0.0, 1.0], [0, 1]), ([0, 1], [0, 1, 2])]
)
def test_confusion_matrix_rejects_bad_labels(truth, predicted):
    with pytest.raises(ValueError):
        confusion_matrix(truth, predicted)


def test_one_vs_rest_and_accuracy_match_sklearn(reads):
    truth, predicted = reads
    matrix = confusion_matrix(truth, predicted)
    per_class = one_vs_rest(matrix)
    assert list(per_class) == list(CLASSES)
    recall = sk.recall_score(truth, predicted, labels=range(7), average=None)
    precision = sk.precision_score(truth, predicted, labels=range(7), average=None)
    for i, name in enumerate(CLASSES):
        assert per_class[name]["sensitivity"].estimate == pytest.approx(recall[i])
        assert per_class[name]["ppv"].estimate == pytest.approx(precision[i])
        negatives = truth != i
        assert per_class[name]["specificity"].estimate == pytest.approx(np.mean(predicted[negatives] != i))
        assert per_class[name]["accuracy"].estimate == pytest.approx(np.mean((truth == i) == (predicted == i)))
    assert accuracy(matrix).estimate == pytest.approx(sk.accuracy_score(truth, predicted))


def test_two_way_matches_sklearn_on_collapsed_labels(reads):
    truth, predicted = reads
    result = two_way(confusion_matrix(truth, predicted))
    truth_m = np.array([is_malignant(t) for t in truth])
    predicted_m = np.array([is_malignant(p) for p in predicted])
    assert result["sensitivity"].estimate == pytest.approx(sk.recall_score(truth_m, predicted_m))
    assert result["ppv"].estimate == pytest.approx(sk.precision_score(truth_m, predicted_m))
    assert result["specificity"].estimate == pytest.approx(sk.recall_score(~truth_m, ~predicted_m))
    assert result["accuracy"].estimate == pytest.approx(sk.accuracy_score(truth_m, predicted_m))


@pytest.fixture
def test_set_matrix():
    """The paper's test set (16 cysts, 11 FNH, 22 haemangiomas, 21 abscesses, 15 HCC, 11 ICC, 17 metastases),
    all read right but 3 metastases read as abscess and 1 FNH read as haemangioma."""
    matrix = np.diag([16, 11, 22, 21, 15, 11, 17])
    matrix[6, 6], matrix[6, 3] = 14, 3
    matrix[1, 1], matrix[1, 2] = 10, 1
    return matrix


def test_one_vs_rest_by_hand(test_set_matrix):
    per_class = one_vs_rest(test_set_matrix)
    metastasis, abscess = per_class["metastasis"], per_class["abscess"]
    # metastasis: tp 14, fn 3, fp 0, tn 96.
    assert metastasis["sensitivity"].estimate == pytest.approx(14 / 17)
    assert metastasis["specificity"].estimate == 1.0 and metastasis["specificity"].high == 1.0
    assert metastasis["plr"].reason.startswith("fp = 0")
    # abscess: tp 21, fn 0, fp 3, tn 89: LR+ = 1 / (3/92).
    assert abscess["ppv"].estimate == pytest.approx(21 / 24)
    assert abscess["plr"].estimate == pytest.approx(92 / 3)
    assert abscess["nlr"].reason.startswith("fn = 0")
    assert accuracy(test_set_matrix) == wilson_modified(109, 113)


def test_two_way_by_hand(test_set_matrix):
    # Malignant = positive: 3 metastases read as abscess are false negatives; FNH → haemangioma stays benign.
    result = two_way(test_set_matrix)
    assert result["sensitivity"] == wilson_modified(40, 43)
    assert result["specificity"] == wilson_modified(70, 70)
    assert result["accuracy"] == wilson_modified(110, 113)
    with pytest.raises(ValueError):
        two_way(np.eye(2))


def test_accuracy_of_the_papers_model():
    # Seven-way accuracy 79.6 % (90/113); 90 and 113 − 90 are far from the boundary, so it is plain Wilson.
    matrix = np.zeros((7, 7), int)
    matrix[0, 0], matrix[0, 1] = 90, 23
    est = accuracy(matrix)
    assert round(est.estimate * 100, 1) == 79.6
    assert est == wilson(90, 113)
    # centre 91.9208 / 116.8416 = 0.786714, half-width 1.96·√113/116.8416·√(0.162112 + 0.008499) = 0.073654.
    assert (est.low, est.high) == pytest.approx((0.71306, 0.86037), abs=1e-5)
