"""Writers and readers for two MRMC ROC exchange formats, so a study's ratings can be checked in other software.

Both take or give ratings[reader, modality, case] (larger = more suspicious), truth[case] (True = abnormal) and
the reader, modality and case ids, in the order of the arrays; a file written here reads back to the same arrays.

**iMRMC** (FDA, github.com/DIDSR/iMRMC; layout as read by its ``mrmc.core.InputFile`` and shown in its
``FilesTest-iMRMC/test.imrmc``, and as read by RJafroc's ``DfReadDataFile(format = "iMRMC")``): free-text header
lines (the first is the study title; ``NR: ``, ``N0: ``, ``N1: ``, ``NM: `` give the numbers of readers, normal
cases, abnormal cases and modalities), then a line ``BEGIN DATA:``, then one observation per line
``readerID,caseID,modalityID,score``. Truth is one line per case with readerID ``-1`` (iMRMC also takes
``truth``), modalityID ``0`` (ignored) and score ``0`` (normal) or ``1`` (abnormal). iMRMC drops all whitespace
inside a field, so ids carry neither whitespace nor commas; RJafroc's reader also wants integer case ids.

**RJafroc / JAFROC Excel, ROC data** (layout of RJafroc's ``DfReadDataFile(format = "JAFROC")`` with its default
``newExcelFileFormat = FALSE``, and of its own writer ``DfSaveDataFile``): an .xlsx workbook, header row then one
row per record, three sheets. ``Truth``: CaseID, LesionID, Weight, one row per case: normal cases LesionID 0 and
Weight 0, abnormal cases (one lesion each in ROC data) LesionID 1 and Weight 1. ``NL`` (non-lesion localisations):
ReaderID, ModalityID, CaseID, NL_Rating, one row per reader × modality × normal case. ``LL`` (lesion
localisations): ReaderID, ModalityID, CaseID, LesionID, LL_Rating, one row per reader × modality × abnormal case,
LesionID 1. CaseID and LesionID are integers. RJafroc also takes the older sheet names FP (for NL) and TP (for LL)
and ignores case in sheet names; so does ``read_rjafroc_xlsx``.
"""

import io
import math
import re
import zipfile
from typing import NamedTuple

import numpy as np
from openpyxl import Workbook, load_workbook
from openpyxl.utils.exceptions import InvalidFileException


class MrmcData(NamedTuple):
    """What the readers return: ratings[reader, modality, case] (float), truth[case] (bool) and the ids read."""

    ratings: np.ndarray
    truth: np.ndarray
    readers: list[str]
    modalities: list[str]
    cases: list[str]


def _checked(ratings, truth, readers, modalities, cases, fmt: str):
    """The inputs as (float ratings, bool truth, str id lists), or ValueError saying what does not fit."""
    r = np.asarray(ratings, dtype=float)
    t = np.asarray(truth)
    ids = {
        kind: [str(x) for x in values]
        for kind, values in (("reader", readers), ("modality", modalities), ("case", cases))
    }
    shape = tuple(len(v) for v in ids.values())
    if r.shape != shape:
        raise ValueError(f"{fmt}: ratings have shape {r.shape}, the ids give [reader, modality, case] = {shape}")
    if t.shape != (shape[2],) or not np.isin(t, [0, 1]).all():
        raise ValueError(f"{fmt}: truth must be {shape[2]} values, each 0/1 or False/True")
    if not np.isfinite(r).all():
        j, m, k = np.argwhere(~np.isfinite(r))[0]
        raise ValueError(
            f"{fmt}: rating {r[j, m, k]} of reader {readers[j]}, modality {modalities[m]}, "
            f"case {cases[k]} is not a finite number"
        )
    for kind, values in ids.items():
        if any(not v for v in values):
            raise ValueError(f"{fmt}: empty {kind} id")
        if len(set(values)) != len(values):
            raise ValueError(f"{fmt}: {kind} ids are not unique: {values}")
    return r, t.astype(bool), ids["reader"], ids["modality"], ids["case"]


def _number(x: float) -> str:
    """A float as text that reads back to the same float: integers without a decimal point, others by repr."""
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


# ---------------------------------------------------------------------------------------------------- iMRMC

_HEADER_COUNT = re.compile(r"^(NR|N0|N1|NM)\s*:(.*)$", re.IGNORECASE)
_TRUTH_READERS = {"-1", "truth"}


