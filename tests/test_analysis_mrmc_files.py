"""iMRMC and RJafroc exports: the Van Dyke data go through each writer and its reader unchanged and give the same
Obuchowski-Rockette result as the published one; a hand-written iMRMC file in the FDA software's own layout reads;
damaged files are refused with the line or sheet and the problem."""

import io
from pathlib import Path

import numpy as np
import pytest
from openpyxl import Workbook, load_workbook

from readerstudy.analysis.lrc import parse_lrc
from readerstudy.analysis.mrmc import or_analysis
from readerstudy.analysis.mrmc_files import read_imrmc, read_rjafroc_xlsx, write_imrmc, write_rjafroc_xlsx

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def vd():
    return parse_lrc((FIXTURES / "VD.lrc").read_text())


def imrmc_round_trip(vd):
    return read_imrmc(write_imrmc(vd.ratings, vd.truth, vd.readers, vd.modalities, vd.cases, title=vd.title))


def rjafroc_round_trip(vd):
    return read_rjafroc_xlsx(write_rjafroc_xlsx(vd.ratings, vd.truth, vd.readers, vd.modalities, vd.cases))


@pytest.mark.parametrize("round_trip", [imrmc_round_trip, rjafroc_round_trip], ids=["imrmc", "rjafroc"])
def test_van_dyke_round_trip_keeps_the_data_and_the_or_result(vd, round_trip):
    back = round_trip(vd)
    assert back.ratings.shape == (5, 2, 114) and np.array_equal(back.ratings, vd.ratings)
    assert back.truth.dtype == bool and np.array_equal(back.truth, vd.truth)
    assert (back.readers, back.modalities, back.cases) == (vd.readers, vd.modalities, vd.cases)

    original, again = or_analysis(vd.ratings, vd.truth).rrrc.test, or_analysis(back.ratings, back.truth).rrrc.test
    assert round(again.f, 2) == 4.46  # Van Dyke, RRRC, as published (Iowa OR-DBM MRMC output)
    assert again.f == pytest.approx(original.f, abs=1e-12)
    assert again.ndf == original.ndf == 1
    assert again.ddf == pytest.approx(original.ddf, abs=1e-12) and round(again.ddf, 2) == 15.26
    assert again.p == pytest.approx(original.p, abs=1e-12) and round(again.p, 4) == 0.0517


def test_imrmc_text_layout(vd):
    text = write_imrmc(vd.ratings, vd.truth, vd.readers, vd.modalities, vd.cases)
    lines = text.splitlines()
    assert lines[:8] == ["LiverRead", "", "NR: 5", "N0: 69", "N1: 45", "NM: 2", "", "BEGIN DATA:"]
    assert lines[8] == "-1,0,0,0" and lines[8 + 113] == "-1,113,0,1"  # truth: reader -1, modality 0, score 0/1
    assert lines[8 + 114 : 8 + 116] == ["0,0,0,1", "0,0,1,3"]  # reader,case,modality,score; integers stay integers
    assert len(lines) == 8 + 114 + 5 * 2 * 114


def test_hand_written_imrmc_in_the_fda_layout_reads():
    # As iMRMC's FilesTest-iMRMC/test.imrmc: title, counts, BEGIN DATA:, truth rows "-1,case,0,truth", then
    # observations; plus what its reader tolerates: "truth" as the truth reader, spaces in fields, trailing commas,
    # truth lines after scores, blank lines.
    text = """Hand-made study for LiverRead
free text the software keeps as a description

NR: 2
N0: 2
N1: 2
NM: 2

BEGIN DATA:
-1,c1,0,0
-1,c2,0,0
1,c1,modA,0.5
1,c1,modB,1.5
1,c2,modA,2
1,c2,modB,-1e-3
1,c3,modA,3
1,c3,modB,3.25
1,c4,modA,4
1,c4,modB,2.5
R 2,c1,modA,1,
R 2,c1,modB,1
R2,c2,modA,2
R2,c2,modB,2
R2,c3,modA,3

R2,c3,modB,3
R2,c4,modA,4
R2,c4,modB,4
truth,c3,0,1
-1,c4,truth,1
"""
    data = read_imrmc(text)
    assert data.readers == ["1", "R2"] and data.modalities == ["modA", "modB"]
    assert data.cases == ["c1", "c2", "c3", "c4"] and data.truth.tolist() == [False, False, True, True]
    assert data.ratings[0].tolist() == [[0.5, 2, 3, 4], [1.5, -0.001, 3.25, 2.5]]
    assert data.ratings[1].tolist() == [[1, 2, 3, 4], [1, 2, 3, 4]]


