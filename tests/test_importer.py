"""The dataset importer: happy path, every bad input, all-or-nothing, idempotency."""

import gzip

import nibabel as nib
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference.dataset import load_case
from inference.domain import SEQUENCES
from inference.manifest import COLUMNS, ManifestError, read_manifest
from inference.nifti import write_volume
from readerstudy.cases.importer import InvalidDatasetName, import_dataset, store_case
from readerstudy.cases.models import Case, Lesion, LesionMask, Patient, SequenceVolume
from tests.conftest import stored_files

pytestmark = pytest.mark.django_db


def test_import_creates_case_with_seven_volumes_lesions_and_masks(dataset, media):
    dataset.add_case("C1", lesions=(("L1", "HCC"), ("L2", "cyst"))).write_manifest()

    report = import_dataset(dataset.root, dataset="trial")

    assert report.imported == ["C1"] and report.lesions == 2 and not report.rejected
    case = Case.objects.get()
    assert (case.dataset, case.source_name, case.scanner_model, float(case.field_strength_t)) == (
        "trial",
        "C1",
        "Prisma",
        3.0,
    )
    assert sorted(case.volumes.values_list("sequence", flat=True)) == sorted(SEQUENCES)
    t2 = case.volumes.get(sequence="T2WI")
    assert t2.shape == [16, 16, 8] and t2.spacing == [2.0, 2.0, 5.0]
    assert case.volumes.get(sequence="DWI").shape == [12, 12, 8]
    lesions = {lesion.source_name: lesion for lesion in case.lesions.all()}
    assert lesions["L1"].get_label_display() == "Hepatocellular carcinoma" and lesions["L2"].label == 0
    assert lesions["L1"].diameter_mm == 21.5 and lesions["L1"].split == "development"
    assert LesionMask.objects.filter(lesion__case=case).count() == 14
    mask = lesions["L1"].masks.get(sequence="T2WI")
    assert mask.voxel_count == 64
    # the 4-voxel cube centred at voxel (8, 8, 4) of a 2 × 2 × 5 mm grid at (-16, -16, -20)
    assert mask.centroid_mm == pytest.approx([-1.0, -1.0, -2.5])
    assert len(stored_files(media)) == 7 + 14
    for volume in SequenceVolume.objects.all():
        assert nib.load(volume.file.path).shape == tuple(volume.shape)


def test_stored_files_are_anonymised(dataset, media):
    dataset.add_case("C1", patient="MRN-4711").write_manifest()
    original = nib.load(dataset.path("C1", "T2WI"))
    original.header["descrip"] = b"Doe^John MRN-4711 HCC"
    original.header["aux_file"] = b"hcc_lesion.txt"
    original.header["db_name"] = b"HOSPITAL"
    original.header["intent_name"] = b"HCC"
    original.to_filename(dataset.path("C1", "T2WI"))

    import_dataset(dataset.root)

    for path in stored_files(media):
        header = nib.load(path).header
        for field in ("descrip", "aux_file", "db_name", "intent_name"):
            assert header[field].item() == b"", (path.name, field)
        assert not any(word in path.name for word in ("C1", "L1", "HCC", "T2WI", "dataset"))
        assert b"MRN-4711" not in gzip.decompress(path.read_bytes())
    patient = Patient.objects.get()
    assert "4711" not in patient.key and len(patient.key) == 32
    lesion = Lesion.objects.get()
    assert lesion.public_id not in {"L1", "C1"} and "hcc" not in lesion.public_id.lower()


def test_same_patient_in_two_datasets_gets_the_same_pseudonym(dataset, media, tmp_path):
    dataset.add_case("C1", patient="P7").write_manifest()
    import_dataset(dataset.root, dataset="first")
    import_dataset(dataset.root, dataset="second")
    assert Patient.objects.count() == 1 and Case.objects.count() == 2


def test_reimport_creates_no_duplicates(dataset, media):
    dataset.add_case("C1").add_case("C2", patient="P2").write_manifest()
    import_dataset(dataset.root)
    files = stored_files(media)

    again = import_dataset(dataset.root)

    assert again.skipped == ["C1", "C2"] and not again.imported and not again.rejected
    assert Case.objects.count() == 2 and Lesion.objects.count() == 2 and SequenceVolume.objects.count() == 14
    assert stored_files(media) == files


