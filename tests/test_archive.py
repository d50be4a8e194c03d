"""Backup and restore of a whole study: ``export_study`` then ``import_study`` loses nothing, and a broken
archive or a database that does not fit it is refused by name with nothing written."""

import json
import re
import zipfile

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from test_reading import as_user, make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from readerstudy.audit.models import AuditEvent
from readerstudy.cases.models import Case, SequenceVolume
from readerstudy.predictions.models import ModelVersion, Prediction
from readerstudy.studies.archive import MEMBER, payload_sha256, read_payload
from readerstudy.studies.models import Assignment, Disclosure, Presentation, Read, Reader, ReaderStudy

pytestmark = pytest.mark.django_db


def read_everything(client, study, reader, amend=()) -> None:
    """``reader`` reads every task of ``study`` (diagnosis HCC), then amends their first read with each of
    ``amend`` in turn (a chain of amendments)."""
    as_user(client, reader)
    first = None
    while (task := next_task(client, study)["task"]) is not None:
        first = first or task
        assert read(client, study, task).status_code == 201
    for diagnosis in amend:
        assert read(client, study, first, diagnosis=diagnosis, amend=True).status_code == 201


BY_READER = "assignment__reader__user__username"
STUDY_FIELDS = (
    "public_id",
    "name",
    "instructions",
    "owner__username",
    "created",
    "model_version__name",
    "design",
    "washout_days",
    "feedback",
    "practice",
    "allow_revisit",
    "allow_amend",
    "field_of_view_mm",
    "is_open",
)
ASSIGNMENT_FIELDS = (
    "reader__user__username",
    "reader__group",
    "reader__years_of_experience",
    "group",
    "orders",
    "aided_session",
    "assigned_at",
)
PRESENTATION_FIELDS = (BY_READER, "lesion_id", "phase", "shown_at")
DISCLOSURE_FIELDS = (BY_READER, "lesion_id", "prediction_id", "purpose", "revealed", "shown_at")
READ_FIELDS = (
    "public_id",
    BY_READER,
    "lesion_id",
    "phase",
    "session",
    "diagnosis",
    "confidence",
    "malignancy",
    "shown_at",
    "submitted_at",
    "prediction_shown_id",
    "disclosure__shown_at",
    "disclosure__purpose",
    "supersedes__public_id",
)


def study_rows(study: ReaderStudy) -> dict:
    """The study and its rows by natural keys (what a restore must give back), read straight from the ORM."""
    rows = {"assignment__study": study}
    return {
        "study": ReaderStudy.objects.filter(pk=study.pk).values(*STUDY_FIELDS).get(),
        "lesions": sorted(study.lesions.values_list("public_id", flat=True)),
        "admins": sorted(study.admins.values_list("username", flat=True)),
        "assignments": list(study.assignments.order_by("reader__user__username").values_list(*ASSIGNMENT_FIELDS)),
        "presentations": sorted(Presentation.objects.filter(**rows).values_list(*PRESENTATION_FIELDS)),
        "disclosures": list(
            Disclosure.objects.filter(**rows).order_by("shown_at", "id").values_list(*DISCLOSURE_FIELDS)
        ),
        "reads": list(Read.objects.filter(**rows).order_by("submitted_at", "public_id").values_list(*READ_FIELDS)),
    }


def delete_study(study: ReaderStudy) -> None:
    """The study and every row of it, as if it had been lost."""
    reads = Read.objects.filter(assignment__study=study)
    while reads.exists():  # the latest amendments first: a superseded read is protected
        reads.filter(amended_by__isnull=True).delete()
    Disclosure.objects.filter(assignment__study=study).delete()
    study.delete()  # its assignments and presentations go with it


def test_a_study_round_trips_through_its_archive_losing_nothing(client, predicted, tmp_path):
    users = get_user_model().objects
    owner = users.create_user("owner", password="x", first_name="Olga", last_name="Owner", email="o@example.org")
    helper = users.create_user("helper", password="x", email="h@example.org")
    readers = [make_reader("r1", "resident"), make_reader("r2", "academic")]
    archived_email = "ada@example.org"
    users.filter(username="r2").update(first_name="Ada", last_name="Reader", email=archived_email)
    study = new_study(
        predicted,
        readers,
        name="Archived",
        design="sequential",
        feedback="model",
        owner=owner,
        allow_revisit=True,
        allow_amend=True,
        instructions="Read carefully.",
    )
    study.admins.add(helper)
    read_everything(client, study, readers[0], amend=["cyst", "FNH"])
    read_everything(client, study, readers[1])
    study.lesions.remove(predicted[-1])  # taken off the study once read: its reads and orders still name it
    before = study_rows(study)
    assert len(before["reads"]) == 4 * len(predicted) + 2 and before["disclosures"] and before["presentations"]
    assert sum(r[-1] is not None for r in before["reads"]) == 2 and sum(r[-4] is not None for r in before["reads"])

    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    call_command("export_study", study.public_id, output=first)
    with pytest.raises(CommandError, match="already exists"):
        call_command("export_study", study.name, output=first)
    with pytest.raises(CommandError, match="no folder"):
        call_command("export_study", study.name, output=tmp_path / "absent" / "study.zip")
    with pytest.raises(CommandError, match="no study with public id or name 'Unknown'"):
        call_command("export_study", "Unknown", output=second)
    text = zipfile.ZipFile(first).read(MEMBER).decode()
    assert "password" not in text and "pbkdf2" not in text
    archived = read_payload(first)
    assert {len(ref["volumes_sha256"]) for ref in archived["lesions"]} == {7}
    assert archived["model_versions"] == [
        {"name": "tiny-secret-model", "files_sha256": study.model_version.files_sha256}
    ]

    delete_study(study)
    users.filter(username="r2").update(username="r2-departed")  # r2 must be created again, r1 is matched
    Reader.objects.filter(user__username="r2-departed").delete()
    call_command("import_study", first)
    restored = ReaderStudy.objects.get(name="Archived")
    assert study_rows(restored) == before
    call_command("export_study", restored.name, output=second)
    assert read_payload(second) == archived
    assert json.loads(zipfile.ZipFile(second).read(MEMBER))["payload_sha256"] == payload_sha256(archived)

    r1, r2 = users.get(username="r1"), users.get(username="r2")
    assert r1.pk == readers[0].user.pk and r1.check_password("x")
    assert not r2.has_usable_password() and [r2.first_name, r2.last_name, r2.email] == ["Ada", "Reader", archived_email]
    event = AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_CREATED).order_by("id").last()
    assert event.object_id == restored.public_id and "restored from the archive first.zip" in event.summary
    exports = AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED, object_id=restored.public_id)
    assert sorted(e.after["file"] for e in exports) == ["first.zip", "second.zip"]


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.fixture
def archive(client, eight_lesions, tmp_path):
    """A sequential study (a registered model with done predictions; one reader's unaided and aided read)
    archived to a file, then deleted."""
    version = ModelVersion.objects.create(
        name="registered",
        config={},
        run_path="models/registered",
        metrics={},
        files_sha256={"fold-0.pt": "a" * 64, "config.json": "b" * 64},
    )
    for lesion in eight_lesions:
        Prediction.objects.create(
            model_version=version,
            lesion=lesion,
            status="done",
            probabilities=[1 / 7] * 7,
            malignant_probability=0.5,
            predicted_class=0,
            predicted_malignant=True,
            checkpoints_sha256={"fold-0.pt": "a" * 64},
        )
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader], name="Refused", design="sequential", model_version=version)
    as_user(client, reader)
    for _ in range(2):
        read(client, study, next_task(client, study)["task"])
    path = tmp_path / "study.zip"
    call_command("export_study", study.name, output=path)
    delete_study(study)
    return path


