"""The dataset manifest: one CSV row per lesion, parsed and checked.

Columns (header required, any order; extra named columns are ignored):
``patient, age, sex, cirrhosis, fatty_liver, scanner_vendor, scanner_model,
field_strength_t, case, lesion, label, diameter_mm, split``.

A bad row, or rows of one case that disagree on case-level fields, reject that
case only. The whole manifest is rejected when the file is missing, too large,
not UTF-8 text, holds a NUL, is not CSV, misses or doubles a column, or has a
row whose case cannot be named safely (empty, a path, a formula). Rows of empty
cells are skipped.

Text is refused where it could be misread downstream: a control character in
any cell; in the names and fields that reach the CSV/XLSX exports (``case``,
``lesion``, ``scanner_vendor``, ``scanner_model``) a leading ``= + - @``, which
a spreadsheet opening the export would run as a formula (CSV injection); a
case or lesion name that is not a plain folder name (``/``, ``\\``, ``.``, ``..``);
and cells longer than their database columns.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from inference.domain import SEXES, SPLITS, class_index

MANIFEST_NAME = "manifest.csv"
COLUMNS = (
    "patient",
    "age",
    "sex",
    "cirrhosis",
    "fatty_liver",
    "scanner_vendor",
    "scanner_model",
    "field_strength_t",
    "case",
    "lesion",
    "label",
    "diameter_mm",
    "split",
)
MAX_MANIFEST_BYTES = 64 << 20
"""Largest manifest read (64 MiB, some 500,000 rows)."""
MAX_CHARACTERS = {"case": 200, "lesion": 100, "scanner_vendor": 50, "scanner_model": 100}
"""Longest text accepted per column: the database columns' lengths (``readerstudy.cases.models``)."""
MAX_CELL_CHARACTERS = 200
"""Longest cell accepted in any other column."""
EXPORTED_TEXT = ("case", "lesion", "scanner_vendor", "scanner_model")
"""Text columns that reach the CSV/XLSX exports: no cell may start a spreadsheet formula there."""
FORMULA_PREFIXES = ("=", "+", "-", "@")
NAME_COLUMNS = ("case", "lesion")
"""Columns that name a folder of the dataset."""
BOUNDS = {"age": 120, "field_strength_t": 12, "diameter_mm": 300}
"""Largest value accepted (years, tesla, mm); every number must also be finite and positive."""
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}


class ManifestError(ValueError):
    """The manifest as a whole cannot be used."""


@dataclass(frozen=True)
class LesionRow:
    name: str
    label: int
    diameter_mm: float
    split: str
    line: int


