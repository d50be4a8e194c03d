"""DICOM files as image frames: one 2-D frame per classic file, or the frames of an enhanced multi-frame file.

Each frame carries what stacking and sequence mapping need: its plane (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing; per-frame functional groups first, then shared ones), its
rescale, its timing and its diffusion b-value. Pixels are read only when a stack is converted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

PRIVATE_B_VALUES = (
    (0x0043, "GEMS_PARM_01", 0x39),  # GE: b-value (+ 10⁹ on some releases), then gradient info
    (0x0019, "SIEMENS CSA HEADER", 0x0C),  # Siemens: B_value
    (0x2001, "Philips Imaging DD 001", 0x03),  # Philips: Diffusion_B_Factor
)
"""Where vendors put the b-value (s/mm²) when the standard DiffusionBValue is absent: group, private creator,
element offset."""


class DicomFileError(ValueError):
    """A file that claims to be DICOM but cannot be read, with the file named."""


@dataclass(frozen=True)
class Frame:
    """One 2-D image of a series.

    ``position`` is ImagePositionPatient (mm, LPS), ``orientation`` the row and column direction cosines,
    ``spacing`` PixelSpacing (between rows, between columns; mm). ``time_s`` is the frame's acquisition time
    in seconds (on a day count when the date is known), ``trigger_ms`` TriggerTime, ``temporal`` the temporal
    position (identifier or index), ``b_value`` in s/mm².
    """

    path: Path
    sop_uid: str
    number: int | None  # 1-based frame number in a multi-frame file; None for a single-frame file
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    spacing: tuple[float, float]
    size: tuple[int, int]  # rows, columns
    slope: float
    intercept: float
    time_s: float | None
    trigger_ms: float | None
    temporal: int | None
    acquisition_number: int | None
    b_value: float | None
    slice_thickness: float | None


def read_header(path: Path) -> Dataset | None:
    """The file's dataset without pixel data; None when the file is not DICOM (no preamble or meta);
    DicomFileError when it has a DICOM preamble but cannot be parsed."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            if handle.read(4) != b"DICM":
                return None
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # a damaged or hostile file may fail in any of pydicom's parsers
        raise DicomFileError(f"{path}: unreadable DICOM file ({exc})") from None


def _seconds(date: str | None, time: str | None) -> float | None:
    """DA ``YYYYMMDD`` and TM ``HHMMSS.ffffff`` to seconds (days since year 1 × 86400 + seconds of the day)."""
    time = (time or "").strip()
    if len(time) < 2:
        return None
    try:
        seconds = int(time[0:2]) * 3600 + int(time[2:4] or 0) * 60 + float(time[4:] or 0)
        day = datetime.strptime(date.strip()[:8], "%Y%m%d").toordinal() if date and date.strip() else 0
    except ValueError:
        return None
    return day * 86400.0 + seconds


def _datetime_seconds(value: str | None) -> float | None:
    """DT ``YYYYMMDDHHMMSS.ffffff`` to the same scale as ``_seconds``."""
    value = (value or "").strip()
    return _seconds(value[:8], value[8:]) if len(value) >= 10 else None


