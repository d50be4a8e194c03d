"""Import a dataset folder: validate, anonymise and store each case whole or not at all.

The layout and its checks are ``inference.dataset``'s (README "Dataset layout").
Every file is checked before anything is written; stored files are rewritten
with clean headers under random names; the database rows of a case are created
in one transaction, and files written for a case that then fails are removed.
Each imported case then sends ``case_imported`` (the predictions app queues it).
A write the storage refuses (disk full, media not writable) stops the import with
``StorageFailed`` naming the case, the file and the problem; nothing of that case
is kept, the cases before it are imported whole.
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from tqdm import tqdm

from inference.dataset import CaseRejected, LoadedCase, load_case, printable, sha256_file
from inference.manifest import MANIFEST_NAME, ManifestError, read_manifest
from inference.nifti import Volume, write_volume
from readerstudy.cases.anonymise import patient_key, stored_volume_name
from readerstudy.cases.models import Case, Lesion, LesionMask, Patient, SequenceVolume
from readerstudy.cases.signals import case_imported, cases_rejected


class StorageFailed(Exception):
    """The storage refused to write a case's file: the import stops (the next cases would fail alike)."""


class InvalidDatasetName(ValueError):
    """The dataset name cannot be stored: the import does not start."""


def check_dataset_name(name: str) -> str:
    """``name`` if it can name a dataset: 1 to ``Case.dataset``'s max_length characters, all printable, not blank;
    else InvalidDatasetName saying what is wrong."""
    limit = Case._meta.get_field("dataset").max_length
    if not name.strip():
        raise InvalidDatasetName("dataset name is empty")
    if len(name) > limit:
        shown = printable(name[:40])
        raise InvalidDatasetName(f"dataset name {shown}… is {len(name):,} characters long, at most {limit}")
    if not name.isprintable():
        raise InvalidDatasetName(f"dataset name '{printable(name)}' holds unprintable characters")
    return name


STORAGE_PROBLEMS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "media store not writable",
    errno.EPERM: "media store not writable",
    errno.EROFS: "media store is read-only",
}


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    lesions: int = 0

    def summary(self) -> str:
        lines = [
            f"Imported {len(self.imported)} case(s) with {self.lesions} lesion(s); "
            f"skipped {len(self.skipped)} already imported; rejected {len(self.rejected)}."
        ]
        for case, problems in sorted(self.rejected.items()):
            lines += [f"  REJECTED {case}:"] + [f"    - {p}" for p in problems]
        return "\n".join(lines)


