"""A dataset folder in the import layout, read and checked without a database.

Layout::

    DIR/manifest.csv                          one row per lesion (see ``inference.manifest``)
    DIR/<case>/<SEQ>.nii[.gz]                 the seven sequences, SEQ in SEQUENCES
    DIR/<case>/masks/<lesion>/<SEQ>.nii[.gz]  one mask per lesion per sequence, on that sequence's grid

The app's importer stores what this module accepts; training reads it directly.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.domain import SEQUENCES
from inference.manifest import MANIFEST_NAME, CaseEntry
from inference.nifti import Volume, VolumeError, load_volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class CaseRejected(Exception):
    """A case that cannot be used; ``problems`` name each file and what is wrong."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class LoadedCase:
    """A case whose files all passed the checks."""

    entry: CaseEntry
    volumes: dict[str, Volume]
    masks: dict[str, dict[str, Volume]]  # lesion name → sequence → mask
    source_sha256: str


def printable(name: str) -> str:
    """A file or folder name fit for a message: control and other unprintable characters escaped (``\\n``)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


def _nifti_files(folder: Path) -> dict[str, list[Path]]:
    """Entries of a folder by stem (name without a NIfTI suffix); hidden entries and folders ignored, except
    a folder named like a NIfTI file, which the checks then refuse."""
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        suffix = next((s for s in NIFTI_SUFFIXES if path.name.endswith(s)), "")
        if path.name.startswith(".") or (path.is_dir() and not suffix):
            continue
        files.setdefault(path.name.removesuffix(suffix) if suffix else path.name, []).append(path)
    return files


def _sequence_files(folder: Path, where: str, problems: list[str]) -> dict[str, Path]:
    """One NIfTI file per sequence in ``folder``; missing, doubled and extra files are problems."""
    files = _nifti_files(folder)
    found: dict[str, Path] = {}
    for sequence in SEQUENCES:
        candidates = files.pop(sequence, [])
        if not candidates:
            problems.append(f"{where}: missing sequence {sequence} (expected {sequence}.nii.gz or {sequence}.nii)")
        elif len(candidates) > 1:
            shown = ", ".join(printable(p.name) for p in candidates)
            problems.append(f"{where}: more than one file for {sequence}: {shown}")
        else:
            found[sequence] = candidates[0]
    for paths in files.values():
        for path in paths:
            problems.append(
                f"{where}{printable(path.name)}: extra file (expected only the sequences {', '.join(SEQUENCES)})"
            )
    return found


def _load(path: Path, case_dir: Path, problems: list[str]) -> Volume | None:
    """The checked volume, or None with the problem recorded; a link to a file outside the dataset folder is
    refused before it is opened."""
    label = path.relative_to(case_dir.parent)
    try:
        if not path.resolve().is_relative_to(case_dir.parent.resolve()):
            raise VolumeError(label, "a symbolic link to a file outside the dataset folder")
        return load_volume(path, label=label)
    except VolumeError as exc:
        problems.append(str(exc))
    except (OSError, RuntimeError) as exc:  # a link loop
        problems.append(f"{label}: unresolvable path ({exc})")
    return None


def _check_mask(mask: Volume, image: Volume, where: str) -> str | None:
    """The problem with a mask on its sequence's grid, or None: same grid, one non-zero value."""
    if not mask.same_grid(image):
        return (
            f"{where}: mask grid {mask.shape} does not match its sequence's grid {image.shape} "
            f"(shape or affine differ by more than 0.01 mm)"
        )
    labelled = mask.data[mask.data != 0]  # a lesion is a small part of the grid: sort only its voxels
    nonzero = np.unique(labelled)
    if nonzero.size == 0:
        return f"{where}: empty mask (no non-zero voxel)"
    if nonzero.size > 1:
        shown = ", ".join(f"{v:g}" for v in nonzero[:5])
        return f"{where}: mask has {nonzero.size} different non-zero labels ({shown}); expected one lesion label"
    return None


def load_case(case_dir: Path, entry: CaseEntry) -> LoadedCase:
    """Read and check every file of one case; CaseRejected lists all problems found."""
    problems: list[str] = []
    case = case_dir.name
    sequence_paths = _sequence_files(case_dir, f"{case}/", problems)
    volumes = {s: v for s, p in sequence_paths.items() if (v := _load(p, case_dir, problems)) is not None}

    mask_root = case_dir / "masks"
    lesion_dirs = {p.name for p in mask_root.iterdir() if p.is_dir()} if mask_root.is_dir() else set()
    manifest_lesions = {lesion.name for lesion in entry.lesions}
    for name in sorted(lesion_dirs - manifest_lesions):
        problems.append(f"{case}/masks/{printable(name)}/: files without a manifest row")
    masks: dict[str, dict[str, Volume]] = {}
    mask_paths: list[Path] = []
    for lesion in entry.lesions:
        if lesion.name not in lesion_dirs:
            problems.append(
                f"manifest.csv line {lesion.line}: row without files: {case}/masks/{lesion.name}/ not found"
            )
            continue
        where = f"{case}/masks/{lesion.name}/"
        paths = _sequence_files(mask_root / lesion.name, where, problems)
        mask_paths += paths.values()
        masks[lesion.name] = {}
        for sequence, path in paths.items():
            mask = _load(path, case_dir, problems)
            if mask is None or sequence not in volumes:
                continue
            problem = _check_mask(mask, volumes[sequence], f"{where}{path.name}")
            if problem:
                problems.append(problem)
            else:
                masks[lesion.name][sequence] = mask
    if problems:
        raise CaseRejected(problems)
    inputs = sorted([*sequence_paths.values(), *mask_paths])
    source = hashlib.sha256()
    for path in inputs:
        source.update(f"{path.relative_to(case_dir)}\0{sha256_file(path)}\n".encode())
    return LoadedCase(entry=entry, volumes=volumes, masks=masks, source_sha256=source.hexdigest())


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_first_cases(dataset_dir: Path, count: int, out_dir: Path) -> Path:
    """A new dataset in ``out_dir`` holding the first ``count`` cases (by name) of ``dataset_dir`` and their
    manifest rows, for quick runs on part of a cohort; returns ``out_dir``."""
    with (Path(dataset_dir) / MANIFEST_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    cases = sorted({row["case"] for row in rows})[:count]
    for case in cases:
        shutil.copytree(Path(dataset_dir) / case, Path(out_dir) / case)
    with (Path(out_dir) / MANIFEST_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if row["case"] in cases)
    return Path(out_dir)
