"""``make_demo_studies``: the open demo studies hold disjoint, class-stratified parts of the test split, so no
demo reader meets a lesion unread in one study whose model output or reference another has shown them."""

import io
import itertools
import json
import random

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.domain import CLASSES
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Case, Lesion
from readerstudy.predictions.models import ModelVersion, Prediction
from readerstudy.studies.management.commands.make_demo import ACCOUNTS_FILE
from readerstudy.studies.management.commands.make_demo_studies import DEMO_STUDIES, SIMULATED_STUDY, split_lesions
from readerstudy.studies.models import Assignment, Disclosure, Phase, Read, Reader, ReaderStudy

pytestmark = pytest.mark.django_db

TEST_PER_CLASS = 4  # as in the demo cohort: 28 test lesions


def make_demo_readers() -> list[Reader]:
    """The readers of ``fixtures/demo_accounts.json`` (no passwords needed here)."""
    users = get_user_model().objects
    return [
        Reader.objects.create(user=users.create_user(a["username"]), group=a["group"], years_of_experience=a["years"])
        for a in json.loads(ACCOUNTS_FILE.read_text())
        if "group" in a
    ]


@pytest.fixture
def demo(dataset, media) -> list[Lesion]:
    """A "demo" dataset of one-lesion cases, per class four test lesions and one development lesion, with done
    predictions of an active model and the six demo readers; returns the test lesions."""
    cases = itertools.count(1)
    for label in CLASSES:
        for split in ["test"] * TEST_PER_CLASS + ["development"]:
            n = next(cases)
            dataset.add_case(f"C{n:02d}", patient=f"P{n:02d}", lesions=(("L1", label),), split=split)
    dataset.write_manifest()
    import_dataset(dataset.root, dataset="demo")
    version = ModelVersion.objects.create(
        name="demo-model", config={}, run_path="models/demo-model", files_sha256={}, metrics={}, is_active=True
    )
    output = dict(status="done", probabilities=[1 / 7] * 7, malignant_probability=0.5, predicted_malignant=False)
    for lesion in Lesion.objects.all():
        wrong = (lesion.label + lesion.pk % 2) % len(CLASSES)  # every other lesion predicted wrong
        Prediction.objects.create(model_version=version, lesion=lesion, predicted_class=wrong, **output)
    make_demo_readers()
    return list(Lesion.objects.filter(split="test"))


def open_lesions(reader: Reader) -> dict[str, set[int]]:
    """{open study name: lesion pks} of the open studies ``reader`` is assigned to."""
    assignments = Assignment.objects.filter(reader=reader, study__is_open=True).select_related("study")
    return {a.study.name: set(a.study.lesions.values_list("pk", flat=True)) for a in assignments}


def snapshot() -> dict:
    """Every study's lesions, assignments with their orders, and the counts of reads and disclosures."""
    studies = {s.name: sorted(s.lesions.values_list("pk", flat=True)) for s in ReaderStudy.objects.all()}
    orders = sorted(Assignment.objects.values_list("study__name", "reader__user__username", "orders"))
    return {"studies": studies, "orders": orders, "reads": Read.objects.count(), "shown": Disclosure.objects.count()}


def test_make_demo_studies_needs_an_active_model_then_assigns_the_demo_readers_and_simulates_one(demo):
    out = io.StringIO()
    call_command("make_demo_studies", stdout=out)
    before = snapshot()
    call_command("make_demo_studies", stdout=out)  # idempotent
    assert snapshot() == before
    assert ReaderStudy.objects.count() == 4 and Assignment.objects.count() == 24
    simulated = ReaderStudy.objects.get(name__startswith="Demo (simulated reads)")
    assert not simulated.is_open and Read.objects.filter(assignment__study=simulated).count() == 6 * len(demo) * 2
    assert {s.model_version.name for s in ReaderStudy.objects.all()} == {"demo-model"}
    ModelVersion.objects.update(is_active=False)
    with pytest.raises(CommandError, match="no active model version"):
        call_command("make_demo_studies", stdout=out)


