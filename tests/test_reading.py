"""The reading workflow through its API: orders, resuming, locked reads, designs, revisiting, serving."""

import gzip
from datetime import timedelta

import nibabel as nib
import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import F
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from inference.domain import CLASSES, SEQUENCES
from readerstudy.cases.models import Lesion, LesionMask
from readerstudy.studies.identifiers import lesion_in_study, study_lesion_id
from readerstudy.studies.models import Assignment, Disclosure, Presentation, Read, Reader, ReaderStudy

pytestmark = pytest.mark.django_db


def make_reader(username: str, group: str = "resident") -> Reader:
    user = get_user_model().objects.create_user(username, password="x")
    return Reader.objects.create(user=user, group=group, years_of_experience=3)


def new_study(lesions, readers=(), **fields) -> ReaderStudy:
    study = ReaderStudy.objects.create(name=fields.pop("name", "Study"), **fields)
    study.lesions.set(lesions)
    for reader in readers:
        Assignment.assign(study, reader)
    return study


def api(client, study, path=""):
    return f"/api/studies/{study.public_id}/{path}"


def read(client, study, task, diagnosis="HCC", confidence=4, malignancy=80, **extra):
    body = {
        "lesion": task["lesion"],
        "phase": task["phase"],
        "diagnosis": diagnosis,
        "confidence": confidence,
        "malignancy": malignancy,
        **extra,
    }
    return client.post(api(client, study, "reads/"), body, content_type="application/json")


def next_task(client, study) -> dict:
    response = client.get(api(client, study, "next/"))
    assert response.status_code == 200, response.content
    return response.json()


def as_user(client, reader):
    client.force_login(reader.user)
    return client


# --- orders and resuming ----------------------------------------------------------------------------------


def test_each_reader_gets_their_own_random_order_fixed_at_assignment(eight_lesions):
    readers = [make_reader(f"r{n}") for n in range(6)]
    study = new_study(eight_lesions, readers)
    orders = [tuple(a.orders[0]) for a in study.assignments.all()]
    assert all(sorted(o) == sorted(lesion.pk for lesion in eight_lesions) for o in orders)
    assert len(set(orders)) > 1  # 6 readers sharing one of 8! orders by chance: p < 1e-20
    again = Assignment.assign(study, readers[0])
    assert again.orders == study.assignments.get(reader=readers[0]).orders and study.assignments.count() == 6


