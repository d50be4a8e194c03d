"""Exports of a study's data: the tidy reads table as CSV and XLSX (one sheet, no joins left to the user)."""

import io

import pandas as pd


def to_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV, ISO 8601 times in UTC."""
    return frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ").encode()


def to_xlsx(frame: pd.DataFrame, sheet: str = "reads") -> bytes:
    """One XLSX sheet; times as UTC without a zone (Excel has none)."""
    frame = frame.copy()
    for column in frame.select_dtypes(include=["datetimetz"]).columns:
        frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name=sheet, index=False)
    return buffer.getvalue()
