"""Blinding as a matrix of role × endpoint × study state: every response's status, and no byte of the
reference, the model's output or another reader's read before the reader's own read is locked."""

import gzip

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from test_reading import make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from readerstudy.studies.identifiers import lesion_in_study, study_lesion_id
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Read, Reader

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "home": "/",
    "reading page": "/studies/{s}/read/",
    "my studies": "/api/studies/",
    "next": "/api/studies/{s}/next/",
    "progress": "/api/studies/{s}/progress/",
    "my reads": "/api/studies/{s}/reads/",
    "lesion": "/api/studies/{s}/lesions/{l}/",
    "feedback": "/api/studies/{s}/lesions/{l}/feedback/",
    "image": "/studies/{s}/lesions/{l}/T2WI.nii.gz",
    "mask": "/studies/{s}/lesions/{l}/DWI.mask.nii.gz",
    "heat": "/studies/{s}/lesions/{l}/PVP.heat.nii.gz",
    "schema": "/api/schema/",
    "export": "/studies/{s}/export/reads.csv",
    "dashboard": "/studies/{s}/dashboard/",
    "results": "/api/studies/{s}/results/",
}
HTML = {"home", "reading page", "export", "dashboard"}
VOLUMES = {"image", "mask", "heat"}
ROLES = ("reader before read", "reader after read", "unassigned reader", "study admin", "anonymous")


def expected_status(role: str, state: str, endpoint: str) -> int:
    """The whole rule table: what each role gets from each endpoint while the study is open or closed."""
    if endpoint == "schema":
        return 200
    if role == "anonymous":
        return 403 if endpoint not in HTML | VOLUMES else 302
    if endpoint in {"home", "my studies"}:
        return 200
    if endpoint in {"export", "dashboard", "results"}:  # the owner's and granted admins' (this admin is neither)
        return 404
    if role in {"unassigned reader", "study admin"} or state == "closed":
        return 404
    if role == "reader before read" and endpoint in {"feedback", "heat"}:
        return 403
    return 200


@pytest.fixture
def world(client, predicted):
    """A practice study that reveals everything after a read (model, saliency, reference; revisiting and
    amending allowed). Reader B has read every lesion; reader A is at their first lesion."""
    a, b = make_reader("reader-a"), make_reader("reader-b", "academic")
    unassigned = make_reader("reader-c")
    admin = get_user_model().objects.create_user("admin1", password="x", is_staff=True)
    admin.groups.add(Group.objects.create(name=STUDY_ADMINS_GROUP))
    study = new_study(predicted, [a, b], feedback="reference", practice=True, allow_revisit=True, allow_amend=True)
    client.force_login(b.user)
    for _ in predicted:
        read(client, study, next_task(client, study)["task"], diagnosis="metastasis", malignancy=37)
    client.force_login(a.user)
    lesion = next_task(client, study)["viewer"]["lesion"]
    client.logout()
    return {"study": study, "lesion": lesion, "a": a, "unassigned": unassigned, "admin": admin}


def secrets_of(world) -> list[str]:
    """Strings that would reveal the reference, the model's output or reader B's reads."""
    study = world["study"]
    lesion = lesion_in_study(study, world["lesion"])
    prediction = study.prediction_for(lesion)
    values = [repr(p) for p in prediction.probabilities] + [repr(prediction.malignant_probability)]
    b_reads = list(Read.objects.exclude(assignment__reader=world["a"]).values_list("public_id", flat=True))
    keys = ['"reference":', '"probabilities":', '"predicted_class":', '"saliency":', '"heat":']
    return [study.model_version.name, *values, *b_reads, *keys]


def body_of(response) -> str:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    headers = " ".join(f"{k}: {v}" for k, v in response.items())
    return headers + raw.decode("latin-1")


@pytest.mark.parametrize("state", ["open", "closed"])
@pytest.mark.parametrize("role", ROLES)
def test_blinding_matrix(client, world, role, state):
    study, lesion = world["study"], world["lesion"]
    user = {
        "reader before read": world["a"].user,
        "reader after read": world["a"].user,
        "unassigned reader": world["unassigned"].user,
        "study admin": world["admin"],
    }.get(role)
    if user:
        client.force_login(user)
    if role == "reader after read":
        read(client, study, {"lesion": lesion, "phase": "unaided"}, diagnosis="cyst", malignancy=12)
    if state == "closed":
        type(study).objects.filter(pk=study.pk).update(is_open=False)
    secrets = secrets_of(world)
    other_reads = list(Read.objects.exclude(assignment__reader=world["a"]).values_list("public_id", flat=True))
    for endpoint, pattern in ENDPOINTS.items():
        response = client.get(pattern.format(s=study.public_id, l=lesion))
        want = expected_status(role, state, endpoint)
        assert response.status_code == want, f"{role}, {state}, {endpoint}: {response.status_code} != {want}"
        body = body_of(response)
        revealing = role == "reader after read" and state == "open" and endpoint in {"feedback", "heat"}
        forbidden = other_reads if revealing else secrets  # B's reads never reach A, even after A's read
        leaked = [s for s in forbidden if s in body]
        assert not leaked, f"{role}, {state}, {endpoint} leaks {leaked}"
        if revealing and endpoint == "feedback":  # the control: after the read the reveal holds them
            assert study.model_version.name in body and '"reference"' in body and '"probabilities"' in body


def test_a_reader_cannot_open_a_lesion_ahead_of_their_order(client, world):
    study = world["study"]
    client.force_login(world["a"].user)
    order = study.assignments.get(reader=world["a"]).orders[0]
    ahead = study_lesion_id(study, study.lesions.get(pk=order[1]))
    for endpoint in ("lesion", "image", "mask", "heat", "feedback"):  # as for a lesion that does not exist
        url = ENDPOINTS[endpoint].format(s=study.public_id, l=ahead)
        assert client.get(url).status_code == 404, endpoint


def test_a_study_admin_sees_no_label_output_or_results_anywhere_while_reading_in_an_open_study(
    client, eight_lesions, study_admin
):
    owned = new_study(eight_lesions, name="Owned", owner=study_admin)
    lesion = eight_lesions[0]
    urls = [
        f"/studies/{owned.public_id}/dashboard/",
        "/admin/cases/lesion/",
        f"/admin/cases/lesion/{lesion.pk}/change/",
        f"/admin/cases/case/{lesion.case_id}/change/",
    ]
    assert [client.get(url).status_code for url in urls] == [200] * len(urls)
    reader = Reader.objects.create(user=study_admin, group="academic", years_of_experience=9)
    reading = new_study(eight_lesions[:2], [reader], name="Reading")  # shares lesions with the owned study
    assert [client.get(url).status_code for url in urls] == [404, 403, 403, 403]  # results: as no such study
    with CaptureQueriesContext(connection) as queries:
        assert "/admin/cases/lesion/" not in client.get("/admin/").content.decode()
    asked = [q["sql"] for q in queries.captured_queries if '"studies_readerstudy"."is_open"' in q["sql"]]
    assert len(asked) == 1, asked  # once per request, however many models and permissions the page asks about
    reading.is_open = False
    reading.save()
    assert [client.get(url).status_code for url in urls] == [200] * len(urls)