def test_next_follows_my_order_and_a_reload_resumes_at_the_same_lesion(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    order = [study_lesion_id(study, Lesion.objects.get(pk=pk)) for pk in study.assignments.get().orders[0]]
    as_user(client, reader)
    seen = []
    for n in range(3):
        body = next_task(client, study)
        assert next_task(client, study)["task"] == body["task"]  # reloading the page: same lesion
        assert body["progress"]["done"] == n and body["progress"]["total"] == 8
        seen.append(body["task"]["lesion"])
        assert read(client, study, body["task"]).status_code == 201
    assert seen == order[:3]
    assert next_task(client, study)["task"]["lesion"] == order[3]
    assert Presentation.objects.count() == 4  # one per lesion shown, however often it was reloaded


def test_the_viewer_descriptor_names_seven_sequences_by_opaque_urls(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    body = next_task(as_user(client, reader), study)
    sequences = body["viewer"]["sequences"]
    assert [s["name"] for s in sequences] == list(SEQUENCES)
    lesion = lesion_in_study(study, body["task"]["lesion"])
    for s in sequences:
        assert s["image"].endswith(f"/{s['name']}.nii.gz") and s["mask"].endswith(f"/{s['name']}.mask.nii.gz")
        assert lesion.case.source_name not in s["image"] and str(lesion.pk) not in s["image"].split("/")
        assert len(s["focus"]) == 3 and s["window"][0] < s["window"][1]


# --- locked reads ------------------------------------------------------------------------------------------


def test_a_double_submit_returns_the_locked_read_and_never_a_second_row(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    task = next_task(as_user(client, reader), study)["task"]
    first = read(client, study, task, diagnosis="HCC", malignancy=80)
    second = read(client, study, task, diagnosis="cyst", malignancy=5)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["read"] == first.json()["read"] and second.json()["read"]["diagnosis"] == "HCC"
    assert Read.objects.count() == 1


def test_a_read_is_immutable_and_unique_in_the_database(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    task = next_task(as_user(client, reader), study)["task"]
    read(client, study, task)
    locked = Read.objects.get()
    locked.diagnosis = 0
    with pytest.raises(ValidationError, match="locked"):
        locked.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Read.objects.create(
            assignment=locked.assignment,
            lesion=locked.lesion,
            phase="unaided",
            diagnosis=1,
            confidence=2,
            malignancy=3,
            shown_at=locked.shown_at,
        )
    assert Read.objects.get().diagnosis == CLASSES.index("HCC")


def test_bad_input_names_the_field_and_saves_nothing(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    task = next_task(as_user(client, reader), study)["task"]
    response = read(client, study, task, diagnosis="banana", confidence=9)
    assert response.status_code == 400 and set(response.json()) == {"diagnosis", "confidence"}
    assert read(client, study, task, malignancy=101).json() == {
        "malignancy": ["Ensure this value is less than or equal to 100."]
    }
    assert Read.objects.count() == 0


def test_only_the_current_lesion_can_be_read(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    as_user(client, reader)
    later = study_lesion_id(study, Lesion.objects.get(pk=study.assignments.get().orders[0][3]))
    for lesion in (later, "0123456789abcdef"):  # a lesion not open yet answers as one that does not exist
        assert read(client, study, {"lesion": lesion, "phase": "unaided"}).status_code == 404
        assert client.get(f"/studies/{study.public_id}/lesions/{lesion}/T2WI.nii.gz").status_code == 404
    current = next_task(client, study)["task"]
    response = read(client, study, {**current, "phase": "aided"})
    assert response.status_code == 409 and "not the lesion" in response.json()["detail"]


# --- designs -----------------------------------------------------------------------------------------------


def test_sequential_reading_reveals_the_model_before_a_second_aided_read(client, predicted):
    reader = make_reader("r1")
    study = new_study(predicted, [reader], design="sequential")
    first = next_task(as_user(client, reader), study)
    assert first["task"]["phase"] == "unaided" and first["assist"] is None
    submitted = read(client, study, first["task"], diagnosis="cyst", malignancy=10).json()
    assert submitted["feedback"] is None  # the reveal comes with the aided task
    aided = next_task(client, study)
    assert aided["task"] == {**first["task"], "phase": "aided"}
    model = aided["assist"]["model"]
    assert model["status"] == "done" and len(model["probabilities"]) == 7 and len(model["saliency"]) == 7
    read(client, study, aided["task"], diagnosis="HCC", malignancy=90)
    aided_read = Read.objects.get(phase="aided")
    disclosure = Disclosure.objects.get(purpose="assist")
    assert aided_read.disclosure == disclosure and aided_read.prediction_shown == disclosure.prediction
    assert disclosure.prediction.checkpoints_sha256 == study.model_version.checkpoints_sha256
    assert next_task(client, study)["task"]["lesion"] != first["task"]["lesion"]


@pytest.mark.parametrize("pending", ["queued", "running"])
def test_an_aided_read_waits_for_its_prediction_and_opens_once_it_is_done(client, predicted, pending):
    reader = make_reader("r1")
    study = new_study(predicted, [reader], design="sequential")
    first = next_task(as_user(client, reader), study)["task"]
    prediction = study.prediction_for(lesion_in_study(study, first["lesion"]))
    type(prediction).objects.filter(pk=prediction.pk).update(status=pending)
    read(client, study, first)
    for _ in range(2):  # the page asks again while it waits: nothing is recorded as shown
        waiting = next_task(client, study)
        assert waiting["task"]["phase"] == "aided" and waiting["assist"]["model"]["status"] == pending
        assert "probabilities" not in waiting["assist"]["model"]
    answer = read(client, study, waiting["task"])
    assert answer.status_code == 409 and "being computed" in answer.json()["detail"]
    assert not Disclosure.objects.exists() and not Read.objects.filter(phase="aided").exists()
    type(prediction).objects.filter(pk=prediction.pk).update(status="done")
    assert next_task(client, study)["assist"]["model"]["status"] == "done"
    assert read(client, study, waiting["task"]).status_code == 201
    assert Read.objects.get(phase="aided").prediction_shown == prediction


def test_an_aided_read_after_a_failed_prediction_goes_on_and_records_the_failure(client, predicted):
    reader = make_reader("r1")
    study = new_study(predicted, [reader], design="sequential")
    first = next_task(as_user(client, reader), study)["task"]
    prediction = study.prediction_for(lesion_in_study(study, first["lesion"]))
    type(prediction).objects.filter(pk=prediction.pk).update(status="failed")
    read(client, study, first)
    assert next_task(client, study)["assist"]["model"]["status"] == "failed"
    assert read(client, study, {**first, "phase": "aided"}).status_code == 201
    shown = Disclosure.objects.get(purpose="assist")
    assert shown.prediction is None and Read.objects.get(phase="aided").disclosure == shown


def test_feedback_after_each_read_shows_model_output_and_saliency_and_records_it(client, predicted):
    reader = make_reader("r1")
    study = new_study(predicted, [reader], feedback="model")
    task = next_task(as_user(client, reader), study)["task"]
    heat = f"/studies/{study.public_id}/lesions/{task['lesion']}/T2WI.heat.nii.gz"
    assert client.get(heat).status_code == 403
    assert client.get(api(client, study, f"lesions/{task['lesion']}/feedback/")).status_code == 403
    feedback = read(client, study, task).json()["feedback"]
    assert feedback["model"]["status"] == "done" and "reference" not in feedback
    assert [s["sequence"] for s in feedback["model"]["saliency"]] == list(SEQUENCES)
    assert client.get(heat).status_code == 200
    disclosure = Disclosure.objects.get()
    assert disclosure.purpose == "feedback" and disclosure.assignment.reader == reader
    assert disclosure.prediction == study.prediction_for(lesion_in_study(study, task["lesion"]))


def test_a_practice_study_also_reveals_the_reference_after_the_read(client, predicted):
    reader = make_reader("r1")
    study = new_study(predicted, [reader], feedback="reference", practice=True)
    task = next_task(as_user(client, reader), study)["task"]
    lesion = lesion_in_study(study, task["lesion"])
    assert read(client, study, task).json()["feedback"]["reference"]["class"] == CLASSES[lesion.label]


def test_reference_feedback_outside_a_practice_study_is_refused_by_the_database(eight_lesions):
    with pytest.raises(IntegrityError), transaction.atomic():
        ReaderStudy.objects.create(name="x", feedback="reference", practice=False)


def test_a_queued_prediction_is_shown_as_not_ready(client, predicted):
    reader = make_reader("r1")
    study = new_study(predicted, [reader], feedback="model")
    task = next_task(as_user(client, reader), study)["task"]
    prediction = study.prediction_for(lesion_in_study(study, task["lesion"]))
    prediction.saliencies.all().delete()
    type(prediction).objects.filter(pk=prediction.pk).update(status="queued")
    model = read(client, study, task).json()["feedback"]["model"]
    assert model == {"status": "queued", "message": "The model's output for this lesion is not ready yet (queued)."}


def test_crossover_opens_the_second_session_only_after_the_washout_in_a_new_order(client, eight_lesions):
    readers = [make_reader("r1"), make_reader("r2")]
    study = new_study(eight_lesions, readers, design="crossover", washout_days=28)
    first, second = study.assignments.order_by("id")
    assert {first.aided_session, second.aided_session} == {1, 2} and first.orders[0] != first.orders[1]
    as_user(client, readers[0])
    phase = "aided" if first.aided_session == 1 else "unaided"
    for _ in range(8):
        task = next_task(client, study)["task"]
        assert task["session"] == 1 and task["phase"] == phase
        assert read(client, study, task).status_code == 201
    waiting = next_task(client, study)
    assert waiting["task"] is None and waiting["progress"]["opens_at"] is not None
    assert waiting["progress"]["done"] == 8 and not waiting["progress"]["finished"]
    month = timedelta(days=28, seconds=1)
    Read.objects.update(shown_at=F("shown_at") - month, submitted_at=F("submitted_at") - month)
    opened = next_task(client, study)
    assert opened["task"]["session"] == 2 and opened["task"]["phase"] != phase
    assert opened["task"]["lesion"] == study_lesion_id(study, Lesion.objects.get(pk=first.orders[1][0]))


# --- revisiting and amending -------------------------------------------------------------------------------


def test_without_revisiting_a_read_lesion_is_closed_to_its_reader(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader])
    task = next_task(as_user(client, reader), study)["task"]
    read(client, study, task)
    assert client.get(api(client, study, f"lesions/{task['lesion']}/")).status_code == 403
    assert client.get(f"/studies/{study.public_id}/lesions/{task['lesion']}/ADC.nii.gz").status_code == 403


def test_an_amendment_is_a_new_read_linked_to_the_one_it_supersedes(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader], allow_revisit=True, allow_amend=True)
    task = next_task(as_user(client, reader), study)["task"]
    original = read(client, study, task, diagnosis="cyst").json()["read"]
    assert client.get(api(client, study, f"lesions/{task['lesion']}/")).status_code == 200
    amended = read(client, study, task, diagnosis="HCC", amend=True)
    assert amended.status_code == 201 and amended.json()["read"]["amends"] == original["id"]
    assert read(client, study, task, diagnosis="HCC", amend=True).status_code == 200  # repeated: same row
    assert Read.objects.count() == 2
    assert Read.objects.get(public_id=original["id"]).diagnosis == CLASSES.index("cyst")  # never changed
    assert [r["diagnosis"] for r in client.get(api(client, study, "reads/")).json()] == ["cyst", "HCC"]


def test_amending_is_refused_where_the_study_does_not_allow_it(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader], allow_revisit=True)
    task = next_task(as_user(client, reader), study)["task"]
    read(client, study, task)
    assert read(client, study, task, amend=True).status_code == 403 and Read.objects.count() == 1


# --- serving -----------------------------------------------------------------------------------------------


def served_image(client, url):
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in response
    raw = b"".join(response.streaming_content)
    return response, raw, nib.Nifti1Image.from_bytes(gzip.decompress(raw))


def test_volumes_are_served_as_raw_gzip_in_lps_cropped_to_the_field_of_view(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader], field_of_view_mm=20)
    body = next_task(as_user(client, reader), study)
    lesion = lesion_in_study(study, body["task"]["lesion"])
    for entry in body["viewer"]["sequences"]:
        response, raw, image = served_image(client, entry["image"])
        _, _, mask = served_image(client, entry["mask"])
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        assert image.shape == mask.shape and np.allclose(image.affine, mask.affine)
        extent = np.array(image.shape) * np.array(image.header.get_zooms()[:3])
        assert np.all(extent <= 20 + 2 * np.array(image.header.get_zooms()[:3]) + 1e-6)
        header = image.header
        assert header["descrip"].item() == b"" and header["aux_file"].item() == b"" and header["intent_name"] == b""
        assert lesion.case.source_name.encode() not in gzip.decompress(raw)
        centroid = LesionMask.objects.get(lesion=lesion, sequence=entry["name"]).centroid_mm
        voxels = np.argwhere(np.asanyarray(mask.dataobj) > 0)
        world = nib.affines.apply_affine(mask.affine, voxels.mean(axis=0))
        assert np.allclose(world, centroid, atol=1.0)  # the same lesion, after reorientation and crop
        again = client.get(entry["image"], HTTP_IF_NONE_MATCH=response["ETag"])
        assert again.status_code == 304


def test_stored_files_have_no_public_route(client, eight_lesions, settings):
    reader = make_reader("r1")
    as_user(client, reader)
    volume = eight_lesions[0].case.volumes.first()
    assert client.get(f"/{settings.MEDIA_URL}{volume.file.name}").status_code == 404
    assert client.get(f"/static/{volume.file.name}").status_code == 404


# --- admin, home, demo, schema -----------------------------------------------------------------------------


def test_a_study_admin_assigns_readers_in_a_chosen_group(client, eight_lesions, study_admin):
    readers = [make_reader("r1"), make_reader("r2", "general")]
    study = new_study(eight_lesions, owner=study_admin)  # a study admin assigns to the studies they administer
    form = {
        "action": "assign_to_study",
        "_selected_action": [r.pk for r in readers],
        "apply": "1",
        "study": study.pk,
        "group": "academic",
    }
    response = client.post("/admin/studies/reader/", form, follow=True)
    assert b"2 reader(s) assigned" in response.content
    assert list(study.assignments.values_list("group", flat=True)) == ["academic", "academic"]
    assert client.get(f"/admin/studies/readerstudy/{study.pk}/change/").status_code == 200
    assert client.get("/admin/studies/read/").status_code == 200
    listing = client.get("/admin/studies/assignment/").content.decode()
    assert "session 1/1: 0 of 8" in listing and "r2" in listing


def test_the_home_page_lists_my_studies_with_progress(client, eight_lesions):
    reader = make_reader("r1")
    study = new_study(eight_lesions, [reader], name="Liver study A")
    as_user(client, reader)
    read(client, study, next_task(client, study)["task"])
    page = client.get("/").content.decode()
    assert "Liver study A" in page and "1 of 8" in page and f"/studies/{study.public_id}/read/" in page
    assert client.get(f"/studies/{study.public_id}/read/").status_code == 200


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    for path in ("/api/studies/", "/api/studies/{study_id}/next/", "/api/studies/{study_id}/reads/"):
        assert path.encode() in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_the_openapi_schema_is_valid_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/studies/{study_id}/results/" in (tmp_path / "schema.yml").read_text()


def test_the_viewer_opens_on_the_slice_of_largest_lesion_area_at_its_lps_centroid():
    from readerstudy.cases.serving import display_window, focus_lps

    mask = np.zeros((10, 10, 5), np.uint8)
    mask[2:4, 2:4, 1] = 1  # 4 voxels
    mask[5:8, 4:7, 3] = 1  # 9 voxels: the largest cross-section
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 30.0)
    x, y, z = -10 + 2 * 6, 20 + 2 * 5, 30 + 5 * 3  # the RAS centre of the slice-3 blob
    assert focus_lps(mask, affine) == [-x, -y, z]  # LPS: x and y negated
    image = np.concatenate([np.zeros(50), np.arange(1, 951)]).reshape(10, 10, 10)
    lower, upper = display_window(image)
    assert lower == pytest.approx(10.49) and upper == pytest.approx(945.255)  # 1st, 99.5th of the nonzero voxels
