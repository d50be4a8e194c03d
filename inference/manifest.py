"""The dataset manifest: one CSV row per lesion, parsed and checked.

Columns (header required, any order; extra columns are ignored):
``patient, age, sex, cirrhosis, fatty_liver, scanner_vendor, scanner_model,
field_strength_t, case, lesion, label, diameter_mm, split``.

A bad row, or rows of one case that disagree on case-level fields, reject that
case only; a missing file or column rejects the whole manifest.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from inference.domain import SEXES, SPLITS, class_index

MANIFEST_NAME = "manifest.csv"
COLUMNS = (
    "patient", "age", "sex", "cirrhosis", "fatty_liver", "scanner_vendor", "scanner_model",
    "field_strength_t", "case", "lesion", "label", "diameter_mm", "split",
)  # fmt: skip
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


def _number(value: str, column: str, kind=float, positive=True):
    try:
        number = kind(value.strip())
    except (ValueError, InvalidOperation):
        raise ValueError(f"{column} must be a number, got {value!r}") from None
    if positive and not number > 0:
        raise ValueError(f"{column} must be positive, got {value!r}")
    return number


def _parse_row(row: dict[str, str]) -> tuple[dict, LesionRow]:
    """Case-level fields and the lesion of one row; ValueError names the column."""
    for column in COLUMNS:
        if not (row.get(column) or "").strip():
            raise ValueError(f"{column} is empty")
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
    as ``manifest.csv line N: …``; ManifestError is raised when the file or a
    column is missing.
    """
    path = dataset_dir / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{MANIFEST_NAME}: not found in {dataset_dir}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{MANIFEST_NAME}: missing column(s) {', '.join(missing)}")
        cases: dict[str, CaseEntry] = {}
        first_line: dict[tuple[str, str], int] = {}
        for row in reader:
            line = reader.line_num
            case_name = (row.get("case") or "").strip()
            where = f"{MANIFEST_NAME} line {line}"
            try:
                case_fields, lesion = _parse_row(row)
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
                entry.problems.append(
                    f"{where}: {', '.join(differing)} disagree(s) with earlier rows of case {case_name}"
                )
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