def test_reimport_of_a_changed_case_under_the_same_name_is_rejected(dataset, media):
    dataset.add_case("C1").write_manifest()
    import_dataset(dataset.root)
    write_volume(dataset.path("C1", "LAP"), np.ones((16, 16, 12), np.int16), dataset.grid("LAP")[1])

    report = import_dataset(dataset.root)

    assert "a different case of this name was already imported" in report.rejected["C1"][0]
    assert Case.objects.count() == 1


def test_a_bad_case_does_not_stop_the_good_ones(dataset, media):
    dataset.add_case("C1").add_case("C2", patient="P2").write_manifest()
    dataset.path("C2", "ADC").unlink()

    report = import_dataset(dataset.root)

    assert report.imported == ["C1"] and list(report.rejected) == ["C2"]
    assert list(Case.objects.values_list("source_name", flat=True)) == ["C1"]
    assert len(stored_files(media)) == 14


def test_files_written_for_a_case_whose_rows_fail_are_removed(dataset, media):
    """Two imports of one case racing: the loser's database insert fails on the
    unique constraint after its files were written; its files must go."""
    dataset.add_case("C1").write_manifest()
    entry = read_manifest(dataset.root)["C1"]
    loaded = load_case(dataset.root / "C1", entry)
    store_case("race", loaded)
    files = stored_files(media)

    with pytest.raises(Exception, match="(?i)unique"):
        store_case("race", loaded)

    assert stored_files(media) == files and Case.objects.count() == 1


def test_command_prints_summary_and_fails_when_a_case_is_rejected(dataset, media, capsys):
    dataset.add_case("C1").add_case("C2", patient="P2", label="carcinoid").write_manifest()

    with pytest.raises(CommandError, match="1 case\\(s\\) rejected"):
        call_command("import_dataset", str(dataset.root), "--no-progress")

    out = capsys.readouterr().out
    assert "Imported 1 case(s) with 1 lesion(s)" in out
    assert "REJECTED C2" in out and "unknown label 'carcinoid'" in out


def test_command_succeeds_quietly_on_a_clean_dataset(dataset, media, capsys):
    dataset.add_case("C1").write_manifest()
    call_command("import_dataset", str(dataset.root), "--no-progress")
    assert "rejected 0" in capsys.readouterr().out


def test_missing_manifest_column_rejects_the_manifest(dataset, media):
    dataset.add_case("C1").write_manifest(columns=[c for c in COLUMNS if c != "split"])
    with pytest.raises(ManifestError, match="manifest.csv: missing column\\(s\\) split"):
        import_dataset(dataset.root)
    assert stored_files(media) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 101, "dataset name xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx… is 101 characters long, at most 100"),
        ("   ", "dataset name is empty"),
        ("night\nshift", r"dataset name 'night\nshift' holds unprintable characters"),
    ],
)
def test_a_dataset_name_that_cannot_be_stored_is_refused_before_anything_is_written(dataset, media, name, message):
    dataset.add_case("C1").write_manifest()
    with pytest.raises(InvalidDatasetName) as error:
        import_dataset(dataset.root, dataset=name)
    assert str(error.value) == message
    with pytest.raises(CommandError, match="dataset name"):
        call_command("import_dataset", str(dataset.root), "--dataset", name, "--no-progress")
    assert stored_files(media) == [] and not Case.objects.exists()
    import_dataset(dataset.root, dataset="x" * 100)  # the longest name that fits
    assert Case.objects.get().dataset == "x" * 100


def test_command_names_a_missing_manifest(tmp_path, media):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="manifest.csv: not found"):
        call_command("import_dataset", str(tmp_path / "empty"), "--no-progress")


def test_mask_with_a_single_value_other_than_one_is_the_lesion(dataset, media):
    dataset.add_case("C1").write_manifest()
    shape, affine = dataset.grid("PVP")
    mask = np.zeros(shape, np.uint8)
    mask[2:5, 2:5, 2:5] = 255
    write_volume(dataset.path("C1", "PVP", "L1"), mask, affine)

    import_dataset(dataset.root)

    stored = LesionMask.objects.get(sequence="PVP")
    assert stored.voxel_count == 27
    assert set(np.unique(nib.load(stored.file.path).get_fdata())) == {0.0, 1.0}


# ---- bad input: each rejects the case with a message naming the file, and writes nothing


def _rewrite(path, data, affine=None):
    write_volume(path, data, nib.load(path).affine if affine is None else affine)


def _missing_sequence(d):
    d.path("C1", "ADC").unlink()


def _extra_sequence(d):
    write_volume(d.root / "C1" / "T1_opposed_phase.nii.gz", np.zeros((4, 4, 4), np.int16), np.eye(4))


