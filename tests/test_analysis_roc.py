"""ROC statistics: a published AUC, brute-force pairwise definitions, and scikit-learn cross-checks."""

import numpy as np
import pytest
from sklearn import metrics as sk

from inference.domain import CLASSES
from readerstudy.analysis.roc import (
    auc_delong,
    delong_covariance,
    delong_paired,
    jackknife_auc,
    one_vs_rest_auc,
    operating_point,
    placements,
    roc_points,
    two_way_auc,
)


def hanley_mcneil_ct():
    """Hanley & McNeil (1982, Radiology 143:29) Table 1: 109 CT images rated 1-5; published AUC 0.893."""
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    return np.r_[normal, abnormal].astype(float), np.r_[np.zeros(58, bool), np.ones(51, bool)]


def tied_scores(n=160, seed=1):
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.35
    return np.round(rng.normal(size=n) + 1.2 * truth, 1), truth


def pairwise_kernel(scores, truth):
    """ψ(pos, neg) = 1 if pos > neg, ½ if tied, 0 otherwise: the m × n matrix the fast code never builds."""
    pos, neg = scores[truth], scores[~truth]
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def test_published_auc_and_sklearn():
    scores, truth = hanley_mcneil_ct()
    auc = auc_delong(scores, truth)
    assert auc.estimate == pytest.approx(0.893, abs=5e-4)
    assert auc.estimate == pytest.approx(sk.roc_auc_score(truth, scores), abs=1e-12)
    assert auc.low == pytest.approx(auc.estimate - 1.96 * auc.se) and auc.high == pytest.approx(
        auc.estimate + 1.96 * auc.se
    )


def test_placements_match_the_pairwise_definition_with_ties_and_leading_axes():
    scores, truth = tied_scores()
    kernel = pairwise_kernel(scores, truth)
    v10, v01 = placements(scores, truth)
    np.testing.assert_allclose(v10, kernel.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(v01, kernel.mean(axis=0), atol=1e-12)
    stacked = np.stack([scores, -scores, scores * 0])
    v10s, v01s = placements(stacked, truth)
    np.testing.assert_allclose(v10s[0], v10, atol=1e-12)
    np.testing.assert_allclose(v10s[1], 1 - v10, atol=1e-12)  # reversed scores: below ↔ above
    np.testing.assert_allclose(v10s[2], 0.5)  # all tied
    assert v01s.shape == (3, (~truth).sum())


def test_delong_covariance_matches_the_pairwise_structural_components():
    scores, truth = tied_scores()
    other = scores + np.random.default_rng(2).normal(scale=0.8, size=scores.size)
    auc, cov = delong_covariance(np.stack([scores, other]), truth)
    kernels = [pairwise_kernel(s, truth) for s in (scores, other)]
    v10 = np.array([k.mean(axis=1) for k in kernels])
    v01 = np.array([k.mean(axis=0) for k in kernels])
    expected = np.cov(v10) / truth.sum() + np.cov(v01) / (~truth).sum()
    np.testing.assert_allclose(auc, [k.mean() for k in kernels], atol=1e-12)
    np.testing.assert_allclose(cov, expected, rtol=1e-10)


def test_jackknife_closed_form_matches_refitted_aucs_and_stratified_jackknife_equals_delong():
    scores, truth = tied_scores(n=60, seed=3)
    auc, loo = jackknife_auc(scores, truth)
    keep = ~np.eye(scores.size, dtype=bool)
    refitted = [sk.roc_auc_score(truth[k], scores[k]) for k in keep]
    np.testing.assert_allclose(loo, refitted, atol=1e-12)
    assert auc == pytest.approx(sk.roc_auc_score(truth, scores))
    # The jackknife stratified by truth is exactly the DeLong variance S10/m + S01/n.
    stratified = sum((loo[g].size - 1) / loo[g].size * np.sum((loo[g] - loo[g].mean()) ** 2) for g in (truth, ~truth))
    assert stratified == pytest.approx(auc_delong(scores, truth).se ** 2, rel=1e-10)


def test_roc_points_are_sklearns_and_integrate_to_the_auc():
    scores, truth = tied_scores()
    fpr, tpr, thresholds = roc_points(scores, truth)
    sk_fpr, sk_tpr, sk_thresholds = sk.roc_curve(truth, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds, sk_thresholds)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc_delong(scores, truth).estimate, abs=1e-12)