def test_every_demo_reader_has_disjoint_test_lesions_of_every_class_in_studies_that_show_what_they_say(demo):
    call_command("make_demo_studies", stdout=io.StringIO())

    for reader in Reader.objects.all():
        studies = open_lesions(reader)
        assert sorted(studies) == sorted(spec["name"] for spec in DEMO_STUDIES.values())
        for (a, lesions_a), (b, lesions_b) in itertools.combinations(studies.items(), 2):
            assert not lesions_a & lesions_b, f"{reader}: {a} and {b} share lesions"
        assert set().union(*studies.values()) == {lesion.pk for lesion in demo}  # no test lesion left out
    for key, spec in DEMO_STUDIES.items():
        study = ReaderStudy.objects.get(name=spec["name"])
        assert set(study.lesions.values_list("split", flat=True)) == {"test"}
        assert sorted(set(study.lesions.values_list("label", flat=True))) == list(range(len(CLASSES))), key
    sizes = {key: ReaderStudy.objects.get(name=spec["name"]).lesions.count() for key, spec in DEMO_STUDIES.items()}
    assert sizes == {"sequential": 14, "feedback": 7, "practice": 7}
    feedback, sequential, practice = (ReaderStudy.objects.get(name=s["name"]) for s in DEMO_STUDIES.values())
    assert feedback.design == "unaided" and feedback.feedback == "model" and not feedback.practice
    assert sequential.design == "sequential" and sequential.feedback == "none"
    assert practice.design == "unaided" and practice.feedback == "reference" and practice.practice
    assert all(s.is_open and s.model_version.is_active for s in (feedback, sequential, practice))


def test_the_simulated_study_reads_every_test_lesion_and_discloses_nothing(demo):
    call_command("make_demo_studies", stdout=io.StringIO())

    simulated = ReaderStudy.objects.get(name=SIMULATED_STUDY["name"])
    assert set(simulated.lesions.values_list("pk", flat=True)) == {lesion.pk for lesion in demo}
    aided = Read.objects.filter(assignment__study=simulated, phase=Phase.AIDED)
    assert aided.count() == 6 * len(demo) and not aided.filter(prediction_shown=None).exists()
    assert not aided.exclude(disclosure=None).exists()
    assert not Disclosure.objects.exists()  # simulated reads show a reader nothing


@pytest.mark.django_db(False)
def test_the_split_follows_class_and_dataset_names_not_import_order_or_public_ids():
    lesions = [
        Lesion(label=label, source_name=f"L{n % 2 + 1}", case=Case(source_name=f"C{n // 2:03d}"))
        for label in range(len(CLASSES))
        for n in range(TEST_PER_CLASS)
    ]
    shares = split_lesions(lesions)
    assert split_lesions(random.Random(1).sample(lesions, len(lesions))) == shares  # any order in, one split out
    names = {key: [(x.label, x.case.source_name, x.source_name) for x in share] for key, share in shares.items()}
    assert names["sequential"][:2] == [(0, "C000", "L1"), (0, "C001", "L1")]
    assert names["feedback"][0] == (0, "C000", "L2") and names["practice"][0] == (0, "C001", "L2")
    labels = {key: sorted(x.label for x in share) for key, share in shares.items()}
    assert labels == {"sequential": sorted([*range(7)] * 2), "feedback": [*range(7)], "practice": [*range(7)]}


def test_too_few_test_lesions_for_three_disjoint_studies_are_refused(demo):
    Lesion.objects.exclude(pk__in=[lesion.pk for lesion in demo[:3]]).update(split="development")

    with pytest.raises(CommandError, match="3 test-split lesions .* too few"):
        call_command("make_demo_studies", stdout=io.StringIO())
    assert not ReaderStudy.objects.exists()


def test_demo_studies_that_overlap_from_before_are_kept_with_a_warning(demo):
    """A var/ whose open demo studies share every lesion (as an earlier make_demo_studies made them) still
    starts: nothing is reassigned, and the command says why to rebuild."""
    readers = list(Reader.objects.all())
    for spec in DEMO_STUDIES.values():
        study = ReaderStudy.objects.create(**spec)
        study.lesions.set(demo)
        for reader in readers:
            Assignment.assign(study, reader)
    err = io.StringIO()
    call_command("make_demo_studies", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().count("shares lesions with another demo study") == len(DEMO_STUDIES)
    assert Assignment.objects.filter(study__is_open=True).count() == len(DEMO_STUDIES) * len(readers)
