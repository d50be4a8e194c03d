"""A folder of DICOM files read into exams (by StudyInstanceUID), series, and the 3-D stacks they hold.

A series becomes one stack, or several when it holds several volumes: one per diffusion b-value, and one per
dynamic phase when slice positions repeat (told apart by TemporalPositionIdentifier/Index, TriggerTime,
AcquisitionNumber or AcquisitionTime, the first that separates them). Each stack is checked from its headers
alone: one orientation, one frame size and pixel spacing, slices equally spaced on one straight line along the
slice normal. Its affine maps voxel (i = column, j = row, k = slice) to RAS+ mm::

    LPS = ImagePositionPatient₀ + i·Δc·row + j·Δr·col + k·step,   RAS = diag(-1, -1, 1)·LPS

with ``row``/``col`` the ImageOrientationPatient cosines, (Δr, Δc) = PixelSpacing and ``step`` the vector from
one slice to the next (slices sorted by their position along row × col).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import SegmentationStorage

from inference.nifti import Volume
from readerstudy.cases.dicom.frames import DicomFileError, Frame, frame_pixels, image_frames, read_header

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-3
"""Largest difference of a direction cosine at which two frames count as equally oriented."""
POSITION_TOLERANCE_MM = 0.01
SPACING_TOLERANCE = 0.01
"""Slice gaps may differ from their median by this fraction (or POSITION_TOLERANCE_MM, the larger)."""
SPLIT_KEYS = (
    ("temporal", "TemporalPositionIdentifier/Index"),
    ("trigger_ms", "TriggerTime"),
    ("acquisition_number", "AcquisitionNumber"),
    ("time_s", "AcquisitionTime"),
)


@dataclass(frozen=True)
class SeriesInfo:
    """What a series says about itself (the header of its first file)."""

    uid: str
    number: int | None
    description: str
    protocol: str
    sequence_name: str
    image_type: tuple[str, ...]
    scanning_sequence: str
    scan_options: str
    contrast_agent: str
    burned_in: bool

    @classmethod
    def from_header(cls, ds: Dataset) -> SeriesInfo:
        def text(keyword: str) -> str:
            value = ds.get(keyword)
            return "\\".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value or "")

        number = ds.get("SeriesNumber")
        return cls(
            uid=str(ds.SeriesInstanceUID),
            number=int(number) if number not in (None, "") else None,
            description=text("SeriesDescription"),
            protocol=text("ProtocolName"),
            sequence_name=text("SequenceName") or text("PulseSequenceName"),
            image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
            scanning_sequence=text("ScanningSequence"),
            scan_options=text("ScanOptions"),
            contrast_agent=text("ContrastBolusAgent"),
            burned_in=text("BurnedInAnnotation").upper() == "YES",
        )


@dataclass
class Stack:
    """One 3-D volume's frames in slice order, with its geometry or the problems that prevent one.

    ``id`` names it within its exam: the SeriesNumber, then ``:b800`` for one b-value of several and
    ``:t2`` for the second of several phases (in time order). ``time_s`` is its first frame's acquisition
    time (seconds; only differences between stacks mean anything).
    """

    id: str
    series: SeriesInfo
    frames: list[Frame]
    b_value: float | None = None
    part: int | None = None
    time_s: float | None = None
    problems: list[str] = field(default_factory=list)
    shape: tuple[int, int, int] | None = None
    affine: np.ndarray | None = None

    @property
    def label(self) -> str:
        return f"series {self.id} {self.series.description!r}"

    @property
    def normal(self) -> np.ndarray:
        row, col = np.array(self.frames[0].orientation[:3]), np.array(self.frames[0].orientation[3:])
        return np.cross(row, col)

    @property
    def plane(self) -> str:
        """axial, coronal or sagittal by the slice normal's largest component (oblique when under 0.8)."""
        normal = np.abs(self.normal)
        if normal.max() < 0.8:
            return "oblique"
        return ("sagittal", "coronal", "axial")[int(normal.argmax())]

    def load(self) -> Volume:
        """Read the pixels: stored values, or float32 where a RescaleSlope/Intercept applies."""
        pixels = frame_pixels(self.frames)
        if any(f.slope != 1 or f.intercept != 0 for f in self.frames):
            pixels = [p.astype(np.float32) * f.slope + f.intercept for p, f in zip(pixels, self.frames, strict=True)]
        return Volume(data=np.stack(pixels, axis=-1).transpose(1, 0, 2), affine=self.affine)


@dataclass
class Exam:
    """All series of one StudyInstanceUID found under the folder."""

    study_uid: str
    header: Dataset | None = None  # the first image's header: the exam's patient and scanner fields
    folders: set[Path] = field(default_factory=set)
    stacks: list[Stack] = field(default_factory=list)
    segmentations: list[Path] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """The deepest folder holding all of the exam's files."""
        return Path(os.path.commonpath(sorted(self.folders)))

    def stack(self, stack_id: str) -> Stack | None:
        return next((s for s in self.stacks if s.id == stack_id), None)