def import_dataset(dataset_dir: Path, *, dataset: str | None = None, progress: bool = False) -> ImportReport:
    """Import every case of ``dataset_dir``; ``dataset`` names it (default: the folder name).

    Raises InvalidDatasetName for a name that cannot be stored, ManifestError when
    the manifest itself is unusable and StorageFailed when the storage refuses a
    write; otherwise returns a report in which each case is imported, skipped
    (same content already imported) or rejected with its problems.
    """
    dataset_dir = Path(dataset_dir)
    dataset = check_dataset_name(dataset or dataset_dir.resolve().name)
    try:
        entries = read_manifest(dataset_dir)
    except ManifestError as exc:
        cases_rejected.send(sender=Case, dataset=dataset, rejected={MANIFEST_NAME: [str(exc)]})
        raise
    folders = {p.name for p in dataset_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    report = ImportReport()
    for name in sorted(folders - entries.keys()):
        report.rejected[printable(name)] = [f"{printable(name)}/: files without a manifest row"]
    names = sorted(entries)
    loads = zip(names, _loaded_ahead(dataset_dir, names, entries, folders), strict=True)
    for name, load in tqdm(loads, total=len(names), desc="Importing cases", unit="case", disable=not progress):
        entry = entries[name]
        try:
            loaded = load.result()
            if _already_imported(dataset, loaded):
                report.skipped.append(name)
                continue
            case = store_case(dataset, loaded)
        except CaseRejected as exc:
            report.rejected[name] = exc.problems
        else:
            report.imported.append(name)
            report.lesions += len(entry.lesions)
            case_imported.send(sender=Case, case=case)
    if report.rejected:
        rejected = {
            name: [_pseudonymised(p, entries.values()) for p in problems] for name, problems in report.rejected.items()
        }
        cases_rejected.send(sender=Case, dataset=dataset, rejected=rejected)
    return report


def _loaded_ahead(dataset_dir: Path, names: list[str], entries: dict, folders: set[str]) -> Iterator[Future]:
    """Each case of ``names`` read and checked (``load_case``; CaseRejected when it cannot be), one case ahead of
    the caller in a thread: reading and inflating the next case overlaps storing this one (zlib and the file
    reads release the GIL), so an import uses two cores. Nothing is written here."""

    def load(name: str) -> LoadedCase:
        entry = entries[name]
        if name not in folders:
            raise CaseRejected([f"manifest row(s) without files: folder {name}/ not found"])
        if entry.problems:
            raise CaseRejected(entry.problems)
        return load_case(dataset_dir / name, entry)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-read") as reader:
        ahead = reader.submit(load, names[0]) if names else None
        for n in range(len(names)):
            current, ahead = ahead, reader.submit(load, names[n + 1]) if n + 1 < len(names) else None
            yield current


def _pseudonymised(problem: str, entries) -> str:
    """``problem`` with each manifest patient id it names ("patient P1 ...") replaced by its pseudonym, so
    that what is kept (the audit trail) never holds an original id."""
    for entry in entries:
        if entry.patient:
            problem = problem.replace(f"patient {entry.patient} ", f"patient {patient_key(entry.patient)[:16]} ")
    return problem


def _already_imported(dataset: str, loaded: LoadedCase) -> bool:
    """True when this exact case is in the database; CaseRejected when a different
    case of the same name is, or when the patient's record disagrees with it."""
    entry = loaded.entry
    existing = Case.objects.filter(dataset=dataset, source_name=entry.name).first()
    if existing is not None:
        if existing.source_sha256 == loaded.source_sha256:
            return True
        raise CaseRejected(
            [f"{entry.name}/: a different case of this name was already imported into dataset {dataset!r}"]
        )
    patient = Patient.objects.filter(key=patient_key(entry.patient)).first()
    if patient is not None:
        stored = {k: getattr(patient, k) for k in entry.patient_fields()}
        if stored != entry.patient_fields():
            raise CaseRejected(
                [f"manifest.csv: patient {entry.patient} was imported before with other age/sex/background"]
            )
        other_splits = set(Lesion.objects.filter(case__patient=patient).values_list("split", flat=True))
        if other_splits - {lesion.split for lesion in entry.lesions}:
            raise CaseRejected([f"manifest.csv: patient {entry.patient} already has lesions in another split"])
    return False


def _centroid_mm(mask: Volume) -> list[float]:
    """Centre of the mask's voxels in world coordinates (mm)."""
    ijk = np.argwhere(mask.data != 0).mean(axis=0)
    return [round(float(x), 3) for x in (mask.affine @ np.append(ijk, 1.0))[:3]]


class _Writer:
    """Writes clean copies of a case's files into storage and remembers them, so a failure can remove them."""

    def __init__(self, scratch: Path, case: str):
        self.scratch, self.case = scratch, case
        self.saved: list[str] = []

    def save(self, data: np.ndarray, affine: np.ndarray, source: str) -> tuple[str, str]:
        """Store ``data`` as the clean copy of ``source`` (the sequence, or masks/<lesion>/<sequence>):
        (storage name, SHA-256)."""
        name = stored_volume_name()
        local = self.scratch / Path(name).name
        try:
            write_volume(local, data, affine)
            sha = sha256_file(local)
            with local.open("rb") as handle:
                self.saved.append(default_storage.save(name, File(handle)))
        except OSError as exc:
            with suppress(OSError):
                default_storage.delete(name)  # what the failed write left (a full disk leaves part of the file)
            problem = STORAGE_PROBLEMS.get(exc.errno, "storage error")
            raise StorageFailed(
                f"{self.case}/{source}: {problem} while storing its clean copy ({exc.strerror or exc}); nothing of "
                f"case {self.case} was kept and the import stopped here (the cases before it are imported whole; "
                "run it again once the storage is fixed: they are skipped)"
            ) from exc
        finally:
            local.unlink(missing_ok=True)
        return self.saved[-1], sha

    def remove_all(self) -> None:
        for name in self.saved:
            default_storage.delete(name)


def _stored_dtype(data: np.ndarray) -> np.ndarray:
    """Scaled or float data as float32; integer data keeps its type (native byte order)."""
    return data.astype(np.float32) if np.issubdtype(data.dtype, np.floating) else data


def store_case(dataset: str, loaded: LoadedCase) -> Case:
    """Write the files of a checked case and create its rows, all or nothing."""
    with tempfile.TemporaryDirectory(prefix="liverread-import-") as scratch:
        writer = _Writer(Path(scratch), loaded.entry.name)
        try:
            volume_rows = []
            for sequence, volume in loaded.volumes.items():
                name, sha = writer.save(_stored_dtype(volume.data), volume.affine, sequence)
                volume_rows.append(
                    SequenceVolume(
                        sequence=sequence,
                        file=name,
                        sha256=sha,
                        shape=list(volume.shape),
                        spacing=[round(s, 6) for s in volume.spacing],
                        affine=volume.affine.round(6).tolist(),
                    )
                )
            mask_rows: dict[str, list[LesionMask]] = {}
            for lesion, by_sequence in loaded.masks.items():
                mask_rows[lesion] = []
                for sequence, mask in by_sequence.items():
                    source = f"masks/{lesion}/{sequence}"
                    name, sha = writer.save((mask.data != 0).astype(np.uint8), mask.affine, source)
                    mask_rows[lesion].append(
                        LesionMask(
                            sequence=sequence,
                            file=name,
                            sha256=sha,
                            voxel_count=int(np.count_nonzero(mask.data)),
                            centroid_mm=_centroid_mm(mask),
                        )
                    )
            return _create_rows(dataset, loaded, volume_rows, mask_rows)
        except BaseException:
            writer.remove_all()
            raise


@transaction.atomic
def _create_rows(dataset, loaded: LoadedCase, volume_rows, mask_rows) -> Case:
    entry = loaded.entry
    patient, _ = Patient.objects.get_or_create(key=patient_key(entry.patient), defaults=entry.patient_fields())
    case = Case.objects.create(
        patient=patient,
        dataset=dataset,
        source_name=entry.name,
        source_sha256=loaded.source_sha256,
        scanner_vendor=entry.scanner_vendor,
        scanner_model=entry.scanner_model,
        field_strength_t=entry.field_strength_t,
    )
    for row in volume_rows:
        row.case = case
    SequenceVolume.objects.bulk_create(volume_rows)
    for lesion_row in entry.lesions:
        lesion = Lesion.objects.create(
            case=case,
            source_name=lesion_row.name,
            label=lesion_row.label,
            diameter_mm=lesion_row.diameter_mm,
            split=lesion_row.split,
        )
        for row in mask_rows[lesion_row.name]:
            row.lesion = lesion
        LesionMask.objects.bulk_create(mask_rows[lesion_row.name])
    return case