def write_imrmc(ratings, truth, readers, modalities, cases, title: str = "LiverRead") -> str:
    """The study as iMRMC input text: title, NR/N0/N1/NM, ``BEGIN DATA:``, truth lines ``-1,case,0,0|1``, then
    ``reader,case,modality,score`` for every reader × case × modality. ValueError for ids iMRMC would misread."""
    r, t, readers, modalities, cases = _checked(ratings, truth, readers, modalities, cases, "iMRMC")
    for kind, values in (("reader", readers), ("modality", modalities), ("case", cases)):
        for v in values:
            if "," in v or re.search(r"\s", v):
                raise ValueError(f"iMRMC: {kind} id {v!r} contains a comma or whitespace, which iMRMC cannot keep")
    if clash := [v for v in readers if v.lower() in _TRUTH_READERS]:
        raise ValueError(f"iMRMC: reader id {clash[0]!r} is the id iMRMC reserves for truth lines")
    tags = ("BEGIN DATA", "NR:", "N0:", "N1:", "NM:")  # iMRMC looks for these anywhere in a header line
    if "\n" in title or "\r" in title or any(tag in title.upper() for tag in tags):
        raise ValueError(f"iMRMC: the title must be one line without 'BEGIN DATA' or an NR:/N0:/N1:/NM: tag: {title!r}")
    lines = [
        title,
        "",
        f"NR: {len(readers)}",
        f"N0: {int((~t).sum())}",
        f"N1: {int(t.sum())}",
        f"NM: {len(modalities)}",
        "",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{c},0,{int(v)}" for c, v in zip(cases, t, strict=True)]
    lines += [
        f"{reader},{case},{modality},{_number(float(r[j, m, k]))}"
        for j, reader in enumerate(readers)
        for k, case in enumerate(cases)
        for m, modality in enumerate(modalities)
    ]
    return "\n".join(lines) + "\n"


def read_imrmc(text: str) -> MrmcData:
    """Parse iMRMC input text (fully crossed ROC data); ValueError naming the line for anything out of place.

    Readers, modalities and cases come in the order they first appear (cases: in the truth lines). As iMRMC does,
    whitespace inside a field is dropped and trailing commas are ignored; header counts, where given, must match.
    """
    lines = text.splitlines()
    begin = next((n for n, line in enumerate(lines) if line.strip().upper().startswith("BEGIN DATA:")), None)
    if begin is None:
        raise ValueError("iMRMC: no 'BEGIN DATA:' line")
    counts: dict[str, tuple[int, int]] = {}
    for n, line in enumerate(lines[:begin], start=1):
        if match := _HEADER_COUNT.match(line.strip()):
            tag, value = match[1].upper(), match[2].strip()
            if not re.fullmatch(r"\d+", value):
                raise ValueError(f"iMRMC line {n}: {tag}: {value!r} is not a whole number")
            counts[tag] = (n, int(value))

    truth: dict[str, bool] = {}
    scores: dict[tuple[str, str, str], tuple[int, float]] = {}
    readers: dict[str, None] = {}
    modalities: dict[str, None] = {}
    for n, line in enumerate(lines[begin + 1 :], start=begin + 2):
        line = line.strip().rstrip(",")
        if not line:
            continue
        fields = ["".join(f.split()) for f in line.split(",")]
        if len(fields) != 4 or not all(fields):
            raise ValueError(
                f"iMRMC line {n}: expected 4 comma-separated fields readerID,caseID,modalityID,score, got {line!r}"
            )
        reader, case, modality, score = fields
        if reader.lower() in _TRUTH_READERS:
            if score not in ("0", "1"):
                raise ValueError(f"iMRMC line {n}: truth for case {case} must be 0 or 1, got {score!r}")
            if case in truth:
                raise ValueError(f"iMRMC line {n}: a second truth line for case {case}")
            truth[case] = score == "1"
            continue
        try:
            value = float(score)
        except ValueError:
            raise ValueError(f"iMRMC line {n}: score {score!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"iMRMC line {n}: score {score!r} is not a finite number")
        if (reader, modality, case) in scores:
            first = scores[reader, modality, case][0]
            raise ValueError(
                f"iMRMC line {n}: reader {reader}, modality {modality}, case {case} is already scored on line {first}"
            )
        scores[reader, modality, case] = (n, value)
        readers.setdefault(reader)
        modalities.setdefault(modality)
    for (_, _, case), (n, _) in scores.items():
        if case not in truth:
            raise ValueError(f"iMRMC line {n}: case {case} has no truth line (readerID -1)")

    cases = list(truth)
    found = {
        "NR": len(readers),
        "N0": sum(not v for v in truth.values()),
        "N1": sum(truth.values()),
        "NM": len(modalities),
    }
    for tag, (n, given) in counts.items():
        if given != found[tag]:
            raise ValueError(f"iMRMC line {n}: the header says {tag}: {given}, the data have {found[tag]}")
    ratings = np.empty((len(readers), len(modalities), len(cases)))
    for j, reader in enumerate(readers):
        for m, modality in enumerate(modalities):
            for k, case in enumerate(cases):
                if (reader, modality, case) not in scores:
                    raise ValueError(
                        f"iMRMC: not fully crossed: no score for reader {reader}, modality {modality}, case {case}"
                    )
                ratings[j, m, k] = scores[reader, modality, case][1]
    return MrmcData(ratings, np.array([truth[c] for c in cases], dtype=bool), list(readers), list(modalities), cases)


# ---------------------------------------------------------------------------------------------------- RJafroc

_SHEETS = {"Truth": ("TRUTH",), "NL": ("NL", "FP"), "LL": ("LL", "TP")}
_COLUMNS = {
    "Truth": (("CaseID",), ("LesionID",), ("Weight", "Weights")),
    "NL": (("ReaderID",), ("ModalityID",), ("CaseID",), ("NL_Rating", "FP_Rating")),
    "LL": (("ReaderID",), ("ModalityID",), ("CaseID",), ("LesionID",), ("LL_Rating", "TP_Rating")),
}


def _id_cell(v: str):
    """An id as an Excel cell: a number where it is a plain integer (as RJafroc writes them), text otherwise."""
    return int(v) if re.fullmatch(r"-?[1-9]\d*|0", v) and abs(int(v)) < 2**53 else v


def write_rjafroc_xlsx(ratings, truth, readers, modalities, cases) -> bytes:
    """The study as an RJafroc (JAFROC format) ROC workbook: sheets Truth, NL and LL, see the module docstring.
    Case ids must be plain integers (RJafroc's rule); ValueError otherwise."""
    r, t, readers, modalities, cases = _checked(ratings, truth, readers, modalities, cases, "RJafroc")
    for case in cases:
        if not isinstance(_id_cell(case), int):
            raise ValueError(f"RJafroc: case id {case!r} is not a plain integer; RJafroc's CaseID must be one")
    wb = Workbook()
    sheets = {name: wb.create_sheet(name) for name in _SHEETS}
    wb.remove(wb.worksheets[0])
    for name, sheet in sheets.items():
        sheet.append([names[0] for names in _COLUMNS[name]])
    for case, abnormal in zip(cases, t, strict=True):
        sheets["Truth"].append([int(case), int(abnormal), int(abnormal)])
    for m, modality in enumerate(modalities):
        for j, reader in enumerate(readers):
            for k, case in enumerate(cases):
                rating = float(r[j, m, k])
                if t[k]:
                    sheets["LL"].append([_id_cell(reader), _id_cell(modality), int(case), 1, rating])
                else:
                    sheets["NL"].append([_id_cell(reader), _id_cell(modality), int(case), rating])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _rows(wb, name: str) -> tuple[str, list[tuple[int, tuple]]]:
    """The title of sheet ``name`` (Truth, NL or LL, or an alias) and its (Excel row number, cells) after the header,
    whose columns are checked; blank rows are skipped."""
    sheet = next((wb[s] for s in wb.sheetnames if s.strip().upper() in _SHEETS[name]), None)
    if sheet is None:
        raise ValueError(f"RJafroc workbook: no {' or '.join(_SHEETS[name])} sheet (sheets: {wb.sheetnames})")
    columns = _COLUMNS[name]
    rows = list(sheet.iter_rows(values_only=True))
    header = [str(v).strip() if v is not None else "" for v in (rows[0] if rows else ())]
    header += [""] * (len(columns) - len(header))
    for i, names in enumerate(columns):
        if header[i].lower() not in {n.lower() for n in names}:
            raise ValueError(
                f"RJafroc sheet {sheet.title}: column {i + 1} must be {names[0]}, "
                f"the header row has {[h for h in header if h]}"
            )
    out = []
    for n, row in enumerate(rows[1:], start=2):
        cells = tuple(row[: len(columns)]) + (None,) * (len(columns) - len(row))
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        for names, c in zip(columns, cells, strict=True):
            if c is None or (isinstance(c, str) and not c.strip()):
                raise ValueError(f"RJafroc sheet {sheet.title} row {n}: empty {names[0]}")
        out.append((n, cells))
    return sheet.title, out


def _id(value, where: str, column: str) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{where}: {column} {value!r} is not an id")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{where}: {column} {value!r} is not an id (a whole number or text)")
        value = int(value)
    return str(value).strip()


def _integer(value, where: str, column: str) -> int:
    text = _id(value, where, column)
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"{where}: {column} {value!r} is not an integer")
    return int(text)


