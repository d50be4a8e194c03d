"""Blinding across studies: while a reader owes a blinded read of a lesion in one open study, no other study
of theirs reveals its reference or the model's output, on any endpoint, in any state; and a lesion's ids,
served file names and ETags differ from study to study."""

import pytest
from test_blinding import ENDPOINTS, body_of
from test_reading import make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from readerstudy.studies.blinding import STILL_OWED_ELSEWHERE
from readerstudy.studies.identifiers import lesion_in_study, study_lesion_id
from readerstudy.studies.models import Design, Disclosure, Feedback

pytestmark = pytest.mark.django_db

REVEALING = {  # studies that show something of a lesion: the model's output, and in practice the reference
    "practice": {"feedback": Feedback.REFERENCE, "practice": True, "allow_revisit": True},
    "model feedback": {"feedback": Feedback.MODEL},
    "sequential": {"design": Design.SEQUENTIAL},
    "crossover": {"design": Design.CROSSOVER, "washout_days": 1},
}
OWED = {  # what the reader still owes in the blinded study: an unaided read, or only the aided one
    "unaided read owed": Design.UNAIDED,
    "aided read owed": Design.SEQUENTIAL,
}
MODEL_KEYS = ['"probabilities":', '"predicted_class":', '"saliency":', '"heat":']


def model_secrets(study, lesion) -> list[str]:
    prediction = study.prediction_for(lesion)
    return [study.model_version.name, *MODEL_KEYS, *(repr(p) for p in prediction.probabilities)]


def owe(client, reader, lesion, owed: str):
    """An open study where ``reader`` owes a blinded read of ``lesion`` (the aided one only: its unaided read
    given)."""
    blinded = new_study([lesion], [reader], name="Blinded", design=OWED[owed])
    if owed == "aided read owed":
        task = next_task(client, blinded)["task"]
        assert read(client, blinded, task).status_code == 201
    return blinded


def responses(client, study, lesion_id) -> dict:
    return {name: client.get(url.format(s=study.public_id, l=lesion_id)) for name, url in ENDPOINTS.items()}


@pytest.mark.parametrize("owed", OWED)
@pytest.mark.parametrize("kind", REVEALING)
def test_no_other_study_reveals_a_lesion_still_owed_blinded(client, predicted, kind, owed):
    reader, lesion = make_reader("reader-a"), predicted[0]
    client.force_login(reader.user)
    blinded = owe(client, reader, lesion, owed)
    other = new_study([lesion], [reader], name=kind, **REVEALING[kind])
    lesion_id = study_lesion_id(other, lesion)
    reference = ['"reference":']
    model_hidden = owed == "unaided read owed"
    forbidden = reference + (model_secrets(other, lesion) if model_hidden else [])
    for state in ("before my read there", "after my read there"):
        if state == "after my read there":
            task = next_task(client, other)["task"]
            answer = read(client, other, task)
            if task["phase"] == "aided" and model_hidden:  # the aided read waits for the AI output held back
                assert answer.status_code == 409 and STILL_OWED_ELSEWHERE in answer.json()["detail"]
                continue
            assert answer.status_code == 201
            forbidden_in_answer = [s for s in forbidden if s in body_of(answer)]
            assert not forbidden_in_answer, f"{kind}, {owed}: the read's answer leaks {forbidden_in_answer}"
        for endpoint, response in responses(client, other, lesion_id).items():
            leaked = [s for s in forbidden if s in body_of(response)]
            assert not leaked, f"{kind}, {owed}, {state}, {endpoint} ({response.status_code}) leaks {leaked}"
            assert response.status_code in {200, 403, 404}, (kind, owed, state, endpoint, response.status_code)
    if model_hidden:  # whatever this study would show is named as held back, without naming the other study
        shown = client.get(ENDPOINTS["feedback"].format(s=other.public_id, l=lesion_id))
        assert shown.status_code == 403 and shown.json()["detail"] == STILL_OWED_ELSEWHERE
        assert blinded.name not in shown.content.decode()
    # The control: once the blinded read is locked, the other study shows what it shows. (A crossover read
    # aided first owes its unaided session now, so the blinded study's aided read waits for that one.)
    if not (kind == "crossover" and owed == "aided read owed"):
        for task in iter(lambda: next_task(client, blinded)["task"], None):
            assert read(client, blinded, task).status_code == 201
    for task in iter(lambda: next_task(client, other)["task"], None):
        assert read(client, other, task).status_code == 201
    after = client.get(ENDPOINTS["feedback"].format(s=other.public_id, l=lesion_id))
    if kind != "crossover":  # a crossover shows nothing after a read while its unaided session is to come
        assert after.status_code == 200 and "withheld" not in after.json()
        assert after.json()["model"]["probabilities"] and ("reference" in after.json()) == (kind == "practice")
    assert Disclosure.objects.filter(assignment__study=other, prediction__isnull=False).exists()