def _four_d(d):
    _rewrite(d.path("C1", "DWI"), np.zeros((12, 12, 8, 3), np.int16))


def _two_d(d):
    _rewrite(d.path("C1", "T2WI"), np.zeros((16, 16), np.int16))


def _nan_voxels(d):
    data = np.ones((16, 16, 12), np.float32)
    data[0, 0, :3] = np.nan
    _rewrite(d.path("C1", "PVP"), data)


def _inf_voxels(d):
    data = np.ones((16, 16, 12), np.float32)
    data[1, 1, 1] = np.inf
    _rewrite(d.path("C1", "LAP"), data)


def _with_pixdim(d, sequence, axis, value):
    """Rewrite a sequence as .nii with pixdim[axis] set to value and only a qform."""
    image = nib.load(d.path("C1", sequence))
    voxels = image.get_fdata().astype("<i2").tobytes("F")
    header = image.header.copy()
    header["pixdim"][axis] = value
    header.set_sform(None, code=0)
    header.set_data_offset(352)
    d.path("C1", sequence).unlink()
    (d.root / "C1" / f"{sequence}.nii").write_bytes(header.binaryblock + b"\0" * 4 + voxels)


def _zero_spacing(d):
    _with_pixdim(d, "DP", 3, 0.0)


def _negative_spacing(d):
    _with_pixdim(d, "T1WI", 1, -2.0)


def _garbage_file(d):
    d.path("C1", "LAP").write_bytes(b"this is not a NIfTI file at all" * 10)


def _truncated_gzip(d):
    path = d.path("C1", "T2WI")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _truncated_plain(d):
    raw = gzip.decompress(d.path("C1", "ADC").read_bytes())
    d.path("C1", "ADC").unlink()
    (d.root / "C1" / "ADC.nii").write_bytes(raw[: len(raw) - 100])


def _mask_shape_differs(d):
    _rewrite(d.path("C1", "DWI", "L1"), np.ones((16, 16, 8), np.uint8), d.grid("T2WI")[1])


def _mask_affine_shifted(d):
    affine = d.grid("PVP")[1].copy()
    affine[0, 3] += 1.0
    _rewrite(d.path("C1", "PVP", "L1"), nib.load(d.path("C1", "PVP", "L1")).get_fdata().astype(np.uint8), affine)


def _empty_mask(d):
    _rewrite(d.path("C1", "T2WI", "L1"), np.zeros((16, 16, 8), np.uint8))


def _two_labels(d):
    mask = np.zeros((16, 16, 8), np.uint8)
    mask[2:4, 2:4, 2:4], mask[8:10, 8:10, 4:6] = 1, 2
    _rewrite(d.path("C1", "T2WI", "L1"), mask)


def _missing_mask(d):
    d.path("C1", "DP", "L1").unlink()


def _mask_folder_without_row(d):
    (d.root / "C1" / "masks" / "L9").mkdir()


