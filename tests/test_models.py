"""The domain model carries its invariants in the database."""

import io

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from inference.domain import CLASSES, READER_GROUPS, SEQUENCES, is_malignant
from readerstudy.cases.models import Case, Lesion, LesionMask, Patient, SequenceVolume, new_public_id
from readerstudy.studies.models import Reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def case():
    patient = Patient.objects.create(key="k" * 32, age=60, sex="M", cirrhosis=True, fatty_liver=False)
    return Case.objects.create(
        patient=patient,
        dataset="d",
        source_name="C1",
        source_sha256="0" * 64,
        scanner_vendor="GE",
        scanner_model="Signa",
        field_strength_t=1.5,
    )


def volume(case, sequence="T2WI"):
    return SequenceVolume(
        case=case,
        sequence=sequence,
        file="volumes/x.nii.gz",
        shape=[1, 1, 1],
        spacing=[1, 1, 1],
        affine=[[1, 0, 0, 0]] * 4,
        sha256="0" * 64,
    )


def fails(row) -> bool:
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        return True
    return False


def test_domain_constants_are_the_papers():
    assert SEQUENCES == ("T2WI", "DWI", "ADC", "T1WI", "LAP", "PVP", "DP")
    assert CLASSES == ("cyst", "FNH", "haemangioma", "abscess", "HCC", "ICC", "metastasis")
    assert [is_malignant(i) for i in range(7)] == [False] * 4 + [True] * 3
    assert READER_GROUPS == ("resident", "general", "academic")


def test_one_volume_per_sequence_and_only_known_sequences(case):
    volume(case).save()
    assert fails(volume(case))
    assert fails(volume(case, "T3WI"))
    assert not fails(volume(case, "DWI"))


def test_lesion_label_diameter_and_split_are_checked(case):
    good = {"case": case, "source_name": "L1", "label": 4, "diameter_mm": 20.0, "split": "test"}
    assert fails(Lesion(**{**good, "label": 7}))
    assert fails(Lesion(**{**good, "diameter_mm": 0}))
    assert fails(Lesion(**{**good, "split": "validation"}))
    lesion = Lesion.objects.create(**good)
    assert fails(Lesion(**good))  # same source lesion twice in one case
    assert len(lesion.public_id) == 16 and lesion.public_id != Lesion(**good).public_id


def test_one_non_empty_mask_per_lesion_and_sequence(case):
    lesion = Lesion.objects.create(case=case, source_name="L1", label=0, diameter_mm=9.0, split="development")
    mask = {
        "lesion": lesion,
        "sequence": "ADC",
        "file": "volumes/m.nii.gz",
        "sha256": "0" * 64,
        "voxel_count": 10,
        "centroid_mm": [0, 0, 0],
    }
    assert fails(LesionMask(**{**mask, "voxel_count": 0}))
    LesionMask.objects.create(**mask)
    assert fails(LesionMask(**mask))


def test_case_is_unique_per_dataset_and_source(case):
    duplicate = Case(
        patient=case.patient,
        dataset="d",
        source_name="C1",
        source_sha256="1" * 64,
        scanner_vendor="GE",
        scanner_model="Signa",
        field_strength_t=1.5,
    )
    assert fails(duplicate)
    duplicate.dataset = "other"
    assert not fails(duplicate)


def test_reader_group_is_one_of_the_three():
    user = get_user_model().objects.create_user("r1")
    assert fails(Reader(user=user, group="intern", years_of_experience=0))
    assert (
        str(Reader.objects.create(user=user, group="academic", years_of_experience=17)) == "r1 (Academic radiologist)"
    )


def test_public_ids_are_never_read_as_numbers_by_a_spreadsheet_or_csv_reader():
    ids = [new_public_id() for _ in range(20_000)]  # plain hex: about 11 all digits, many "<digits>e<digits>…"
    assert all(len(i) == 16 and int(i, 16) >= 0 and i[0] in "abcdef" for i in ids) and len(set(ids)) == len(ids)
    for public_id in ids:
        with pytest.raises(ValueError):
            float(public_id)
    column = pd.read_csv(io.StringIO("id\n" + "\n".join(ids)))["id"]
    assert column.dtype == object and list(column) == ids
