"""The audit trail: every state change appends an event with its actor; events cannot be changed or
deleted through the app; study admins filter and export them."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from test_reading import make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from inference.manifest import ManifestError
from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import current_actor
from readerstudy.cases.importer import import_dataset
from readerstudy.studies.identifiers import lesion_in_study
from readerstudy.studies.models import ReaderStudy

pytestmark = pytest.mark.django_db
Action = AuditEvent.Action


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_imports_studies_assignments_and_reads_are_recorded_with_who_did_them(client, eight_lesions):
    assert len(events(Action.CASE_IMPORTED)) == 8 and events(Action.CASE_IMPORTED)[0].actor is None
    owner = get_user_model().objects.create_user("owner", password="x")
    token = current_actor.set(owner)
    try:
        study = new_study(eight_lesions, name="Audited")
        study.feedback, study.is_open = "model", False
        study.save()
        study.save()  # nothing changed: no event
    finally:
        current_actor.reset(token)
    (created,) = events(Action.STUDY_CREATED)
    lesions_set, changed = events(Action.STUDY_CHANGED)
    assert lesions_set.before == {"lesions": []} and len(lesions_set.after["lesions"]) == 8
    assert created.actor == owner and created.object_id == study.public_id and created.after["design"] == "unaided"
    assert changed.before == {"feedback": "none", "is_open": True} and changed.after == {
        "feedback": "model",
        "is_open": False,
    }
    reader = make_reader("r1")
    new_study(eight_lesions, [reader], name="Second")
    second = ReaderStudy.objects.get(name="Second")
    client.force_login(reader.user)
    task = next_task(client, second)["task"]
    read(client, second, task)
    read(client, second, task)  # a double submit is not a second event
    (submitted,) = events(Action.READ_SUBMITTED)
    assert submitted.actor == reader.user  # the trail names the lesion by its own id, not the study's
    assert submitted.after["lesion"] == lesion_in_study(second, task["lesion"]).public_id
    assert events(Action.READER_ASSIGNED)[0].after == {"reader": "r1", "group": "resident"}


def test_activations_and_exports_are_recorded(client, predicted):
    (activation,) = events(Action.MODEL_ACTIVATED)
    assert activation.after["name"] == "tiny-secret-model" and activation.actor is None
    reader = make_reader("r1")
    study = new_study(predicted, [reader])
    owner = get_user_model().objects.create_superuser("boss", password="x")
    client.force_login(owner)
    assert client.get(f"/studies/{study.public_id}/export/reads.csv").status_code == 200
    (export,) = events(Action.EXPORTED)
    assert export.actor == owner and export.object_id == study.public_id and "reads.csv" in export.summary


def test_events_cannot_be_changed_or_deleted_and_export_as_csv(client, eight_lesions):
    event = AuditEvent.objects.first()
    event.summary = "tampered"
    with pytest.raises(ValidationError, match="append-only"):
        event.save()
    with pytest.raises(ValidationError, match="append-only"):
        event.delete()
    with pytest.raises(ValidationError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(summary="tampered")
    with pytest.raises(ValidationError, match="append-only"):
        AuditEvent.objects.all().delete()
    admin = get_user_model().objects.create_superuser("boss", password="x")
    client.force_login(admin)
    assert client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    page = client.get(f"/admin/audit/auditevent/{event.pk}/change/").content.decode()
    assert "tampered" not in page and 'name="summary"' not in page  # shown, not editable
    listing = client.get("/admin/audit/auditevent/?action__exact=case+imported")
    assert listing.status_code == 200 and "8 audit events" in listing.content.decode()
    selected = list(AuditEvent.objects.values_list("pk", flat=True))
    response = client.post("/admin/audit/auditevent/", {"action": "export_csv", "_selected_action": selected})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["at", "actor", "action"] and len(rows) == 1 + len(selected)
    assert AuditEvent.objects.filter(summary="tampered").count() == 0


def test_lesions_and_admins_of_a_study_are_recorded_from_either_side(eight_lesions):
    study = new_study(eight_lesions[:2], name="Members")
    first, second, third = (lesion.public_id for lesion in eight_lesions[:3])
    boss = get_user_model().objects.create_user("boss", password="x")
    baseline = AuditEvent.objects.count()
    study.lesions.remove(eight_lesions[0])
    eight_lesions[2].studies.add(study)  # the reverse side
    study.admins.add(boss)
    boss.administered_studies.clear()  # the reverse side, cleared
    study.lesions.add(eight_lesions[1])  # already there: no event
    changes = [(e.before, e.after) for e in AuditEvent.objects.order_by("id")][baseline:]
    assert changes == [
        ({"lesions": sorted([first, second])}, {"lesions": [second]}),
        ({"lesions": [second]}, {"lesions": sorted([second, third])}),
        ({"admins": []}, {"admins": ["boss"]}),
        ({"admins": ["boss"]}, {"admins": []}),
    ]


def test_refused_cases_and_manifests_are_recorded_without_the_original_patient_id(dataset, media):
    dataset.add_case("C1", patient="SECRET-ID-7", split="development")
    dataset.add_case("C2", patient="SECRET-ID-7", split="test").write_manifest()
    import_dataset(dataset.root, dataset="leaky")
    rejected = events(Action.CASE_REJECTED)
    assert [e.object_id for e in rejected] == ["leaky/C1", "leaky/C2"]
    assert "development and test" in rejected[0].summary and rejected[0].after["source"] == "C1"
    assert "SECRET-ID-7" not in str([(e.summary, e.after) for e in AuditEvent.objects.all()])
    dataset.path("C1", "T2WI").parent.parent.joinpath("manifest.csv").write_text("not,a,manifest\n")
    with pytest.raises(ManifestError):
        import_dataset(dataset.root, dataset="leaky")
    (refused,) = events(Action.CASE_REJECTED)[2:]
    assert refused.object_id == "leaky/manifest.csv" and "manifest.csv" in refused.after["problems"][0]


def test_an_import_from_the_command_line_has_no_actor(dataset, media):
    dataset.add_case("C1").write_manifest()
    import_dataset(dataset.root, dataset="cli")
    (event,) = events(Action.CASE_IMPORTED)
    assert event.actor is None and event.after == {"dataset": "cli", "source": "C1"}