def test_imrmc_keeps_every_float_exactly():
    rng = np.random.default_rng(7)
    ratings, truth = rng.normal(size=(3, 2, 12)) * 10.0 ** rng.integers(-8, 8, size=(3, 2, 12)), np.arange(12) % 3 == 0
    back = read_imrmc(write_imrmc(ratings, truth, ["r1", "r2", "r3"], ["A", "B"], [f"L{k}" for k in range(12)]))
    assert np.array_equal(back.ratings, ratings)


IMRMC = "t\nNR: 2\nN0: 1\nN1: 1\nNM: 2\nBEGIN DATA:\n-1,1,0,0\n-1,2,0,1\n" + "\n".join(
    f"{r},{c},{m},{r + c + m}" for r in (1, 2) for c in (1, 2) for m in (1, 2)
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (IMRMC.replace("BEGIN DATA:", "BEGIN:"), "no 'BEGIN DATA:' line"),
        (IMRMC.replace("NR: 2", "NR: two"), r"line 2: NR: 'two' is not a whole number"),
        (IMRMC.replace("NR: 2", "NR: 3"), r"line 2: the header says NR: 3, the data have 2"),
        (IMRMC.replace("1,1,1,3", "1,1,3"), r"line 9: expected 4 comma-separated fields"),
        (IMRMC.replace("1,1,1,3", "1,1,1,high"), r"line 9: score 'high' is not a number"),
        (IMRMC.replace("1,1,1,3", "1,1,1,nan"), r"line 9: score 'nan' is not a finite number"),
        (IMRMC.replace("-1,2,0,1", "-1,2,0,yes"), r"line 8: truth for case 2 must be 0 or 1"),
        (IMRMC.replace("-1,2,0,1", "-1,1,0,1"), r"line 8: a second truth line for case 1"),
        (IMRMC.replace("1,1,2,4", "1,1,1,4"), r"line 10: reader 1, modality 1, case 1 is already scored on line 9"),
        (IMRMC + "\n1,3,1,5", r"line 17: case 3 has no truth line"),
        (IMRMC.replace("\n2,2,2,6", ""), r"not fully crossed: no score for reader 2, modality 2, case 2"),
    ],
)
def test_read_imrmc_names_the_line_and_the_problem(text, message):
    assert read_imrmc(IMRMC).ratings.shape == (2, 2, 2)
    with pytest.raises(ValueError, match=message):
        read_imrmc(text)


def test_write_imrmc_refuses_what_imrmc_would_misread():
    ratings, truth = np.ones((2, 2, 2)), [0, 1]
    with pytest.raises(ValueError, match="comma or whitespace"):
        write_imrmc(ratings, truth, ["a b", "c"], ["A", "B"], ["1", "2"])
    with pytest.raises(ValueError, match="reserves for truth"):
        write_imrmc(ratings, truth, ["-1", "c"], ["A", "B"], ["1", "2"])
    with pytest.raises(ValueError, match="title"):
        write_imrmc(ratings, truth, ["a", "c"], ["A", "B"], ["1", "2"], title="Study NR: 12")
    with pytest.raises(ValueError, match="shape"):
        write_imrmc(ratings, truth, ["a"], ["A", "B"], ["1", "2"])
    with pytest.raises(ValueError, match="not a finite number"):
        write_imrmc(np.full((2, 2, 2), np.nan), truth, ["a", "c"], ["A", "B"], ["1", "2"])


def test_rjafroc_workbook_layout(vd):
    wb = load_workbook(io.BytesIO(write_rjafroc_xlsx(vd.ratings, vd.truth, vd.readers, vd.modalities, vd.cases)))
    assert wb.sheetnames == ["Truth", "NL", "LL"]
    truth, nl, ll = ([list(row) for row in wb[name].iter_rows(values_only=True)] for name in wb.sheetnames)
    assert truth[0] == ["CaseID", "LesionID", "Weight"] and truth[1] == [0, 0, 0] and truth[-1] == [113, 1, 1]
    assert nl[0] == ["ReaderID", "ModalityID", "CaseID", "NL_Rating"] and len(nl) == 1 + 5 * 2 * 69
    assert ll[0] == ["ReaderID", "ModalityID", "CaseID", "LesionID", "LL_Rating"] and len(ll) == 1 + 5 * 2 * 45
    assert nl[1] == [0, 0, 0, 1] and ll[1][:4] == [0, 0, 69, 1]
    assert {row[2] for row in nl[1:]} == {int(c) for c, t in zip(vd.cases, vd.truth, strict=True) if not t}