def test_a_closed_study_holds_nothing_back(client, predicted):
    reader, lesion = make_reader("reader-a"), predicted[0]
    client.force_login(reader.user)
    blinded = owe(client, reader, lesion, "unaided read owed")
    practice = new_study([lesion], [reader], name="Practice", **REVEALING["practice"])
    read(client, practice, next_task(client, practice)["task"])
    feedback = ENDPOINTS["feedback"].format(s=practice.public_id, l=study_lesion_id(practice, lesion))
    assert client.get(feedback).status_code == 403
    type(blinded).objects.filter(pk=blinded.pk).update(is_open=False)
    assert '"reference":' in client.get(feedback).content.decode()


def test_another_readers_debt_holds_nothing_back_from_me(client, predicted):
    a, b, lesion = make_reader("reader-a"), make_reader("reader-b"), predicted[0]
    client.force_login(b.user)
    owe(client, b, lesion, "unaided read owed")
    practice = new_study([lesion], [a], name="Practice", **REVEALING["practice"])
    client.force_login(a.user)
    answer = read(client, practice, next_task(client, practice)["task"]).json()
    assert answer["feedback"]["reference"] and "withheld" not in answer["feedback"]


def test_the_practice_study_attack_learns_nothing_before_the_blinded_reads(client, predicted):
    """The attack as a reader would run it: read the whole practice study, then look up the feedback of every
    practice lesion while the same lesions wait unread in the feedback study; then read them there and look
    again (the control)."""
    reader = make_reader("resident1")
    feedback_study = new_study(predicted, [reader], name="Feedback", feedback=Feedback.MODEL)
    practice = new_study(predicted, [reader], name="Practice", **REVEALING["practice"])
    client.force_login(reader.user)
    for task in iter(lambda: next_task(client, practice)["task"], None):
        answer = read(client, practice, task).json()
        assert "reference" not in answer["feedback"] and "model" not in answer["feedback"]
        assert answer["feedback"]["withheld"] == STILL_OWED_ELSEWHERE
    practised = [r["lesion"] for r in client.get(f"/api/studies/{practice.public_id}/reads/").json()]
    unread = next_task(client, feedback_study)["task"]["lesion"]
    assert unread not in practised  # the two studies' ids cannot be joined
    for lesion_id in practised:
        looked_up = client.get(ENDPOINTS["feedback"].format(s=practice.public_id, l=lesion_id))
        assert looked_up.status_code == 403 and '"reference"' not in looked_up.content.decode()
    for task in iter(lambda: next_task(client, feedback_study)["task"], None):
        assert read(client, feedback_study, task).status_code == 201
    for lesion_id in practised:
        looked_up = client.get(ENDPOINTS["feedback"].format(s=practice.public_id, l=lesion_id)).json()
        assert looked_up["reference"]["class"] and looked_up["model"]["status"] == "done"


def test_a_lesion_has_unrelated_ids_and_etags_in_two_studies(client, predicted):
    reader, lesion = make_reader("reader-a"), predicted[0]
    studies = [new_study([lesion], [reader], name=name) for name in ("One", "Two")]
    client.force_login(reader.user)
    ids = [next_task(client, study)["task"]["lesion"] for study in studies]
    assert ids == [study_lesion_id(study, lesion) for study in studies]
    assert len({*ids, lesion.public_id}) == 3 and all(i[0] in "abcdef" for i in ids)
    assert all(lesion_in_study(study, i) == lesion for study, i in zip(studies, ids, strict=True))
    served = [client.get(ENDPOINTS["image"].format(s=s.public_id, l=i)) for s, i in zip(studies, ids, strict=True)]
    assert all(r.status_code == 200 for r in served)
    assert served[0]["ETag"] != served[1]["ETag"]
    again = client.get(
        ENDPOINTS["image"].format(s=studies[0].public_id, l=ids[0]), HTTP_IF_NONE_MATCH=served[0]["ETag"]
    )
    assert again.status_code == 304
