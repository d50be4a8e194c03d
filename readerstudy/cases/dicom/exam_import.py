"""Import DICOM exams: scan, propose a mapping per exam, and import the confirmed ones through the NIfTI importer.

Each confirmed exam is converted into a private temporary folder in the NIfTI import layout (its seven
mapped stacks, its masks, one manifest row per labels.csv row with the de-identified header facts), and
``import_dataset`` stores it: the same checks, all-or-nothing storage, audit event and prediction queueing
as any NIfTI case. The manifest's ``patient`` is the original PatientID so that the importer's keyed hash
gives the same pseudonym as a NIfTI import of the same patient; the folder is deleted afterwards and the id
is replaced by its pseudonym in every message. An exam with a problem is reported and nothing of it stored.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from inference.domain import SEQUENCES
from inference.manifest import COLUMNS, MANIFEST_NAME, ManifestError
from inference.nifti import write_volume
from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import record
from readerstudy.cases.anonymise import patient_key
from readerstudy.cases.dicom.deidentify import ExamFacts, exam_facts, patient_id
from readerstudy.cases.dicom.frames import DicomFileError
from readerstudy.cases.dicom.labels import HEADER_FIELDS, LabelRow, read_labels
from readerstudy.cases.dicom.mapping import NOT_CHOSEN, Proposal, check_mapping, propose
from readerstudy.cases.dicom.masks import write_masks
from readerstudy.cases.dicom.series import Exam, scan_folder
from readerstudy.cases.importer import ImportReport, import_dataset
from readerstudy.cases.models import Case
from readerstudy.cases.signals import cases_rejected

MAPPING_FORMAT = "liverread-dicom-mapping/1"
LABELS_NAME = "labels.csv"
WHOLE_FOLDER = "(the whole folder)"


class MappingFileError(ValueError):
    """A mapping file that cannot be used."""


@dataclass
class ExamPlan:
    """One exam found under the folder: its storable facts, its labels.csv rows and the proposed mapping."""

    exam: Exam
    facts: ExamFacts
    study: str | None
    rows: list[LabelRow]
    proposal: Proposal
    problems: list[str] = field(default_factory=list)

    @property
    def lesions(self) -> list[str]:
        return [row.values["lesion"].strip() for row in self.rows]

    def series(self) -> dict[str, str]:
        """Each stack's id and a line describing it (for choosing by hand)."""
        start = min((s.time_s for s in self.exam.stacks if s.time_s is not None), default=None)
        described = {}
        for stack in self.exam.stacks:
            parts = [stack.series.description or "(no description)", stack.plane if stack.frames else "no images"]
            if stack.shape:
                parts.append("×".join(str(n) for n in stack.shape))
            if stack.b_value is not None:
                parts.append(f"b = {stack.b_value:g}")
            if stack.time_s is not None and start is not None:
                parts.append(f"+{stack.time_s - start:.0f} s")
            parts += stack.problems
            described[stack.id] = " | ".join(parts)
        return described


@dataclass
class DicomImport:
    """A scanned folder with its labels: one plan per exam (by case name) and the folder-wide problems."""

    root: Path
    plans: dict[str, ExamPlan]
    problems: list[str]

    def document(self) -> dict:
        """The proposal as the mapping file's JSON: edit ``mapping`` of an exam to correct it."""
        return {
            "format": MAPPING_FORMAT,
            "problems": self.problems,
            "exams": {
                name: {
                    "study": plan.study,
                    "lesions": plan.lesions,
                    "mapping": plan.proposal.mapping,
                    "reasons": plan.proposal.reasons,
                    "problems": plan.problems + plan.proposal.problems,
                    "series": plan.series(),
                    "notes": plan.proposal.notes,
                }
                for name, plan in sorted(self.plans.items())
            },
        }