def _number(value, kind=float):
    if value is None or value == "":
        return None
    try:
        number = kind(value[0] if isinstance(value, (list, tuple, MultiValue)) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def private_b_value(ds: Dataset) -> float | None:
    """The b-value from a vendor's private tag (see PRIVATE_B_VALUES), or None."""
    for group, creator, offset in PRIVATE_B_VALUES:
        try:
            value = ds.private_block(group, creator)[offset].value
        except KeyError:
            continue
        b = _number(value)
        if b is not None:
            return float(b % 100000) if b >= 100000 else float(b)
    return None


def _item(ds: Dataset | None, sequence: str) -> Dataset | None:
    """The first item of a functional-group sequence of ``ds``, or None."""
    value = getattr(ds, sequence, None) if ds is not None else None
    return value[0] if value else None


def _group(per_frame: Dataset | None, shared: Dataset | None, sequence: str) -> Dataset | None:
    """A functional group: the frame's own when it has one, else the shared one."""
    return _item(per_frame, sequence) or _item(shared, sequence)


def _classic_frames(path: Path, ds: Dataset) -> list[Frame]:
    b_value = _number(ds.get("DiffusionBValue"))
    return [
        Frame(
            path=path,
            sop_uid=str(ds.SOPInstanceUID),
            number=None,
            position=tuple(float(v) for v in ds.ImagePositionPatient),
            orientation=tuple(float(v) for v in ds.ImageOrientationPatient),
            spacing=tuple(float(v) for v in ds.PixelSpacing),
            size=(int(ds.Rows), int(ds.Columns)),
            slope=_number(ds.get("RescaleSlope")) or 1.0,
            intercept=_number(ds.get("RescaleIntercept")) or 0.0,
            time_s=_datetime_seconds(ds.get("AcquisitionDateTime"))
            or _seconds(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"))
            or _seconds(ds.get("ContentDate") or ds.get("SeriesDate"), ds.get("ContentTime")),
            trigger_ms=_number(ds.get("TriggerTime")),
            temporal=_number(ds.get("TemporalPositionIdentifier"), int),
            acquisition_number=_number(ds.get("AcquisitionNumber"), int),
            b_value=b_value if b_value is not None else private_b_value(ds),
            slice_thickness=_number(ds.get("SliceThickness")),
        )
    ]


def _enhanced_frames(path: Path, ds: Dataset) -> list[Frame]:
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []))
    count = int(ds.NumberOfFrames)
    if len(per_frame) != count:
        raise DicomFileError(f"{path}: {count} frames but {len(per_frame)} per-frame functional groups")
    frames = []
    for number, groups in enumerate(per_frame, start=1):
        plane = _group(groups, shared, "PlanePositionSequence")
        orientation = _group(groups, shared, "PlaneOrientationSequence")
        measures = _group(groups, shared, "PixelMeasuresSequence")
        if plane is None or orientation is None or measures is None:
            raise DicomFileError(f"{path}: frame {number} has no plane position, orientation or pixel spacing")
        rescale = _group(groups, shared, "PixelValueTransformationSequence")
        content = _group(groups, shared, "FrameContentSequence")
        diffusion = _group(groups, shared, "MRDiffusionSequence")
        frames.append(
            Frame(
                path=path,
                sop_uid=str(ds.SOPInstanceUID),
                number=number,
                position=tuple(float(v) for v in plane.ImagePositionPatient),
                orientation=tuple(float(v) for v in orientation.ImageOrientationPatient),
                spacing=tuple(float(v) for v in measures.PixelSpacing),
                size=(int(ds.Rows), int(ds.Columns)),
                slope=(_number(rescale.get("RescaleSlope")) if rescale else None) or 1.0,
                intercept=(_number(rescale.get("RescaleIntercept")) if rescale else None) or 0.0,
                time_s=_datetime_seconds(content.get("FrameAcquisitionDateTime")) if content else None,
                trigger_ms=None,
                temporal=_number(content.get("TemporalPositionIndex"), int) if content else None,
                acquisition_number=_number(ds.get("AcquisitionNumber"), int),
                b_value=_number(diffusion.get("DiffusionBValue")) if diffusion else None,
                slice_thickness=_number(measures.get("SliceThickness")),
            )
        )
    return frames


def image_frames(path: Path, ds: Dataset) -> list[Frame]:
    """The frames of an image file whose header is ``ds``; DicomFileError names a missing geometry tag."""
    try:
        if "PerFrameFunctionalGroupsSequence" in ds:
            return _enhanced_frames(path, ds)
        return _classic_frames(path, ds)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, DicomFileError):
            raise
        raise DicomFileError(f"{path}: image without usable plane geometry ({exc})") from None


def frame_pixels(frames: list[Frame]) -> list[np.ndarray]:
    """The stored pixels (rows × columns) of each frame, in the given order, each file read once;
    DicomFileError names a file whose pixel data cannot be decoded."""
    arrays: dict[Path, np.ndarray] = {}
    pixels = []
    for frame in frames:
        if frame.path not in arrays:
            try:
                arrays[frame.path] = pydicom.dcmread(frame.path).pixel_array
            except Exception as exc:  # any decoder failure: corrupt data or an unsupported transfer syntax
                raise DicomFileError(f"{frame.path}: cannot decode pixel data ({exc})") from None
        array = arrays[frame.path]
        image = array[frame.number - 1] if frame.number is not None and array.ndim == 3 else array
        if image.shape != frame.size:
            raise DicomFileError(f"{frame.path}: pixel data {image.shape} does not match Rows × Columns {frame.size}")
        pixels.append(image)
    return pixels
