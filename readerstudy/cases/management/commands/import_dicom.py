"""``python manage.py import_dicom DIR --manifest labels.csv [--propose FILE | --mapping FILE]``.

Without ``--propose`` or ``--mapping``, each exam's proposed mapping is shown and confirmed or corrected at
a prompt when standard input is a terminal; otherwise the command refuses and says how to confirm.
"""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.domain import SEQUENCES
from readerstudy.cases.dicom.exam_import import (
    ExamPlan,
    MappingFileError,
    import_exams,
    plan_import,
    read_mapping,
    write_proposal,
)
from readerstudy.cases.dicom.labels import LabelsError
from readerstudy.cases.importer import InvalidDatasetName, check_dataset_name


class Command(BaseCommand):
    help = "Import DICOM exams (one or many) with a labels.csv; see README 'DICOM import'."
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument("--manifest", type=Path, required=True, help="labels.csv: one row per lesion")
        parser.add_argument("--dataset", help="name of the dataset (default: the folder name)")
        confirm = parser.add_mutually_exclusive_group()
        confirm.add_argument("--propose", type=Path, metavar="FILE", help="write the proposed mapping and stop")
        confirm.add_argument("--mapping", type=Path, metavar="FILE", help="import with this (edited) mapping")

    def handle(self, directory: Path, manifest: Path, dataset, propose: Path | None, mapping: Path | None, **opts):
        self.stdin = opts.get("stdin") or sys.stdin
        if not directory.is_dir():
            raise CommandError(f"{directory}: not a directory")
        try:
            dataset = check_dataset_name(dataset or directory.resolve().name)
        except InvalidDatasetName as exc:
            raise CommandError(str(exc)) from None
        try:
            dicom_import = plan_import(directory, manifest)
        except LabelsError as exc:
            raise CommandError(str(exc)) from None
        for problem in dicom_import.problems:
            self.stderr.write(f"PROBLEM {problem}")
        if propose:
            write_proposal(dicom_import, propose)
            self._show(dicom_import.plans)
            self.stdout.write(f"Proposed mapping written to {propose}; check or edit it, then run with --mapping.")
            return
        if mapping:
            try:
                mappings = read_mapping(mapping)
            except MappingFileError as exc:
                raise CommandError(str(exc)) from None
        elif self.stdin.isatty():
            mappings = self._confirm(dicom_import.plans)
        else:
            raise CommandError(
                "no mapping confirmed: run with --propose mapping.json, check or edit the mapping it holds, then "
                "run again with --mapping mapping.json (or run in a terminal to confirm at a prompt)"
            )
        report = import_exams(dicom_import, mappings, dataset)
        self.stdout.write(report.summary())
        if report.rejected:
            raise CommandError(f"{len(report.rejected)} exam(s) rejected; nothing of them was stored")

    def _show(self, plans: dict[str, ExamPlan]) -> None:
        for name, plan in sorted(plans.items()):
            self._show_exam(name, plan)

    def _show_exam(self, name: str, plan: ExamPlan) -> None:
        self.stdout.write(
            f"\nExam {name} ({plan.study or 'no labels.csv row'}; lesions: {', '.join(plan.lesions) or 'none'})"
        )
        for stack_id, described in plan.series().items():
            self.stdout.write(f"  series {stack_id}: {described}")
        for sequence in SEQUENCES:
            reason = plan.proposal.reasons.get(sequence, "no proposal")
            self.stdout.write(f"  {sequence:4} ← {plan.proposal.mapping[sequence] or '-'}   {reason}")
        for problem in plan.problems + plan.proposal.problems:
            self.stdout.write(f"  PROBLEM {problem}")

    def _ask(self, prompt: str) -> str:
        self.stdout.write(prompt, ending="")
        self.stdout.flush()
        return self.stdin.readline().strip()

    def _confirm(self, plans: dict[str, ExamPlan]) -> dict[str, dict[str, str | None]]:
        """Each exam's mapping as confirmed at the prompt (Enter keeps the proposed series); exams not
        confirmed are left out."""
        confirmed = {}
        for name, plan in sorted(plans.items()):
            self._show_exam(name, plan)
            if plan.problems:
                self.stdout.write("  skipped: fix the problems above first")
                continue
            mapping = dict(plan.proposal.mapping)
            answer = "e" if plan.proposal.problems else self._ask("Import with this mapping? [y/n/e to edit] ")
            if answer.lower() == "e":
                for sequence in SEQUENCES:
                    mapping[sequence] = self._ask(f"  {sequence} [{mapping[sequence] or ''}]: ") or mapping[sequence]
                answer = self._ask("Import with the mapping above? [y/n] ")
            if answer.lower() == "y":
                confirmed[name] = mapping
        return confirmed