def plan_import(root: Path, labels: Path) -> DicomImport:
    """Scan ``root``, match each exam to its labels.csv rows and propose its mapping.

    LabelsError when labels.csv is unusable; problems of one exam are kept on its plan.
    """
    root = Path(root)
    rows = read_labels(labels)
    scan = scan_folder(root)
    plans: dict[str, ExamPlan] = {}
    matched: set[str] = set()
    for uid, exam in scan.exams.items():
        if exam.header is None:
            continue  # SEG objects only
        keys = [k for k in (uid, str(exam.header.get("AccessionNumber") or "").strip()) if k and k in rows]
        facts = exam_facts(uid, exam.header)
        plan = ExamPlan(
            exam, facts, keys[0] if keys else None, rows.get(keys[0], []) if keys else [], propose(exam.stacks)
        )
        if len(keys) > 1:
            plan.problems.append(f"{LABELS_NAME}: rows name this exam by both StudyInstanceUID and AccessionNumber")
        if not keys:
            plan.problems.append(f"no {LABELS_NAME} row names this exam (by StudyInstanceUID or AccessionNumber)")
        matched.update(keys)
        plans[facts.case_name] = plan
    problems = list(scan.problems)
    for key in sorted(set(rows) - matched):
        lines = ", ".join(str(row.line) for row in rows[key])
        problems.append(f"{LABELS_NAME} line(s) {lines}: no exam with StudyInstanceUID or AccessionNumber {key!r}")
    if not plans and not problems:
        problems.append(f"{root.name}: no DICOM images found")
    return DicomImport(root=root, plans=plans, problems=problems)


def write_proposal(dicom_import: DicomImport, path: Path) -> None:
    Path(path).write_text(json.dumps(dicom_import.document(), indent=2, ensure_ascii=False) + "\n")


