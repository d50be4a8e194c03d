"""Obuchowski-Rockette MRMC analysis against the Iowa OR-DBM MRMC 2.5 output for the Van Dyke data.

Every expected figure is the string printed in tests/fixtures/VD_OR-DBM-MRMC_output.txt (checked to be there)
and is matched to its printed precision: half a unit in its last printed decimal.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.anova import AnovaRM

from readerstudy.analysis.lrc import parse_lrc
from readerstudy.analysis.mrmc import model_vs_readers, or_analysis

FIXTURES = Path(__file__).parent / "fixtures"
OUTPUT = (FIXTURES / "VD_OR-DBM-MRMC_output.txt").read_text()


def printed(text: str):
    """pytest.approx for a figure as printed in the Iowa output, to half a unit of its last decimal."""
    assert text in OUTPUT, f"{text} is not in the published output"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return pytest.approx(float(text), abs=0.5 * 10.0**-decimals + 1e-15)


@pytest.fixture(scope="module")
def vd():
    return parse_lrc((FIXTURES / "VD.lrc").read_text())


@pytest.fixture(scope="module")
def result(vd):
    return or_analysis(vd.ratings, vd.truth)


def test_lrc_reader(vd):
    assert vd.ratings.shape == (5, 2, 114)
    assert (vd.truth.sum(), (~vd.truth).sum()) == (45, 69)
    assert vd.readers == ["0", "1", "2", "3", "4"] and vd.modalities == ["0", "1"]
    assert vd.cases[:2] == ["0", "1"] and vd.cases[-1] == "113"
    assert vd.ratings[0, :, 0].tolist() == [1, 3] and vd.ratings[4, :, -1].tolist() == [2, 3]


def small_lrc(direction="L L", second_reader_cases=("0", "1", "2", "3")):
    rows = ["1 2 0", "2 1 1", "*", "4 5 2", "3 3 3", "*"]
    second = [f"1 1 {second_reader_cases[0]}", f"2 2 {second_reader_cases[1]}", "*"]
    second += [f"5 5 {second_reader_cases[2]}", f"4 4 {second_reader_cases[3]}", "*"]
    return "\n".join(["title", "r1", '"A"\t"B"', direction, *rows, "r2", *second, "#"])


def test_lrc_reader_flips_s_modalities_and_refuses_bad_files():
    data = parse_lrc(small_lrc("L S"))
    assert data.ratings[0, :, 2].tolist() == [4, -5] and data.truth.tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="does not rate the same cases"):
        parse_lrc(small_lrc(second_reader_cases=("0", "1", "3", "2")))
    with pytest.raises(ValueError, match="one L or S per modality"):
        parse_lrc(small_lrc("L X"))
    with pytest.raises(ValueError, match="line 6: expected 2 ratings"):
        parse_lrc(small_lrc().replace("2 1 1", "2 1"))
    with pytest.raises(ValueError, match="does not end with '#'"):
        parse_lrc(small_lrc().removesuffix("#"))


AUCS = [
    ["0.91964573", "0.94782609"],
    ["0.85877617", "0.90531401"],
    ["0.90386473", "0.92173913"],
    ["0.97310789", "0.99935588"],
    ["0.82979066", "0.92995169"],
]


def test_reader_aucs_match_iowa_and_sklearn(vd, result):
    for j, row in enumerate(AUCS):
        for t, text in enumerate(row):
            assert result.auc[j, t] == printed(text)
            assert result.auc[j, t] == pytest.approx(roc_auc_score(vd.truth, vd.ratings[j, t]), abs=1e-12)
    assert result.rrrc.modalities[0].estimate == printed("0.89703704")
    assert result.rrrc.modalities[1].estimate == printed("0.94083736")
    assert result.rrrc.differences[(0, 1)].estimate == printed("-0.04380032")


def test_variance_components(result):
    c = result.components
    assert (c.ms_t, c.ms_r, c.ms_tr) == (printed("0.00479617"), printed("0.00383620"), printed("0.00055103"))
    assert c.ms_r_modality.tolist() == [printed("0.00308263"), printed("0.00130460")]
    assert c.var == printed("0.00080229")
    assert (c.cov1, c.cov2, c.cov3) == (printed("0.00034661"), printed("0.00034407"), printed("0.00023903"))
    assert (c.cov1 / c.var, c.cov2 / c.var, c.cov3 / c.var) == (
        printed("0.43203138"),
        printed("0.42886683"),
        printed("0.29793328"),
    )
    assert (c.var_r, c.var_tr) == (printed("0.00153500"), printed("0.00020040"))


def test_random_readers_random_cases(result):
    test, diff = result.rrrc.test, result.rrrc.differences[(0, 1)]
    assert (test.f, test.ndf, test.ddf, test.p) == (printed("4.46"), 1, printed("15.26"), printed("0.0517"))
    assert result.components.ms_t / test.f == printed("0.00107626")  # error term MS(T×R) + J·max(Cov2 − Cov3, 0)
    assert (diff.se, diff.df, diff.statistic, diff.p) == (
        printed("0.02075"),
        printed("15.26"),
        printed("-2.11"),
        test.p,
    )
    assert (diff.low, diff.high) == (printed("-0.08796"), printed("0.00036"))
    single = [("0.03317360", "12.74", "0.82522360", "0.96885048"), ("0.02156637", "12.71", "0.89413783", "0.98753689")]
    for got, (se, df, low, high) in zip(result.rrrc.modalities, single, strict=True):
        assert (got.se, got.df, got.low, got.high) == (printed(se), printed(df), printed(low), printed(high))
    assert result.components.cov2_modality.tolist() == [printed("0.00048396"), printed("0.00020419")]


def test_fixed_readers_random_cases(result):
    test, diff = result.frrc.test, result.frrc.differences[(0, 1)]
    assert (test.f * test.ndf, test.ndf, test.ddf, test.p) == (printed("5.47595"), 1, np.inf, printed("0.0193"))
    assert (diff.se, diff.statistic, diff.p) == (printed("0.01872"), printed("-2.34"), printed("0.0193"))
    assert (diff.low, diff.high) == (printed("-0.08049"), printed("-0.00711"))
    single = [("0.02428971", "0.84943008", "0.94464399"), ("0.01677632", "0.90795637", "0.97371835")]
    for got, (se, low, high) in zip(result.frrc.modalities, single, strict=True):
        assert (got.se, got.low, got.high) == (printed(se), printed(low), printed(high))
    assert result.components.var_modality.tolist() == [printed("0.00101410"), printed("0.00059047")]
    per_reader = [
        ("-0.02818", "0.02551", "-1.10", "0.2693", "-0.07818", "0.02182", "0.00069890", "0.00037347"),
        ("-0.04654", "0.02630", "-1.77", "0.0768", "-0.09809", "0.00501", "0.00110605", "0.00076016"),
        ("-0.01787", "0.03121", "-0.57", "0.5668", "-0.07904", "0.04330", "0.00084234", "0.00035532"),
        ("-0.02625", "0.01729", "-1.52", "0.1290", "-0.06014", "0.00764", "0.00015058", "0.00000108"),
        ("-0.10016", "0.04406", "-2.27", "0.0230", "-0.18651", "-0.01381", "0.00121357", "0.00024304"),
    ]
    for j, figures in enumerate(per_reader):
        got = result.reader_differences[j][(0, 1)]
        values = (got.estimate, got.se, got.statistic, got.p, got.low, got.high)
        values += (result.components.var_reader[j], result.components.cov1_reader[j])
        assert values == tuple(printed(text) for text in figures)


def test_random_readers_fixed_cases(result):
    test, diff = result.rrfc.test, result.rrfc.differences[(0, 1)]
    assert (test.f, test.ndf, test.ddf, test.p) == (printed("8.70"), 1, 4, printed("0.0420"))
    assert (diff.se, diff.df, diff.statistic, diff.p) == (printed("0.01485"), 4, printed("-2.95"), printed("0.0420"))
    assert (diff.low, diff.high) == (printed("-0.08502"), printed("-0.00258"))
    single = [("0.02482994", "0.82809808", "0.96597599"), ("0.01615303", "0.89598936", "0.98568536")]
    for got, (se, low, high) in zip(result.rrfc.modalities, single, strict=True):
        assert (got.se, got.df, got.low, got.high) == (printed(se), 4, printed(low), printed(high))


def test_three_modalities_fixed_cases_is_statsmodels_repeated_measures_anova(vd):
    rng = np.random.default_rng(7)
    third = vd.ratings[:, 1] + rng.integers(-1, 2, size=vd.ratings[:, 1].shape)
    result = or_analysis(np.concatenate([vd.ratings, third[:, None]], axis=1), vd.truth)
    frame = pd.DataFrame(
        [(j, t, result.auc[j, t]) for j in range(5) for t in range(3)], columns=["reader", "modality", "auc"]
    )
    anova = AnovaRM(frame, "auc", "reader", within=["modality"]).fit().anova_table.iloc[0]
    assert (result.rrfc.test.f, result.rrfc.test.ndf, result.rrfc.test.ddf) == pytest.approx(
        (anova["F Value"], anova["Num DF"], anova["Den DF"])
    )
    assert result.rrfc.test.p == pytest.approx(anova["Pr > F"])
    assert set(result.rrrc.differences) == {(0, 1), (0, 2), (1, 2)}
    assert np.isfinite([d.p for d in result.rrrc.differences.values()]).all()


def test_model_vs_readers_equals_or_with_the_model_read_by_every_reader(vd):
    readers, model = vd.ratings[:, 1], vd.ratings[0, 1]  # reader 0's modality-1 ratings stand in for a model
    got = model_vs_readers(readers, model, vd.truth)
    assert got.model_auc == printed("0.94782609") and got.mean_reader_auc == printed("0.94083736")
    assert got.difference.estimate == pytest.approx(got.mean_reader_auc - got.model_auc)
    assert np.isfinite([got.difference.se, got.difference.df, got.difference.p]).all()
    assert got.difference.low < got.difference.estimate < got.difference.high and got.difference.p > 0.5
    assert 1 < got.difference.df < np.inf and got.var > 0

    # Hillis's single-modality test of the differences gives the same F, ddf and p as the two-modality OR
    # analysis in which every reader "reads" the model's scores (Chakraborty's 2T-RRRC; RJafroc documents
    # that the two agree), while its reader-mean square and Cov2 are half of the differences' own.
    stacked = np.stack([readers, np.broadcast_to(model, readers.shape)], axis=1)
    both = or_analysis(stacked, vd.truth)
    assert both.rrrc.test.f == pytest.approx(got.difference.statistic**2)
    assert both.rrrc.test.ddf == pytest.approx(got.difference.df)
    assert both.rrrc.test.p == pytest.approx(got.difference.p)
    assert both.rrrc.differences[(0, 1)].low == pytest.approx(got.difference.low)
    assert both.components.ms_tr == pytest.approx(got.ms_r / 2)
    assert both.components.cov2 - both.components.cov3 == pytest.approx(got.cov2 / 2)


def test_bad_shapes_are_refused(vd):
    with pytest.raises(ValueError, match="at least 2 readers and 2 modalities"):
        or_analysis(vd.ratings[:1], vd.truth)
    with pytest.raises(ValueError, match="one entry per case"):
        or_analysis(vd.ratings, vd.truth[:-1])
    with pytest.raises(ValueError, match="reader_ratings"):
        model_vs_readers(vd.ratings[:1, 0], vd.ratings[0, 0], vd.truth)
