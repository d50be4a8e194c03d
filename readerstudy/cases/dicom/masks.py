"""Lesion masks of a DICOM exam, written into the NIfTI import layout (``<case>/masks/<lesion>/<SEQ>.nii``).

Two sources, mixed freely within an exam:

- **DICOM SEG** (read with highdicom): each segment is a lesion, named by its SegmentLabel; it belongs to the
  stack whose frames it references (ReferencedSeriesSequence, then the source image and frame of each SEG
  frame), so a SEG on one phase of a multi-phase series or one b-value of a DWI series lands on that stack;
  the stack's mapped sequence names the file.
- **NIfTI beside the series**: ``<exam folder>/masks/<lesion>/<SEQ>.nii[.gz]``, the exam folder being the
  deepest folder holding all the exam's files (it must hold no other exam's files); named by sequence.

The importer then checks every mask against its sequence's grid, as for any NIfTI dataset.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np

from inference.dataset import NIFTI_SUFFIXES
from inference.nifti import write_volume
from readerstudy.cases.dicom.series import Exam, Stack

MASKS_FOLDER = "masks"
LESION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


def _segment_pixels(seg: hd.seg.Segmentation, stack: Stack, segment: int) -> np.ndarray:
    """The segment on the stack's frames as (i, j, k), zeros where the SEG has no frame."""
    frames = stack.frames
    if frames[0].number is None:
        pixels = seg.get_pixels_by_source_instance(
            [f.sop_uid for f in frames], segment_numbers=[segment], assert_missing_frames_are_empty=True
        )
    else:
        pixels = seg.get_pixels_by_source_frame(
            frames[0].sop_uid,
            [f.number for f in frames],
            segment_numbers=[segment],
            assert_missing_frames_are_empty=True,
        )
    return pixels[..., 0].transpose(2, 1, 0)


def _segmentation_masks(exam: Exam, path: Path, where: str, problems: list[str]):
    """(lesion, stack, mask) for each segment of one SEG file."""
    try:
        seg = hd.seg.segread(path)
        series = {str(item.SeriesInstanceUID) for item in seg.ReferencedSeriesSequence}
        segments = [(int(s.SegmentNumber), str(s.SegmentLabel).strip()) for s in seg.SegmentSequence]
    except Exception as exc:  # highdicom and pydicom raise many kinds on a malformed SEG
        problems.append(f"{where}: unreadable DICOM SEG ({exc})")
        return
    stacks = [s for s in exam.stacks if s.series.uid in series and s.affine is not None]
    for number, lesion in segments:
        found = []
        for stack in stacks:
            try:
                mask = _segment_pixels(seg, stack, number)
            except (ValueError, KeyError, IndexError, RuntimeError) as exc:
                problems.append(f"{where}: segment {lesion!r} cannot be placed on {stack.label} ({exc})")
                continue
            if mask.any():
                found.append((stack, mask))
        if not found:
            problems.append(f"{where}: segment {lesion!r} refers to no image of this exam")
        elif len(found) > 1:
            problems.append(f"{where}: segment {lesion!r} spans {', '.join(s.label for s, _ in found)}")
        else:
            yield lesion, found[0][0], found[0][1]


def write_masks(exam: Exam, mapping: dict[str, str], case_dir: Path, root: Path, shared_folder: bool) -> list[str]:
    """Write the exam's masks under ``case_dir/masks``; returns the problems (files named relative to
    ``root``). ``shared_folder``: another exam's files lie in this exam's folder."""
    problems: list[str] = []
    sequence_of = {stack_id: sequence for sequence, stack_id in mapping.items()}
    written: dict[tuple[str, str], str] = {}

    def claim(lesion: str, sequence: str, source: str) -> Path | None:
        if not LESION_NAME.match(lesion):
            problems.append(f"{source}: lesion name {lesion!r} is not usable (letters, digits, space . _ -)")
            return None
        if (lesion, sequence) in written:
            problems.append(f"two masks for lesion {lesion} on {sequence}: {written[lesion, sequence]} and {source}")
            return None
        written[lesion, sequence] = source
        folder = case_dir / MASKS_FOLDER / lesion
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    for path in sorted(exam.segmentations):
        where = str(path.relative_to(root))
        for lesion, stack, mask in _segmentation_masks(exam, path, where, problems):
            sequence = sequence_of.get(stack.id)
            if sequence is None:
                problems.append(f"{where}: segment {lesion!r} lies on {stack.label}, which is mapped to no sequence")
            elif folder := claim(lesion, sequence, f"{where} segment {lesion!r}"):
                write_volume(folder / f"{sequence}.nii", mask.astype(np.uint8), stack.affine)

    nifti_root = exam.folder / MASKS_FOLDER
    if nifti_root.is_dir():
        if shared_folder:
            problems.append(
                f"{nifti_root.relative_to(root)}/: NIfTI masks in a folder that also holds another exam's files; "
                "give each exam its own folder"
            )
            return problems
        for path in sorted(nifti_root.glob("*/*")):
            stem = next((path.name[: -len(s)] for s in NIFTI_SUFFIXES if path.name.endswith(s)), None)
            if stem is None or not path.is_file() or path.is_symlink():
                continue
            folder = claim(path.parent.name, stem, str(path.relative_to(root)))
            if folder:
                shutil.copyfile(path, folder / path.name)
    return problems