@dataclass
class CaseEntry:
    """Everything the manifest says about one case (exam)."""

    name: str
    patient: str
    age: int
    sex: str
    cirrhosis: bool
    fatty_liver: bool
    scanner_vendor: str
    scanner_model: str
    field_strength_t: Decimal
    lesions: list[LesionRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def patient_fields(self) -> dict:
        return {"age": self.age, "sex": self.sex, "cirrhosis": self.cirrhosis, "fatty_liver": self.fatty_liver}


def _flag(value: str, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    raise ValueError(f"{column} must be yes or no, got {value!r}")


def _number(value: str, column: str, kind=float):
    """A finite number in (0, BOUNDS[column]]; a tesla value is rounded to 0.1 T (its column's precision)."""
    try:
        number = kind(value.strip())
    except (ValueError, ArithmeticError):
        raise ValueError(f"{column} must be a number, got {value!r}") from None
    if not (number.is_finite() if isinstance(number, Decimal) else math.isfinite(number)):
        raise ValueError(f"{column} must be a finite number, got {value!r}")
    if not number > 0:
        raise ValueError(f"{column} must be positive, got {value!r}")
    if number > BOUNDS[column]:
        raise ValueError(f"{column} must be at most {BOUNDS[column]}, got {value!r}")
    return number.quantize(Decimal("0.1")) if isinstance(number, Decimal) else number


def _check_cell(column: str, value: str) -> None:
    """ValueError when a stripped cell is too long, unprintable, an exported formula or a name with a path."""
    limit = MAX_CHARACTERS.get(column, MAX_CELL_CHARACTERS)
    if len(value) > limit:
        raise ValueError(f"{column} is {len(value):,} characters long, at most {limit}")
    if not value.isprintable():
        raise ValueError(f"{column} contains a control or unprintable character: {value!r}")
    if column in EXPORTED_TEXT and value.startswith(FORMULA_PREFIXES):
        raise ValueError(
            f"{column} {value!r} starts with {value[0]!r}: a spreadsheet opening the exports would run it as a "
            "formula (CSV injection)"
        )
    if column in NAME_COLUMNS and ("/" in value or "\\" in value or value in {".", ".."}):
        raise ValueError(f"{column} must be a plain folder name (no path), got {value!r}")


def _parse_row(row: dict[str, str], width: int) -> tuple[dict, LesionRow]:
    """Case-level fields and the lesion of one row of a ``width``-column CSV; ValueError names the column."""
    cells = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
    if cells != width:
        raise ValueError(f"{cells} cells where the header has {width}")
    for column in COLUMNS:
        if not (row.get(column) or "").strip():
            raise ValueError(f"{column} is empty")
        _check_cell(column, row[column].strip())
    sex = row["sex"].strip().upper()
    if sex not in SEXES:
        raise ValueError(f"sex must be one of {', '.join(SEXES)}, got {row['sex']!r}")
    split = row["split"].strip().lower()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {row['split']!r}")
    case_fields = {
        "patient": row["patient"].strip(),
        "age": _number(row["age"], "age", int),
        "sex": sex,
        "cirrhosis": _flag(row["cirrhosis"], "cirrhosis"),
        "fatty_liver": _flag(row["fatty_liver"], "fatty_liver"),
        "scanner_vendor": row["scanner_vendor"].strip(),
        "scanner_model": row["scanner_model"].strip(),
        "field_strength_t": _number(row["field_strength_t"], "field_strength_t", Decimal),
    }
    lesion = LesionRow(
        name=row["lesion"].strip(),
        label=class_index(row["label"]),
        diameter_mm=_number(row["diameter_mm"], "diameter_mm"),
        split=split,
        line=0,
    )
    return case_fields, lesion


def read_manifest(dataset_dir: Path) -> dict[str, CaseEntry]:
    """Parse ``DIR/manifest.csv`` into case entries keyed by case name.

    Row problems are recorded on the case they belong to (``CaseEntry.problems``)
    as ``manifest.csv line N: …``; ManifestError is raised when the manifest as
    a whole is unusable (see the module's docstring).
    """
    reader = csv.DictReader(io.StringIO(_manifest_text(dataset_dir), newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise ManifestError(f"{MANIFEST_NAME} line {reader.line_num + 1}: not valid CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{MANIFEST_NAME}: missing column(s) {', '.join(missing)}")
    doubled = [c for c in COLUMNS if header.count(c) > 1]
    if doubled:
        raise ManifestError(f"{MANIFEST_NAME}: column(s) {', '.join(doubled)} appear more than once in the header")
    cases: dict[str, CaseEntry] = {}
    first_line: dict[tuple[str, str], int] = {}
    for line, row in _rows(reader):
        case_name = (row.get("case") or "").strip()
        where = f"{MANIFEST_NAME} line {line}"
        try:
            _check_cell("case", case_name)  # a row that cannot name its case safely spoils the manifest
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        try:
            case_fields, lesion = _parse_row(row, len(header))
        except ValueError as exc:
            if not case_name:
                raise ManifestError(f"{where}: {exc}") from None
            cases.setdefault(case_name, _placeholder(case_name)).problems.append(f"{where}: {exc}")
            continue
        lesion = LesionRow(lesion.name, lesion.label, lesion.diameter_mm, lesion.split, line)
        entry = cases.get(case_name)
        if entry is None or not entry.patient:
            problems = entry.problems if entry else []
            entry = cases[case_name] = CaseEntry(name=case_name, **case_fields, problems=problems)
        elif any(getattr(entry, k) != v for k, v in case_fields.items()):
            differing = [k for k, v in case_fields.items() if getattr(entry, k) != v]
            entry.problems.append(f"{where}: {', '.join(differing)} disagree(s) with earlier rows of case {case_name}")
        key = (case_name, lesion.name)
        if key in first_line:
            entry.problems.append(
                f"{where}: duplicate lesion {case_name}/{lesion.name} (first on line {first_line[key]})"
            )
            continue
        first_line[key] = line
        entry.lesions.append(lesion)
    _check_patients(cases)
    return cases


def _manifest_text(dataset_dir: Path) -> str:
    """The manifest's text: UTF-8 (a byte-order mark allowed), no NUL, at most MAX_MANIFEST_BYTES."""
    path = dataset_dir / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{MANIFEST_NAME}: not found in {dataset_dir}")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{MANIFEST_NAME}: {size:,} bytes, more than the {MAX_MANIFEST_BYTES:,} accepted")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{MANIFEST_NAME}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}; UTF-16, Latin-1 "
            "or another encoding?): save it as CSV UTF-8"
        ) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ManifestError(f"{MANIFEST_NAME} line {line}: NUL character (UTF-16 or a binary file?)")
    return text


def _rows(reader: csv.DictReader):
    """(line, row) for each row with a non-blank cell; a CSV syntax error is a ManifestError naming its line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # raised before the line is counted
            raise ManifestError(f"{MANIFEST_NAME} line {reader.line_num + 1}: not valid CSV ({exc})") from None
        cells = [v for k, v in row.items() if k is not None] + (row.get(None) or [])
        if any((cell or "").strip() for cell in cells):
            yield reader.line_num, row


def _placeholder(case_name: str) -> CaseEntry:
    """An entry for a case whose only rows were unreadable."""
    return CaseEntry(case_name, "", 0, "", False, False, "", "", Decimal(0))


def _check_patients(cases: dict[str, CaseEntry]) -> None:
    """A patient's demographics agree across cases, and all their lesions share one split
    (the split is at patient level, so no patient leaks between development and test)."""
    by_patient: dict[str, list[CaseEntry]] = {}
    for entry in cases.values():
        if entry.patient:
            by_patient.setdefault(entry.patient, []).append(entry)
    for patient, entries in by_patient.items():
        splits = {lesion.split for e in entries for lesion in e.lesions}
        demographics = {tuple(sorted(e.patient_fields().items())) for e in entries}
        for entry in entries:
            if len(splits) > 1:
                entry.problems.append(
                    f"{MANIFEST_NAME}: patient {patient} has lesions in both development and test "
                    "(splits are at patient level)"
                )
            if len(demographics) > 1:
                entry.problems.append(
                    f"{MANIFEST_NAME}: patient {patient} has different age/sex/background across cases"
                )