@dataclass
class Scan:
    exams: dict[str, Exam]
    problems: list[str]


def scan_folder(root: Path) -> Scan:
    """Read every DICOM header under ``root`` (links are not followed; other files are ignored).

    Images are grouped by study and series into stacks; SEG objects are listed with their exam; a file with a
    DICOM preamble that cannot be read is a problem of the whole scan.
    """
    problems: list[str] = []
    exams: dict[str, Exam] = {}
    series_frames: dict[tuple[str, str], list[Frame]] = {}
    series_info: dict[tuple[str, str], SeriesInfo] = {}
    series_problems: dict[tuple[str, str], list[str]] = {}
    for path in _files(root):
        try:
            ds = read_header(path)
        except DicomFileError as exc:
            problems.append(str(exc))
            continue
        if ds is None:
            continue
        study = str(ds.get("StudyInstanceUID") or "")
        if not study or "SeriesInstanceUID" not in ds:
            problems.append(f"{path.relative_to(root)}: DICOM file without StudyInstanceUID or SeriesInstanceUID")
            continue
        exam = exams.setdefault(study, Exam(study_uid=study))
        exam.folders.add(path.parent)
        if ds.get("SOPClassUID") == SegmentationStorage:
            exam.segmentations.append(path)
            continue
        if "Rows" not in ds:
            continue  # not an image (structured report, presentation state, key object)
        exam.header = exam.header or ds
        key = (study, str(ds.SeriesInstanceUID))
        series_info.setdefault(key, SeriesInfo.from_header(ds))
        try:
            series_frames.setdefault(key, []).extend(image_frames(path.relative_to(root), ds))
        except DicomFileError as exc:
            series_problems.setdefault(key, []).append(str(exc))
    for (study, _), info in sorted(series_info.items(), key=lambda item: (item[1].number or 0, item[1].uid)):
        key = (study, info.uid)
        frames = [_absolute(f, root) for f in series_frames.get(key, [])]
        if key in series_problems:
            stacks = [Stack(id="", series=info, frames=frames, problems=series_problems[key][:3])]
        else:
            stacks = split_series(info, frames)
        exams[study].stacks.extend(stacks)
    for exam in exams.values():
        _name_stacks(exam.stacks)
    return Scan(exams=exams, problems=problems)


def _files(root: Path):
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if not name.startswith(".") and not path.is_symlink() and name.upper() != "DICOMDIR":
                yield path


def _absolute(frame: Frame, root: Path) -> Frame:
    return replace(frame, path=root / frame.path)


def _name_stacks(stacks: list[Stack]) -> None:
    """Ids from the SeriesNumber; a number used by two series gets -1, -2 (by SeriesInstanceUID)."""
    numbers = Counter(s.series.number for s in {s.series.uid: s for s in stacks}.values())
    seen: dict[int | None, list[str]] = {}
    for stack in stacks:
        uids = seen.setdefault(stack.series.number, [])
        if stack.series.uid not in uids:
            uids.append(stack.series.uid)
        base = str(stack.series.number if stack.series.number is not None else "?")
        if numbers[stack.series.number] > 1:
            base += f"-{uids.index(stack.series.uid) + 1}"
        suffix = (f":b{stack.b_value:g}" if stack.b_value is not None and _has_b_parts(stacks, stack) else "") + (
            f":t{stack.part}" if stack.part else ""
        )
        stack.id = base + suffix


def _has_b_parts(stacks: list[Stack], stack: Stack) -> bool:
    return len({s.b_value for s in stacks if s.series.uid == stack.series.uid}) > 1


def split_series(info: SeriesInfo, frames: list[Frame]) -> list[Stack]:
    """The stacks of one series: one per b-value, each split into phases where positions repeat."""
    by_b: dict[float | None, list[Frame]] = {}
    for frame in frames:
        by_b.setdefault(None if frame.b_value is None else round(frame.b_value, 1), []).append(frame)
    stacks = []
    for b_value in sorted(by_b, key=lambda b: -1 if b is None else b):
        parts, problem = _split_phases(by_b[b_value])
        if problem:
            stacks.append(Stack(id="", series=info, frames=by_b[b_value], b_value=b_value, problems=[problem]))
            continue
        times = _part_times(parts)
        for number, part in enumerate(parts, start=1):
            stack = Stack(id="", series=info, frames=part, b_value=b_value, part=number if len(parts) > 1 else None)
            stack.time_s = times[number - 1]
            _check_geometry(stack)
            stacks.append(stack)
    return stacks


