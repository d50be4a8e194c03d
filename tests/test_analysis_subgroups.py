"""Subgroup accuracy: size classes, modified Wilson intervals per level and the test across levels."""

from math import exp

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, fisher_exact

from inference.preprocess import crop_side_mm
from readerstudy.analysis.metrics import wilson_modified
from readerstudy.analysis.paired import unpaired_proportions
from readerstudy.analysis.subgroups import SIZE_BINS, size_bins, subgroup_accuracy


def test_size_bins_follow_the_crop_rule():
    diameters = [5.0, 15.9, 16.0, 32.0, 32.1, 80.0]
    assert size_bins(diameters).tolist() == ["< 16 mm", "< 16 mm", "16-32 mm", "16-32 mm", "> 32 mm", "> 32 mm"]
    cubes = [crop_side_mm(d, box_mm=(d, d, d), margin_mm=10.0) for d in diameters]
    assert [{32.0: 0, 64.0: 1}.get(c, 2) for c in cubes] == list(size_bins(diameters).codes)
    assert size_bins([np.nan, 20.0]).isna().tolist() == [True, False]
    assert list(size_bins([40.0, 10.0]).categories) == list(SIZE_BINS)


def reads(levels, correct, group="resident", **columns) -> pd.DataFrame:
    """One read per entry: the subgroup level, whether it is correct, the reader group, lesion ids l0, l1, …"""
    return pd.DataFrame(
        {
            "lesion": [f"l{i}" for i in range(len(levels))],
            "group": group,
            "phase": "unaided",
            "cirrhosis": levels,
            "correct": correct,
            **columns,
        }
    )


def test_two_levels_by_hand_with_fisher():
    # No cirrhosis 7/10 right, cirrhosis 2/6. Table [[7, 3], [2, 4]], margins 10, 6 × 9, 7, N = 16:
    # P(x) = C(10, x) C(6, 9 − x) / 11440 = 120, 1260, 3780, 4200, 1800, 270, 10 for x = 3..9; observed x = 7 (1800),
    # p = (120 + 1260 + 1800 + 270 + 10) / 11440.
    frame = reads([False] * 10 + [True] * 6, [True] * 7 + [False] * 3 + [True] * 2 + [False] * 4)
    table = subgroup_accuracy(frame, "cirrhosis", "resident")
    assert table["level"].tolist() == [False, True]
    assert table[["n", "correct"]].to_numpy().tolist() == [[10, 7], [6, 2]]
    assert table["accuracy"].tolist() == pytest.approx([0.7, 1 / 3])
    assert (table.at[0, "test"], table.at[0, "p"]) == ("fisher", pytest.approx(3460 / 11440))
    assert table.at[0, "p"] == pytest.approx(fisher_exact([[7, 3], [2, 4]]).pvalue)
    assert table.at[0, "p"] == unpaired_proportions(7, 10, 2, 6).p
    assert table.at[1, "test"] is None and np.isnan(table.at[1, "p"])


def test_intervals_are_modified_wilson():
    # 2/6 sits in the modified lower bound's range (x = 2): chi2.ppf(0.05, 4) / 12, not the plain Wilson bound.
    frame = reads([False] * 10 + [True] * 6, [True] * 7 + [False] * 3 + [True] * 2 + [False] * 4)
    table = subgroup_accuracy(frame, "cirrhosis", "resident").set_index("level")
    for level, (x, n) in {False: (7, 10), True: (2, 6)}.items():
        expected = wilson_modified(x, n)
        assert (table.at[level, "low"], table.at[level, "high"]) == pytest.approx((expected.low, expected.high))
    assert table.at[True, "low"] == pytest.approx(0.059, abs=5e-4)


def test_three_levels_by_hand_with_chi_square():
    # Scanners 10/30, 20/30, 15/30 right: every expected count 15, X² = 20/3 on 2 df, p = exp(−10/3).
    levels = ["Signa"] * 30 + ["Prisma"] * 30 + ["Ingenia"] * 30
    correct = [i < 10 for i in range(30)] + [i < 20 for i in range(30)] + [i < 15 for i in range(30)]
    table = subgroup_accuracy(reads(levels, correct, scanner_model=levels), "scanner_model", "resident")
    assert table["level"].tolist() == ["Ingenia", "Prisma", "Signa"]
    assert (table.at[0, "test"], table.at[0, "p"]) == ("chi-square", pytest.approx(exp(-10 / 3)))
    expected = chi2_contingency([[15, 15], [20, 10], [10, 20]], correction=False).pvalue
    assert table.at[0, "p"] == pytest.approx(expected)


def test_size_subgroups_in_size_order_with_freeman_halton():
    diameters = [10.0, 12.0, 40.0, 50.0, 20.0, 25.0, 30.0, 60.0]
    correct = [True, False, True, True, True, True, False, True]
    frame = reads([False] * 8, correct, diameter_mm=diameters)
    table = subgroup_accuracy(frame.assign(size=size_bins(frame["diameter_mm"])), "size", "resident")
    assert table["level"].tolist() == list(SIZE_BINS)
    assert table[["n", "correct"]].to_numpy().tolist() == [[2, 1], [3, 2], [3, 3]]
    assert table.at[0, "test"] == "fisher-freeman-halton (monte carlo)"
    assert 0 < table.at[0, "p"] <= 1


def test_group_reads_are_pooled_and_other_groups_left_out():
    frame = pd.concat([reads([False, True], [True, False]), reads([False, True], [False, False], group="academic")])
    assert subgroup_accuracy(frame, "cirrhosis", "resident")["correct"].tolist() == [1, 0]
    assert subgroup_accuracy(frame, "cirrhosis", "academic")["correct"].tolist() == [0, 0]


def test_model_counts_each_lesion_once_and_skips_lesions_without_a_prediction():
    # Two readers read l0-l3; the model is right on l0, wrong on l1, has no output for l2, right on l3.
    one = reads([False, False, True, True], [True] * 4, model_correct=[True, False, np.nan, True])
    frame = pd.concat([one, one.assign(correct=False)])
    table = subgroup_accuracy(frame, "cirrhosis", "model")
    assert table[["n", "correct"]].to_numpy().tolist() == [[2, 1], [1, 1]]


def test_no_test_when_every_read_is_right_or_there_is_one_level():
    for frame in (reads([False, True, True], [True] * 3), reads([True] * 3, [True, False, True])):
        table = subgroup_accuracy(frame, "cirrhosis", "resident")
        assert table.at[0, "test"] is None and np.isnan(table.at[0, "p"])


def test_refuses_mixed_phases_and_unknown_readers():
    frame = reads([False, True], [True, False])
    with pytest.raises(ValueError, match="one phase"):
        subgroup_accuracy(frame.assign(phase=["unaided", "aided"]), "cirrhosis", "resident")
    with pytest.raises(ValueError, match="reader group"):
        subgroup_accuracy(frame, "cirrhosis", "residents")