def test_rjafroc_keeps_text_ids_and_floats_to_excel_precision():
    rng = np.random.default_rng(3)
    ratings, truth = rng.random((2, 3, 6)), np.array([0, 1, 0, 1, 1, 0], dtype=bool)
    back = read_rjafroc_xlsx(write_rjafroc_xlsx(ratings, truth, ["Dr A", "Dr B"], ["T1", "T2", "DWI"], range(10, 16)))
    assert (back.readers, back.modalities) == (["Dr A", "Dr B"], ["T1", "T2", "DWI"])
    assert back.cases == ["10", "11", "12", "13", "14", "15"]
    assert np.allclose(back.ratings, ratings, rtol=1e-15, atol=0)  # openpyxl writes 16 significant digits
    with pytest.raises(ValueError, match="case id 'L7' is not a plain integer"):
        write_rjafroc_xlsx(ratings, truth, ["a", "b"], ["T1", "T2", "DWI"], ["L7", "2", "3", "4", "5", "6"])


def workbook(**sheets) -> bytes:
    wb = Workbook()
    wb.remove(wb.worksheets[0])
    for name, rows in sheets.items():
        sheet = wb.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


GOOD = {
    "TRUTH": [["CaseID", "LesionID", "Weight"], [1, 0, 0], [2, 1, 1]],
    "FP": [["ReaderID", "ModalityID", "CaseID", "FP_Rating"]] + [[r, m, 1, r + m] for r in (1, 2) for m in (1, 2)],
    "TP": [["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"]]
    + [[r, m, 2, 1, 5 + r + m] for r in (1, 2) for m in (1, 2)],
}


def broken(sheet: str, row: int, col: int, value) -> dict:
    sheets = {name: [list(r) for r in rows] for name, rows in GOOD.items()}
    if col < 0:
        sheets[sheet][row] = sheets[sheet][row][:col]
    else:
        sheets[sheet][row][col] = value
    return sheets


@pytest.mark.parametrize(
    ("sheets", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "TP"}, r"no LL or TP sheet"),
        (broken("FP", 0, -1, None), r"sheet FP: column 4 must be NL_Rating"),
        (broken("TRUTH", 0, 2, "Weigth"), r"sheet TRUTH: column 3 must be Weight"),
        (broken("FP", 3, 3, "high"), r"sheet FP row 4: NL_Rating 'high' is not a number"),
        (broken("FP", 3, -1, None), r"sheet FP row 4: empty NL_Rating"),
        (broken("TRUTH", 2, 0, "two"), r"sheet TRUTH row 3: CaseID 'two' is not an integer"),
        (broken("TRUTH", 2, 1, 2), r"sheet TRUTH row 3: LesionID 2: ROC data"),
        (broken("TRUTH", 2, 0, 1), r"sheet TRUTH row 3: case 1 is listed twice"),
        (broken("TP", 1, 2, 1), r"sheet TP row 2: case 1 is normal; ROC data have NL rows only"),
        (broken("TP", 1, 2, 9), r"sheet TP row 2: case 9 is not in the Truth sheet"),
        (broken("TP", 2, 1, 1), r"sheet TP row 3: reader 1, modality 1, case 2 is already rated"),
        (broken("FP", 4, 0, 3), r"sheet FP: not fully crossed: no rating for reader 2, modality 2, case 1"),
    ],
)
def test_read_rjafroc_names_the_sheet_row_and_problem(sheets, message):
    good = read_rjafroc_xlsx(workbook(**GOOD))
    assert good.ratings.tolist() == [[[2, 7], [3, 8]], [[3, 8], [4, 9]]] and good.truth.tolist() == [False, True]
    with pytest.raises(ValueError, match=message):
        read_rjafroc_xlsx(workbook(**sheets))


def test_read_rjafroc_refuses_a_file_that_is_not_a_workbook():
    with pytest.raises(ValueError, match="not a readable .xlsx file"):
        read_rjafroc_xlsx(b"ReaderID,ModalityID,CaseID\n")