def _part_times(parts: list[list[Frame]]) -> list[float | None]:
    """When each part was acquired: its earliest frame time; where the parts share their frame times (one
    AcquisitionTime for a whole multi-phase series), the series start plus each part's TriggerTime."""
    times = [min((f.time_s for f in part if f.time_s is not None), default=None) for part in parts]
    shared = len(parts) > 1 and None not in times and len(set(times)) == 1
    if shared and all(f.trigger_ms is not None for part in parts for f in part):
        return [times[0] + min(f.trigger_ms for f in part) / 1000 for part in parts]
    return times


def _position_key(frame: Frame) -> tuple:
    return tuple(round(v / POSITION_TOLERANCE_MM) for v in frame.position) + tuple(
        round(v / ORIENTATION_TOLERANCE) for v in frame.orientation
    )


def _split_phases(frames: list[Frame]) -> tuple[list[list[Frame]], str | None]:
    """Frames split into volumes where slice positions repeat: (volumes, problem)."""
    by_position: dict[tuple, list[Frame]] = {}
    for frame in frames:
        by_position.setdefault(_position_key(frame), []).append(frame)
    repeats = Counter(len(group) for group in by_position.values())
    if set(repeats) == {1}:
        return [frames], None
    if len(repeats) > 1:
        shown = ", ".join(f"{n} position(s) × {r}" for r, n in sorted(repeats.items()))
        return [], f"slice positions repeat unequally often ({shown}): a phase with missing slices?"
    count = next(iter(repeats))
    for attribute, _ in SPLIT_KEYS:
        values = [getattr(f, attribute) for f in frames]
        if any(v is None for v in values):
            continue
        ordered = [sorted(group, key=lambda f: getattr(f, attribute)) for group in by_position.values()]
        if any(len({getattr(f, attribute) for f in group}) < count for group in ordered):
            continue
        volumes = [[group[n] for group in ordered] for n in range(count)]
        keys = [[getattr(f, attribute) for f in volume] for volume in volumes]
        if attribute == "time_s":  # per-slice times: phases must not overlap in time
            separated = all(max(a) < min(b) for a, b in zip(keys, keys[1:], strict=False))
        else:
            separated = all(len(set(k)) == 1 for k in keys)
        if separated:
            return volumes, None
    tags = ", ".join(tag for _, tag in SPLIT_KEYS)
    return [], f"each slice position occurs {count} times and no tag ({tags}) separates them into volumes"


def _check_geometry(stack: Stack) -> None:
    """Sort the frames along the slice normal and set ``shape`` and ``affine``, or record the problem."""
    frames = stack.frames
    orientations = {tuple(round(v / ORIENTATION_TOLERANCE) for v in f.orientation) for f in frames}
    if len(orientations) > 1:
        shown = "; ".join("\\".join(f"{v * ORIENTATION_TOLERANCE:g}" for v in o) for o in sorted(orientations)[:3])
        stack.problems.append(f"mixed orientations: {len(orientations)} different ImageOrientationPatient ({shown})")
        return
    if len({(f.size, f.spacing) for f in frames}) > 1:
        stack.problems.append("frames differ in Rows/Columns or PixelSpacing")
        return
    normal = stack.normal
    frames.sort(key=lambda f: float(np.dot(f.position, normal)))
    positions = np.array([f.position for f in frames])
    if len(frames) > 1:
        gaps = np.diff(positions @ normal)
        median = float(np.median(gaps))
        tolerance = max(POSITION_TOLERANCE_MM, SPACING_TOLERANCE * median)
        if np.abs(gaps - median).max() > tolerance:
            stack.problems.append(
                f"inconsistent slice spacing: gaps between slices range from {gaps.min():.2f} to {gaps.max():.2f} mm "
                "(a missing, extra or overlapping slice?)"
            )
            return
        step = (positions[-1] - positions[0]) / (len(frames) - 1)
        drift = np.linalg.norm(positions - (positions[0] + np.outer(np.arange(len(frames)), step)), axis=1).max()
        if drift > tolerance or np.linalg.norm(np.cross(step, normal)) > tolerance:
            stack.problems.append(f"slices are not stacked along their normal (off by up to {drift:.2f} mm)")
            return
    else:
        step = normal * (frames[0].slice_thickness or 1.0)
    row, col = np.array(frames[0].orientation[:3]), np.array(frames[0].orientation[3:])
    spacing_rows, spacing_cols = frames[0].spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * spacing_cols, col * spacing_rows, step, positions[0]
    stack.affine = LPS_TO_RAS @ lps
    stack.shape = (frames[0].size[1], frames[0].size[0], len(frames))
    if stack.series.burned_in:
        stack.problems.append("BurnedInAnnotation is YES: the pixels may show identifying text")