def read_mapping(path: Path) -> dict[str, dict[str, str | None]]:
    """The (edited) mapping file: case name → sequence → stack id; MappingFileError names the problem."""
    name = Path(path).name
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise MappingFileError(f"{name}: not readable JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != MAPPING_FORMAT:
        raise MappingFileError(
            f"{name}: not a mapping file (format {MAPPING_FORMAT!r} expected); write one with --propose"
        )
    mappings = {}
    for case, exam in (document.get("exams") or {}).items():
        mapping = exam.get("mapping") if isinstance(exam, dict) else None
        if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
            raise MappingFileError(f"{name}: exam {case}: 'mapping' must map each sequence to a series id")
        mappings[case] = {str(k): (str(v).strip() if v else None) for k, v in mapping.items()}
    return mappings


def _manifest_rows(plan: ExamPlan) -> tuple[list[dict], list[str]]:
    """Manifest rows for the exam's labels.csv rows, or the problems that prevent them."""
    facts, problems, rows = plan.facts, [], []
    header_values = {
        "age": facts.age,
        "sex": facts.sex,
        "scanner_vendor": facts.scanner_vendor,
        "scanner_model": facts.scanner_model,
        "field_strength_t": facts.field_strength_t,
    }
    original_id = patient_id(plan.exam.header)
    if not original_id:
        problems.append("no PatientID in the headers: the pseudonymous patient key cannot be made")
    for label_row in plan.rows:
        row = {column: (label_row.given(column) or "") for column in COLUMNS}
        for column in HEADER_FIELDS:
            value = label_row.given(column) or header_values[column]
            if value is None:
                problems.append(
                    f"{LABELS_NAME} line {label_row.line}: {column} is not in the headers; give it in a {column} column"
                )
            row[column] = "" if value is None else str(value)
        row.update(patient=original_id, case=facts.case_name)
        rows.append(row)
    return rows, sorted(set(problems))


def _convert(plan: ExamPlan, mapping: dict[str, str], case_dir: Path, root: Path, shared: bool) -> list[str]:
    """Write the exam's seven volumes and its masks into ``case_dir``; returns the problems."""
    case_dir.mkdir()
    for sequence in SEQUENCES:
        stack = plan.exam.stack(mapping[sequence])
        try:
            volume = stack.load()
        except DicomFileError as exc:
            return [f"{sequence}: {stack.label}: {exc}".replace(str(root) + "/", "")]
        write_volume(case_dir / f"{sequence}.nii", volume.data, volume.affine)
    return write_masks(plan.exam, mapping, case_dir, root, shared)


def _mapping_problems(proposal: Proposal, stacks, mapping: dict[str, str | None]) -> list[str]:
    """The confirmed mapping's problems; for the proposal unchanged, the proposal's own (they say why a
    sequence has no series)."""
    problems = check_mapping(stacks, mapping)
    if mapping != proposal.mapping:
        return problems
    return proposal.problems + [p for p in problems if p not in proposal.problems and not p.endswith(NOT_CHOSEN)]


def _shared_folders(plans: dict[str, ExamPlan]) -> set[str]:
    """Case names whose exam folder also holds (or lies inside or around) another exam's folder."""
    folders = {name: plan.exam.folder for name, plan in plans.items()}
    return {
        name
        for name, folder in folders.items()
        if any(o != name and (folder == f or folder in f.parents or f in folder.parents) for o, f in folders.items())
    }


def _translate(message: str, lines: dict[int, int], pseudonyms: dict[str, str]) -> str:
    """An importer message about the temporary manifest, told in labels.csv lines and patient pseudonyms."""
    message = re.sub(
        rf"{MANIFEST_NAME} line (\d+)", lambda m: f"{LABELS_NAME} line {lines.get(int(m[1]), '?')}", message
    )
    for original, key in pseudonyms.items():
        message = message.replace(original, f"pseudonym {key}")
    return message.replace(MANIFEST_NAME, LABELS_NAME)


def import_exams(dicom_import: DicomImport, mappings: dict[str, dict[str, str | None]], dataset: str) -> ImportReport:
    """Import each exam whose confirmed mapping (by case name) is complete; see the module docstring."""
    report = ImportReport()
    if dicom_import.problems:  # an unreadable file or a stray labels.csv row may belong to any exam
        report.rejected[WHOLE_FOLDER] = list(dicom_import.problems)
        for name in dicom_import.plans:
            report.rejected[name] = [f"not imported: the folder has problems (see {WHOLE_FOLDER})"]
        _announce_rejections(dataset, report.rejected)
        return report
    shared = _shared_folders(dicom_import.plans)
    with tempfile.TemporaryDirectory(prefix="liverread-dicom-") as scratch:
        layout = Path(scratch)
        manifest: list[dict] = []
        lines: dict[int, int] = {}
        pseudonyms: dict[str, str] = {}
        for name, plan in sorted(dicom_import.plans.items()):
            mapping = mappings.get(name)
            if mapping is None:
                report.rejected[name] = ["no confirmed mapping for this exam: not imported"]
                continue
            rows, problems = _manifest_rows(plan)
            problems = plan.problems + problems + _mapping_problems(plan.proposal, plan.exam.stacks, mapping)
            if not problems:
                problems = _convert(plan, mapping, layout / name, dicom_import.root, name in shared)
            if problems:
                shutil.rmtree(layout / name, ignore_errors=True)
                report.rejected[name] = problems
                continue
            for row, label_row in zip(rows, plan.rows, strict=True):
                lines[len(manifest) + 2] = label_row.line  # line 1 is the header
                manifest.append(row)
                pseudonyms[row["patient"]] = patient_key(row["patient"])
        _announce_rejections(dataset, report.rejected)  # the importer announces its own below
        if manifest:
            with (layout / MANIFEST_NAME).open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(manifest)
            try:
                stored = import_dataset(layout, dataset=dataset)
            except ManifestError as exc:  # a labels.csv value the manifest refuses as a whole
                stored = ImportReport(rejected={row["case"]: [str(exc)] for row in manifest})
            report.imported, report.skipped, report.lesions = stored.imported, stored.skipped, stored.lesions
            for name, problems in stored.rejected.items():
                report.rejected[name] = [_translate(p, lines, pseudonyms) for p in problems]
    for name in report.imported:
        _record_mapping(dataset, name, dicom_import.plans[name].proposal, mappings[name])
    return report


def _announce_rejections(dataset: str, rejected: dict[str, list[str]]) -> None:
    """Exams refused before the importer saw them, for the audit trail: their problems are counted, not
    quoted, because they may quote file names or header text of the export (which can identify a patient)."""
    if rejected:
        cases_rejected.send(
            sender=Case,
            dataset=dataset,
            rejected={
                name: [f"DICOM exam refused with {len(problems)} problem(s), reported to the importing admin"]
                for name, problems in rejected.items()
            },
        )


def _record_mapping(dataset: str, name: str, proposal: Proposal, mapping: dict[str, str]) -> None:
    """An audit event with the confirmed mapping (series ids only) and the sequences corrected by hand."""
    case = Case.objects.get(dataset=dataset, source_name=name)
    corrected = [s for s in SEQUENCES if proposal.mapping.get(s) != mapping[s]]
    record(
        AuditEvent.Action.CASE_IMPORTED,
        case,
        f"case {dataset}/{name} imported from DICOM; mapping "
        + (f"corrected for {', '.join(corrected)}" if corrected else "as proposed"),
        after={"mapping": {s: mapping[s] for s in SEQUENCES}, "corrected": corrected},
    )
