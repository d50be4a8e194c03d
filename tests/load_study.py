"""The study simulated readers load, made and checked inside a Django process (bench/load_bench.py in its own
process, tests/test_faults.py through ``manage.py shell`` against its private database).

``prepare``: migrate, import a dataset folder and open the study: ``readers`` accounts sharing one password,
one open unaided study over every lesion with all of them assigned. ``stored_reads`` and ``half_written`` are
what the clients' log is reconciled against.
"""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command

from readerstudy.audit.models import AuditEvent
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Lesion
from readerstudy.studies.identifiers import study_lesion_ids
from readerstudy.studies.models import Assignment, Presentation, Read, Reader, ReaderStudy

FIELD_OF_VIEW_MM = 120.0
"""Lesion-centred crop of the served volumes, as in the demo studies."""


def prepare(dataset_dir: Path | str, readers: int, password: str) -> dict:
    """Migrate, import ``dataset_dir`` (every case must go in) and open the study with its readers
    (reader-001 …); {"study": public id, "accounts": usernames}."""
    call_command("migrate", verbosity=0)
    report = import_dataset(Path(dataset_dir), dataset="load")
    if report.rejected:
        raise RuntimeError(report.summary())
    hashed = make_password(password)  # hashed once: every account shares it
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"reader-{n:03d}", password=hashed) for n in range(1, readers + 1)
    )
    study = ReaderStudy.objects.create(name="Load", field_of_view_mm=FIELD_OF_VIEW_MM)
    study.lesions.set(Lesion.objects.all())
    for user in users:
        Assignment.assign(study, Reader.objects.create(user=user, group="general", years_of_experience=8))
    return {"study": study.public_id, "accounts": [user.username for user in users]}


def stored_reads(study: str) -> list[dict]:
    """The study's first reads: read (public id), reader (username), lesion (its id in the study), phase."""
    ids = study_lesion_ids(ReaderStudy.objects.get(public_id=study))
    rows = Read.objects.filter(assignment__study__public_id=study, supersedes__isnull=True).values_list(
        "public_id", "assignment__reader__user__username", "lesion_id", "phase"
    )
    return [
        {"read": read, "reader": reader, "lesion": ids[lesion], "phase": phase} for read, reader, lesion, phase in rows
    ]


def half_written(study: str) -> list[str]:
    """What a read that was not written whole would leave: a read without the presentation it was timed from
    (or timed from another moment), or without its audit event."""
    problems = []
    reads = Read.objects.filter(assignment__study__public_id=study).select_related("lesion")
    events = AuditEvent.objects.filter(action=AuditEvent.Action.READ_SUBMITTED)
    audited = set(events.values_list("object_id", flat=True))
    shown = {(p.assignment_id, p.lesion_id, p.phase): p.shown_at for p in Presentation.objects.all()}
    for read in reads:
        if shown.get((read.assignment_id, read.lesion_id, read.phase)) != read.shown_at:
            problems.append(f"read {read.public_id}: no presentation of its lesion at its shown_at")
        if read.public_id not in audited:
            problems.append(f"read {read.public_id}: no audit event")
    return problems