def test_delong_paired():
    scores, truth = tied_scores()
    same = delong_paired(scores, scores, truth)
    assert (same.difference, same.se, same.z, same.p) == (0.0, 0.0, 0.0, 1.0)
    noisy = scores + np.random.default_rng(4).normal(scale=1.5, size=scores.size)
    test = delong_paired(scores, noisy, truth)
    auc, cov = delong_covariance(np.stack([scores, noisy]), truth)
    assert test.difference == pytest.approx(auc[0] - auc[1])
    assert test.difference > 0
    assert test.se == pytest.approx(np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))
    assert test.se < np.sqrt(cov[0, 0] + cov[1, 1])  # the pairing (positive covariance) narrows the SE
    assert test.z == pytest.approx(test.difference / test.se)
    assert 0 < test.p < 0.05
    assert delong_paired(noisy, scores, truth).difference == pytest.approx(-test.difference)


def test_one_vs_rest_matches_sklearn_and_skips_an_absent_class():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, len(CLASSES), 200)
    logits = rng.normal(size=(200, len(CLASSES))) + 1.5 * np.eye(len(CLASSES))[truth]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = one_vs_rest_auc(probabilities, truth)
    for k, name in enumerate(CLASSES):
        assert result.per_class[name].estimate == pytest.approx(sk.roc_auc_score(truth == k, probabilities[:, k]))
    assert result.macro == pytest.approx(sk.roc_auc_score(truth, probabilities, multi_class="ovr", average="macro"))

    without_cyst = truth[truth != 0], probabilities[truth != 0]
    partial = one_vs_rest_auc(without_cyst[1], without_cyst[0])
    assert partial.per_class["cyst"].estimate is None and "cyst" in partial.per_class["cyst"].reason
    assert partial.macro == pytest.approx(np.mean([partial.per_class[c].estimate for c in CLASSES[1:]]))


def test_two_way_auc_from_the_binary_head_or_seven_way_probabilities():
    rng = np.random.default_rng(6)
    truth = rng.integers(0, len(CLASSES), 120)
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), 120)
    p_malignant = probabilities[:, 4:].sum(axis=1)  # HCC, ICC, metastasis
    expected = sk.roc_auc_score(truth >= 4, p_malignant)
    assert two_way_auc(probabilities, truth).estimate == pytest.approx(expected)
    assert two_way_auc(p_malignant, truth).estimate == pytest.approx(expected)


def test_operating_point_by_hand_and_on_the_roc_curve():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    call = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0])
    assert operating_point(call, truth) == (0.2, 0.75)
    scores, truth = tied_scores()
    fpr, tpr, thresholds = roc_points(scores, truth)
    k = len(thresholds) // 2
    assert operating_point(scores >= thresholds[k], truth) == pytest.approx((fpr[k], tpr[k]))


@pytest.mark.parametrize(
    ("scores", "truth", "message"),
    [
        ([0.1, 0.2, 0.3], [1, 1, 1], "one positive and one negative"),
        ([0.1, 0.2, 0.3], [0, 1, 2], "0/1 or boolean"),
        ([0.1, np.nan, 0.3], [0, 1, 1], "finite"),
        ([0.1, 0.2, 0.3], [0, 1], "one entry per case"),
    ],
)
def test_bad_input_is_refused(scores, truth, message):
    with pytest.raises(ValueError, match=message):
        auc_delong(scores, truth)


def test_an_auc_of_a_single_negative_or_positive_case_is_not_estimable():
    auc = auc_delong([0.1, 0.2, 0.3], [0, 1, 1])
    assert auc.estimate is None and "at least two positive and two negative" in auc.reason
    with pytest.raises(ValueError, match="at least two positive and two negative"):
        delong_covariance(np.array([[0.1, 0.2, 0.3]]), [0, 1, 1])
