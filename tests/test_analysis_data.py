"""The study's tidy reads table, its exports, and the simulated demo reads."""

import io

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from test_reading import make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from inference.domain import CLASSES
from readerstudy.analysis.data import reads_frame
from readerstudy.studies.identifiers import study_lesion_id
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Read
from readerstudy.studies.simulation import ACCURACY, simulate_reads

pytestmark = pytest.mark.django_db


@pytest.fixture
def read_study(client, predicted):
    """A feedback study (revisits and amendments allowed) where one reader read every lesion and amended one."""
    reader = make_reader("r1", "general")
    study = new_study(predicted, [reader], feedback="model", allow_revisit=True, allow_amend=True)
    client.force_login(reader.user)
    for n in range(len(predicted)):
        task = next_task(client, study)["task"]
        read(client, study, task, diagnosis=CLASSES[n], confidence=3, malignancy=10 * n)
    read(client, study, task, diagnosis="HCC", amend=True)
    client.logout()
    return study


def test_the_reads_table_joins_lesion_reader_and_model_and_marks_correctness(read_study):
    frame = reads_frame(read_study)
    assert len(frame) == 3 and set(frame["reader"]) == {"r1"} and set(frame["group"]) == {"general"}
    for row in frame.itertuples():
        lesion = read_study.lesions.get(public_id=row.lesion)
        assert row.study_lesion == study_lesion_id(read_study, lesion) != row.lesion  # the id its readers saw
        prediction = read_study.prediction_for(lesion)
        assert row.label == CLASSES[lesion.label] and row.correct == (row.diagnosis == row.label)
        assert row.model_class == CLASSES[prediction.predicted_class]
        assert row.model_correct == (prediction.predicted_class == lesion.label)
        assert row.p_HCC == pytest.approx(prediction.probabilities[4]) and row.seconds >= 0
        assert row.diameter_mm == lesion.diameter_mm and row.scanner_model == lesion.case.scanner_model
    assert list(frame["diagnosis"]) == ["cyst", "FNH", "haemangioma"]  # the first reads, in submission order
    everything = reads_frame(read_study, first_only=False)
    assert len(everything) == 4 and everything["amends"].notna().sum() == 1


@pytest.fixture
def owner(client, read_study):
    user = get_user_model().objects.create_user("owner", password="x", is_staff=True)
    user.groups.add(Group.objects.create(name=STUDY_ADMINS_GROUP))
    read_study.owner = user
    read_study.save()
    return user


def test_the_study_owner_downloads_the_reads_as_csv_and_xlsx(client, read_study, owner):
    client.force_login(owner)
    csv = client.get(f"/studies/{read_study.public_id}/export/reads.csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    table = pd.read_csv(io.BytesIO(csv.content))
    assert len(table) == 3 and {"reader", "group", "label", "diagnosis", "correct", "model_class"} <= set(table)
    xlsx = client.get(f"/studies/{read_study.public_id}/export/reads.xlsx?all=1")
    assert len(pd.read_excel(io.BytesIO(xlsx.content))) == 4


def test_readers_and_other_admins_are_refused_the_download(client, read_study, owner):
    other = get_user_model().objects.create_user("other-admin", password="x", is_staff=True)
    other.groups.add(Group.objects.get(name=STUDY_ADMINS_GROUP))
    url = f"/studies/{read_study.public_id}/export/reads.csv"
    for user in (Read.objects.first().assignment.reader.user, other):
        client.force_login(user)
        assert client.get(url).status_code == 404  # as for a study that does not exist
    read_study.admins.add(other)
    assert client.get(url).status_code == 200


def test_simulated_reads_follow_the_group_profiles_and_repeat_with_the_seed(eight_lesions):
    readers = [make_reader(f"a{n}", "academic") for n in range(25)] + [make_reader(f"r{n}") for n in range(25)]
    study = new_study(eight_lesions, readers, design="sequential")
    assert simulate_reads(study) == 50 * 8 * 2 and simulate_reads(study) == 0  # idempotent
    frame = reads_frame(study)
    unaided = frame[frame["phase"] == "unaided"].groupby("group")["correct"].mean()
    for group, accuracy in unaided.items():  # 200 reads a group: SE about 0.03
        assert abs(accuracy - ACCURACY[group]) < 0.1, (group, accuracy)
    assert frame["malignancy"].between(0, 100).all() and (frame["seconds"] > 0).all()
    first = list(frame.sort_values(["reader", "lesion", "phase"])["diagnosis"])
    Read.objects.all().delete()
    simulate_reads(study)
    assert list(reads_frame(study).sort_values(["reader", "lesion", "phase"])["diagnosis"]) == first


def test_the_cohort_table_compares_the_splits_of_the_studys_datasets(dataset, media):
    from readerstudy.analysis.data import cohort_frame
    from readerstudy.analysis.summary import cohort_comparison
    from readerstudy.cases.importer import import_dataset
    from readerstudy.cases.models import Lesion

    for n in range(10):
        split = "test" if n < 4 else "development"
        dataset.add_case(
            f"C{n}",
            patient=f"P{n}",
            lesions=(("L1", CLASSES[n % 7]),),
            split=split,
            age=str(40 + 3 * n),
            diameter_mm=str(10 + n),
        )
    dataset.write_manifest()
    import_dataset(dataset.root, dataset="trial")
    study = new_study(Lesion.objects.filter(split="test"))
    frame = cohort_frame(study)
    assert len(frame) == 10 and sorted(frame["split"].value_counts().items()) == [("development", 6), ("test", 4)]
    table = cohort_comparison(frame).set_index(["variable", "level"])
    assert table.loc[("lesions", "n"), "development"] == "6" and table.loc[("lesions", "n"), "test"] == "4"
    assert 0 <= table.loc[("age", "mean ± SD"), "p"] <= 1