def _rating(value, where: str, column: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        rating = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {column} {value!r} is not a number") from None
    if not math.isfinite(rating):
        raise ValueError(f"{where}: {column} {value!r} is not a finite number")
    return rating


def read_rjafroc_xlsx(data: bytes) -> MrmcData:
    """Parse an RJafroc ROC workbook (see the module docstring) into fully crossed arrays; ValueError naming the
    sheet, row and problem for anything out of place, and for data that are not ROC (more than one lesion per case,
    NL marks on abnormal cases). Cases come in Truth-sheet order, readers and modalities in first-appearance order."""
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as err:
        raise ValueError(f"RJafroc workbook: not a readable .xlsx file ({err})") from None
    try:
        (truth_sheet, truth_rows), nl, ll = _rows(wb, "Truth"), _rows(wb, "NL"), _rows(wb, "LL")
    finally:
        wb.close()

    truth: dict[str, bool] = {}
    for n, (case, lesion, weight) in truth_rows:
        where = f"RJafroc sheet {truth_sheet} row {n}"
        case_id = str(_integer(case, where, "CaseID"))
        lesion_id = _integer(lesion, where, "LesionID")
        _rating(weight, where, "Weight")
        if lesion_id not in (0, 1):
            raise ValueError(f"{where}: LesionID {lesion_id}: ROC data have one lesion (1) or none (0) per case")
        if case_id in truth:
            raise ValueError(f"{where}: case {case_id} is listed twice; ROC data have one Truth row per case")
        truth[case_id] = lesion_id == 1

    scores: dict[tuple[str, str, str], tuple[str, float]] = {}
    readers: dict[str, None] = {}
    modalities: dict[str, None] = {}
    for name, (sheet, rows) in (("NL", nl), ("LL", ll)):
        for n, cells in rows:
            where = f"RJafroc sheet {sheet} row {n}"
            reader, modality = _id(cells[0], where, "ReaderID"), _id(cells[1], where, "ModalityID")
            case = str(_integer(cells[2], where, "CaseID"))
            rating = _rating(cells[-1], where, f"{name}_Rating")
            if case not in truth:
                raise ValueError(f"{where}: case {case} is not in the Truth sheet")
            if truth[case] != (name == "LL"):
                kind = "abnormal" if truth[case] else "normal"
                raise ValueError(
                    f"{where}: case {case} is {kind}; ROC data have NL rows only for normal cases and "
                    "LL rows only for abnormal ones"
                )
            if name == "LL" and _integer(cells[3], where, "LesionID") != 1:
                raise ValueError(f"{where}: LesionID {cells[3]!r}: ROC data have lesion 1 only")
            if (reader, modality, case) in scores:
                raise ValueError(
                    f"{where}: reader {reader}, modality {modality}, case {case} is already rated "
                    f"({scores[reader, modality, case][0]})"
                )
            scores[reader, modality, case] = (where, rating)
            readers.setdefault(reader)
            modalities.setdefault(modality)

    cases = list(truth)
    ratings = np.empty((len(readers), len(modalities), len(cases)))
    for j, reader in enumerate(readers):
        for m, modality in enumerate(modalities):
            for k, case in enumerate(cases):
                if (reader, modality, case) not in scores:
                    sheet = (ll if truth[case] else nl)[0]
                    raise ValueError(
                        f"RJafroc sheet {sheet}: not fully crossed: no rating for reader {reader}, "
                        f"modality {modality}, case {case}"
                    )
                ratings[j, m, k] = scores[reader, modality, case][1]
    return MrmcData(ratings, np.array([truth[c] for c in cases], dtype=bool), list(readers), list(modalities), cases)
