"""Exports of a study's data: the tidy reads table as CSV and XLSX (one sheet, no joins left to the user), and
the results workbook (one sheet per results table, confusion matrices in long form)."""

import dataclasses
import io

import numpy as np
import pandas as pd

from inference.domain import CLASSES


def to_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV, ISO 8601 times in UTC."""
    return frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ").encode()


def to_xlsx(frame: pd.DataFrame, sheet: str = "reads") -> bytes:
    """One XLSX sheet; times as UTC without a zone (Excel has none)."""
    return workbook({sheet: frame})


def workbook(sheets: dict[str, pd.DataFrame]) -> bytes:
    """An XLSX workbook, one sheet per table; times as UTC without a zone (Excel has none)."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame = frame.copy()
            for column in frame.select_dtypes(include=["datetimetz"]).columns:
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
            frame.to_excel(writer, sheet_name=name[:31], index=False)
    return buffer.getvalue()


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns holding estimates (dataclasses with estimate, low, high) spread into <column>, <column>_low,
    <column>_high; other columns as they are."""
    out = {}
    for column in frame.columns:
        values = frame[column]
        if values.map(dataclasses.is_dataclass).any():
            for part, suffix in (("estimate", ""), ("low", "_low"), ("high", "_high")):
                out[f"{column}{suffix}"] = values.map(lambda v, p=part: getattr(v, p, None))
        else:
            out[column] = values
    return pd.DataFrame(out)


def confusion_long(matrices: dict[str, np.ndarray]) -> pd.DataFrame:
    """7 × 7 matrices as rows (who, reference, diagnosis, count)."""
    rows = [
        {"who": who, "reference": CLASSES[i], "diagnosis": CLASSES[j], "count": int(n)}
        for who, matrix in matrices.items()
        for (i, j), n in np.ndenumerate(matrix)
    ]
    return pd.DataFrame(rows, columns=["who", "reference", "diagnosis", "count"])