def rewrite(path, change) -> None:
    """Rewrite the archive's document after ``change(document)``."""
    document = json.loads(zipfile.ZipFile(path).read(MEMBER))
    change(document)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MEMBER, json.dumps(document))


def rehashed(change):
    """A change to the payload with its SHA-256 recomputed: a well-formed archive with other content."""

    def apply(document):
        change(document["payload"])
        document["payload_sha256"] = payload_sha256(document["payload"])

    return apply


def impossible_read(payload) -> None:
    """A new reader (a user to create) whose read names a diagnosis that does not exist."""
    payload["users"].append({"username": "newcomer", "first_name": "", "last_name": "", "email": ""})
    payload["readers"].append({**payload["readers"][0], "username": "newcomer"})
    payload["assignments"].append({**payload["assignments"][0], "reader": "newcomer"})
    payload["reads"].append(
        {**payload["reads"][0], "reader": "newcomer", "public_id": "f" * 16, "diagnosis": 99, "disclosure": None}
    )


BREAKAGES = {
    "missing lesion": (
        lambda path: Case.objects.filter(source_name="C3").update(source_name="C3-renamed"),
        "lesion trial/C3/L1 is not in this database",
    ),
    "image hash": (
        lambda path: SequenceVolume.objects.filter(case__source_name="C5", sequence="ADC").update(sha256="0" * 64),
        "lesion trial/C5/L1: the stored volumes of ADC differ",
    ),
    "name taken": (lambda path: ReaderStudy.objects.create(name="Refused"), "already has a study named 'Refused'"),
    "public id taken": (
        lambda path: ReaderStudy.objects.create(name="Other", public_id=read_payload(path)["study"]["public_id"]),
        "already has a study named 'Other'",
    ),
    "unknown model": (
        lambda path: ModelVersion.objects.update(name="renamed"),
        "model version 'registered' is not registered here",
    ),
    "other model": (
        lambda path: ModelVersion.objects.update(files_sha256={"fold-0.pt": "c" * 64}),
        "differs from the archived one in config.json, fold-0.pt",
    ),
    "other prediction": (
        lambda path: Prediction.objects.update(predicted_class=3),
        "differs from the one shown in predicted_class",
    ),
    "truncated": (
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "corrupt or truncated archive",
    ),
    "corrupt": (
        lambda path: path.write_bytes((b := path.read_bytes())[:200] + bytes(x ^ 0xFF for x in b[200:400]) + b[400:]),
        "corrupt or truncated archive",
    ),
    "edited": (
        lambda path: rewrite(path, lambda doc: doc["payload"]["reads"][0].update(diagnosis=1)),
        "the payload's SHA-256 differs from the recorded one",
    ),
    "format version": (
        lambda path: rewrite(path, lambda doc: doc.update(format_version=2)),
        "archive format version 2 is not supported",
    ),
    "breaks a rule midway": (
        lambda path: rewrite(path, rehashed(impossible_read)),
        "breaks a rule of this database .*read_known_diagnosis",
    ),
}


def database_rows() -> dict:
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in apps.get_models()}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_an_archive_that_does_not_fit_is_refused_by_name_and_nothing_is_written(archive, breakage):
    break_it, problem = BREAKAGES[breakage]
    break_it(archive)
    before = database_rows()
    with pytest.raises(CommandError, match=f"^{re.escape(str(archive))}: .*{problem}"):
        call_command("import_study", archive)
    assert database_rows() == before


def test_the_untouched_archive_restores(archive):
    call_command("import_study", archive)
    study = ReaderStudy.objects.get(name="Refused")
    assert study.model_version.name == "registered" and Read.objects.filter(assignment__study=study).count() == 2
    assert Assignment.objects.get(study=study).reader.user.username == "r1"