BAD_INPUTS = {
    "missing sequence": (_missing_sequence, "C1", ["C1/: missing sequence ADC"]),
    "extra sequence": (_extra_sequence, "C1", ["C1/T1_opposed_phase.nii.gz: extra file"]),
    "4-D image": (_four_d, "C1", ["C1/DWI.nii.gz: expected a 3-D image, got 4-D shape (12, 12, 8, 3)"]),
    "2-D image": (_two_d, "C1", ["C1/T2WI.nii.gz: expected a 3-D image, got 2-D"]),
    "NaN voxels": (_nan_voxels, "C1", ["C1/PVP.nii.gz: 3 NaN or infinite voxel(s)"]),
    "infinite voxel": (_inf_voxels, "C1", ["C1/LAP.nii.gz: 1 NaN or infinite voxel(s)"]),
    "zero spacing": (_zero_spacing, "C1", ["C1/DP.nii: zero or negative voxel spacing"]),
    "negative spacing": (_negative_spacing, "C1", ["C1/T1WI.nii: zero or negative voxel spacing"]),
    "unreadable file": (_garbage_file, "C1", ["C1/LAP.nii.gz: unreadable NIfTI file"]),
    "truncated gzip": (_truncated_gzip, "C1", ["C1/T2WI.nii.gz: truncated or corrupt voxel data"]),
    "truncated file": (_truncated_plain, "C1", ["C1/ADC.nii:", "truncated"]),
    "mask shape differs": (_mask_shape_differs, "C1", ["C1/masks/L1/DWI.nii.gz: mask grid (16, 16, 8) does not match"]),
    "mask affine differs": (_mask_affine_shifted, "C1", ["C1/masks/L1/PVP.nii.gz: mask grid", "does not match"]),
    "empty mask": (_empty_mask, "C1", ["C1/masks/L1/T2WI.nii.gz: empty mask"]),
    "two mask labels": (_two_labels, "C1", ["C1/masks/L1/T2WI.nii.gz: mask has 2 different non-zero labels (1, 2)"]),
    "missing mask": (_missing_mask, "C1", ["C1/masks/L1/: missing sequence DP"]),
    "mask folder without row": (_mask_folder_without_row, "C1", ["C1/masks/L9/: files without a manifest row"]),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_file_rejects_the_case_with_a_named_problem_and_writes_nothing(name, dataset, media):
    mutate, case, fragments = BAD_INPUTS[name]
    dataset.add_case("C1")
    mutate(dataset)
    dataset.write_manifest()

    report = import_dataset(dataset.root)

    problems = "\n".join(report.rejected.get(case, []))
    for fragment in fragments:
        assert fragment in problems
    assert not report.imported
    assert Case.objects.count() == 0 and Patient.objects.count() == 0 and SequenceVolume.objects.count() == 0
    assert stored_files(media) == []


BAD_ROWS = {
    "unknown label": ({"label": "carcinoid"}, "manifest.csv line 2: unknown label 'carcinoid'"),
    "non-positive diameter": ({"diameter_mm": "0"}, "manifest.csv line 2: diameter_mm must be positive"),
    "unknown split": ({"split": "validation"}, "manifest.csv line 2: split must be one of development, test"),
    "bad flag": ({"cirrhosis": "maybe"}, "manifest.csv line 2: cirrhosis must be yes or no"),
    "empty field": ({"age": ""}, "manifest.csv line 2: age is empty"),
}


@pytest.mark.parametrize("name", BAD_ROWS)
def test_bad_manifest_row_rejects_its_case(name, dataset, media):
    fields, message = BAD_ROWS[name]
    dataset.add_case("C1", **fields).write_manifest()
    report = import_dataset(dataset.root)
    assert message in report.rejected["C1"][0]
    assert Case.objects.count() == 0 and stored_files(media) == []


def test_duplicate_lesion_row_is_rejected(dataset, media):
    dataset.add_case("C1")
    dataset.write_manifest(rows=dataset.rows * 2)
    report = import_dataset(dataset.root)
    assert "manifest.csv line 3: duplicate lesion C1/L1 (first on line 2)" in report.rejected["C1"]
    assert stored_files(media) == []


def test_manifest_row_without_case_folder_is_rejected(dataset, media):
    dataset.add_case("C1")
    dataset.write_manifest(rows=dataset.rows + [{**dataset.rows[0], "case": "C9", "patient": "P9"}])
    report = import_dataset(dataset.root)
    assert report.rejected == {"C9": ["manifest row(s) without files: folder C9/ not found"]}
    assert report.imported == ["C1"]


def test_case_folder_without_manifest_row_is_rejected_and_not_stored(dataset, media):
    dataset.add_case("C1").write_manifest()
    dataset.add_case("C7", patient="P7")
    report = import_dataset(dataset.root)
    assert report.rejected == {"C7": ["C7/: files without a manifest row"]}
    assert report.imported == ["C1"] and len(stored_files(media)) == 14


def test_manifest_lesion_without_masks_is_rejected(dataset, media):
    dataset.add_case("C1")
    dataset.write_manifest(rows=dataset.rows + [{**dataset.rows[0], "lesion": "L2"}])
    report = import_dataset(dataset.root)
    assert "manifest.csv line 3: row without files: C1/masks/L2/ not found" in report.rejected["C1"]
    assert stored_files(media) == []


def test_patient_split_across_development_and_test_is_rejected(dataset, media):
    dataset.add_case("C1", patient="P1").add_case("C2", patient="P1", split="test").write_manifest()
    report = import_dataset(dataset.root)
    assert set(report.rejected) == {"C1", "C2"}
    assert "patient P1 has lesions in both development and test" in report.rejected["C2"][0]


def test_rows_of_one_case_must_agree(dataset, media):
    dataset.add_case("C1", lesions=(("L1", "HCC"), ("L2", "cyst")))
    dataset.rows[1]["scanner_model"] = "TrioTim"
    dataset.write_manifest()
    report = import_dataset(dataset.root)
    assert "manifest.csv line 3: scanner_model disagree(s) with earlier rows of case C1" in report.rejected["C1"]
