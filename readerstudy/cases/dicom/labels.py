"""``labels.csv`` of a DICOM import: one row per lesion, naming its exam without being stored.

Required columns: ``study`` (the exam's StudyInstanceUID or AccessionNumber; used only to find the exam),
``lesion`` (the SEG SegmentLabel or NIfTI mask folder name), ``label``, ``diameter_mm``, ``split``,
``cirrhosis``, ``fatty_liver`` (as in manifest.csv). Optional: ``age``, ``sex``, ``scanner_vendor``,
``scanner_model``, ``field_strength_t``: where given they are used instead of the headers' values (needed
where the headers lack them). Values are checked by the importer, whose messages name the labels.csv line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("study", "lesion", "label", "diameter_mm", "split", "cirrhosis", "fatty_liver")
HEADER_FIELDS = ("age", "sex", "scanner_vendor", "scanner_model", "field_strength_t")


class LabelsError(ValueError):
    """labels.csv as a whole cannot be used."""


@dataclass(frozen=True)
class LabelRow:
    line: int
    values: dict[str, str]

    def given(self, column: str) -> str | None:
        value = (self.values.get(column) or "").strip()
        return value or None


def read_labels(path: Path) -> dict[str, list[LabelRow]]:
    """Rows by their ``study`` value; LabelsError for a missing file or column or an empty ``study``."""
    name = Path(path).name
    if not Path(path).is_file():
        raise LabelsError(f"{name}: not found")
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelsError(f"{name}: missing column(s) {', '.join(missing)}")
        rows: dict[str, list[LabelRow]] = {}
        for values in reader:
            study = (values.get("study") or "").strip()
            if not study:
                raise LabelsError(f"{name} line {reader.line_num}: study is empty")
            rows.setdefault(study, []).append(LabelRow(reader.line_num, values))
    return rows
