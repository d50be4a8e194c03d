"""DICOM import end to end: three vendors' exams from the phantom cohort through ``import_dicom`` (propose, then
import with the mapping file), geometry against the phantom, de-identification of every stored byte, pseudonyms,
idempotency, confirmation, and every failure with its message and nothing stored."""

import gzip
import io
import json
import shutil
import tempfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command

from inference.domain import SEQUENCES, class_index
from readerstudy.audit.models import AuditEvent
from readerstudy.cases.anonymise import patient_key
from readerstudy.cases.dicom.exam_import import WHOLE_FOLDER, import_exams, plan_import
from readerstudy.cases.models import Case, Lesion, Patient
from tests.conftest import stored_files
from tests.dicom_builder import (
    PHANTOM_CASES,
    ExamWriter,
    Identity,
    labels_for,
    phantom_cohort,
    phantom_rows,
    write_ge,
    write_siemens,
    write_vendor_exams,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return phantom_cohort(tmp_path_factory)


@pytest.fixture(scope="module")
def written(cohort, tmp_path_factory):
    """The three vendors' exams, written once; tests that change files work on a copy (``exams``)."""
    root = tmp_path_factory.mktemp("dicom") / "export"
    return root, write_vendor_exams(root, cohort)


@pytest.fixture
def exams(written, tmp_path):
    root, exams = written
    copy = tmp_path / "export"
    shutil.copytree(root, copy)
    for exam in exams.values():
        exam.folder = copy / exam.folder.name
    return copy, exams


def _import(root, labels, tmp_path, *, edit=None, dataset="dicom"):
    """Propose, optionally edit the mapping file, then import with it (the command's two steps)."""
    proposal = tmp_path / "mapping.json"
    call_command("import_dicom", str(root), "--manifest", str(labels), "--propose", str(proposal), stdout=io.StringIO())
    if edit:
        document = json.loads(proposal.read_text())
        edit(document)
        proposal.write_text(json.dumps(document))
    out = io.StringIO()
    call_command(
        "import_dicom",
        str(root),
        "--manifest",
        str(labels),
        "--mapping",
        str(proposal),
        "--dataset",
        dataset,
        stdout=out,
    )
    return out.getvalue()


def test_three_vendors_import_as_the_phantom_cases_on_their_grids(written, cohort, media, tmp_path):
    root, exams = written
    labels = labels_for(tmp_path / "labels.csv", cohort, exams)

    summary = _import(root, labels, tmp_path)

    assert "Imported 3 case(s)" in summary and Case.objects.count() == 3
    rows = phantom_rows(cohort)
    for vendor, exam in exams.items():
        case_dir = cohort / PHANTOM_CASES[vendor]
        row = rows[PHANTOM_CASES[vendor]][0]
        case = Case.objects.get(source_name=plan_import(exam.folder, labels).plans.popitem()[0])
        assert (case.scanner_vendor, case.scanner_model) == (vendor, row["scanner_model"])
        assert float(case.field_strength_t) == float(row["field_strength_t"])
        assert (case.patient.age, case.patient.sex) == (int(row["age"]), row["sex"])
        for volume in case.volumes.all():
            phantom = nib.load(case_dir / f"{volume.sequence}.nii.gz")
            stored = nib.load(volume.file.path)
            assert stored.shape == phantom.shape, (vendor, volume.sequence)
            np.testing.assert_allclose(stored.affine, phantom.affine, atol=1e-3, err_msg=f"{vendor} {volume.sequence}")
            assert np.array_equal(np.asarray(stored.dataobj), np.asarray(phantom.dataobj)), (vendor, volume.sequence)
        for lesion in case.lesions.all():
            row = next(r for r in rows[PHANTOM_CASES[vendor]] if r["lesion"] == lesion.source_name)
            assert (lesion.label, lesion.diameter_mm) == (class_index(row["label"]), float(row["diameter_mm"]))
            for mask in lesion.masks.all():
                phantom = nib.load(case_dir / "masks" / lesion.source_name / f"{mask.sequence}.nii.gz")
                same = np.array_equal(
                    np.asarray(nib.load(mask.file.path).dataobj) != 0, np.asarray(phantom.dataobj) != 0
                )
                assert same, (vendor, lesion.source_name, mask.sequence)
            assert lesion.masks.count() == 7


def test_the_mapping_file_shows_each_choice_with_its_reason(written, cohort, tmp_path):
    root, exams = written
    labels = labels_for(tmp_path / "labels.csv", cohort, exams)
    call_command(
        "import_dicom",
        str(root),
        "--manifest",
        str(labels),
        "--propose",
        str(tmp_path / "m.json"),
        stdout=io.StringIO(),
    )
    document = json.loads((tmp_path / "m.json").read_text())
    by_study = {exam["study"]: exam for exam in document["exams"].values()}
    for vendor, exam in exams.items():
        proposed = by_study[exam.study_uid]
        assert proposed["mapping"] == exam.expected, vendor
        assert not proposed["problems"] and set(proposed["reasons"]) == set(SEQUENCES)
    siemens = by_study[exams["Siemens"].study_uid]
    assert "fat-suppressed" in siemens["reasons"]["T2WI"] and siemens["notes"]["2"] == "passed over: not fat-suppressed"
    assert "b = 800" in siemens["reasons"]["DWI"] and "+180 s after the first post-contrast" in siemens["reasons"]["DP"]
    assert by_study[exams["GE"].study_uid]["notes"]["4"] == "passed over: not axial"
    assert by_study[exams["Philips"].study_uid]["reasons"]["T1WI"].endswith("named pre-contrast")


def test_nothing_identifying_survives_in_any_stored_byte(exams, cohort, media, tmp_path, monkeypatch):
    root, exams = exams
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    labels = labels_for(tmp_path / "labels.csv", cohort, exams, study_key="accession")

    _import(root, labels, tmp_path)

    assert Case.objects.count() == 3 and not list(scratch.iterdir())  # the converted layout is gone
    stored = [
        gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes() for p in stored_files(media)
    ]
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    haystack = [dump.getvalue().encode().lower(), *(b.lower() for b in stored)]
    for exam in exams.values():
        for secret in exam.secrets:
            found = [n for n, blob in enumerate(haystack) if secret.lower().encode() in blob]
            assert not found, (exam.vendor, secret, found)
    for exam in exams.values():
        uid = pydicom.dcmread(next(exam.folder.rglob("*.dcm"))).PatientID
        assert Patient.objects.filter(key=patient_key(uid)).count() == 1


def test_same_patient_gets_the_same_pseudonym_and_a_reimport_is_skipped(written, cohort, media, tmp_path):
    root, exams = written
    labels = labels_for(tmp_path / "labels.csv", cohort, exams)
    _import(root, labels, tmp_path, dataset="first")
    summary = _import(root, labels, tmp_path, dataset="first")
    assert "skipped 3 already imported" in summary
    _import(root, labels, tmp_path, dataset="second")
    assert Patient.objects.count() == 3 and Case.objects.count() == 6
    events = AuditEvent.objects.filter(action=AuditEvent.Action.CASE_IMPORTED, summary__contains="from DICOM")
    assert events.count() == 6 and all(e.after["corrected"] == [] for e in events)


def _two_fat_suppressed_t2(cohort, folder):
    """A Siemens exam with a second, identical fat-suppressed T2 series (4): T2WI is ambiguous."""
    exam = write_siemens(cohort / "C0002", folder, Identity("SI", 62, "M"))
    writer = ExamWriter(exam.folder, "Siemens", exam.identity, study_uid=exam.study_uid)
    writer.classic(4, "t2_tse_fs_tra", nib.load(cohort / "C0002" / "T2WI.nii.gz"))
    return exam


def test_an_ambiguous_sequence_chosen_in_the_mapping_file_is_imported_and_audited(cohort, media, tmp_path):
    exam = _two_fat_suppressed_t2(cohort, tmp_path / "x" / "si")
    labels = labels_for(tmp_path / "labels.csv", cohort, {"Siemens": exam})

    def choose(series):
        def edit(document):
            (proposed,) = document["exams"].values()
            assert proposed["mapping"]["T2WI"] is None and "two or more candidates for T2WI" in proposed["problems"][0]
            proposed["mapping"]["T2WI"] = series

        return edit

    with pytest.raises(CommandError):  # the T2 mask (a SEG on series 3) then lies on no mapped series
        _import(tmp_path / "x", labels, tmp_path, edit=choose("2"))
    assert not Case.objects.exists()
    _import(tmp_path / "x", labels, tmp_path, edit=choose("3"))

    event = AuditEvent.objects.get(summary__contains="from DICOM")
    assert event.after["corrected"] == ["T2WI"] and event.after["mapping"]["T2WI"] == "3"
    assert "corrected for T2WI" in event.summary and event.object_id == Case.objects.get().public_id


def test_a_mask_on_a_series_the_admin_unmapped_is_named(cohort, media, tmp_path):
    exam = _two_fat_suppressed_t2(cohort, tmp_path / "x" / "si")
    labels = labels_for(tmp_path / "labels.csv", cohort, {"Siemens": exam})
    dicom_import = plan_import(tmp_path / "x", labels)
    (name,) = dicom_import.plans
    report = import_exams(dicom_import, {name: {**exam.expected, "T2WI": "4"}}, "dicom")
    assert report.rejected[name] == [
        "si/seg090.dcm: segment 'L1' lies on series 3 't2_tse_fs_tra', which is mapped to no sequence"
    ]


def test_without_a_mapping_the_command_refuses_and_says_how(written, cohort, media, tmp_path):
    root, exams = written
    labels = labels_for(tmp_path / "labels.csv", cohort, exams)
    with pytest.raises(CommandError, match="--propose mapping.json.*--mapping mapping.json"):
        call_command("import_dicom", str(root), "--manifest", str(labels), stdin=io.StringIO("y\n"))
    assert not Case.objects.exists()


def test_a_dataset_name_that_cannot_be_stored_stops_the_command_before_any_work(tmp_path):
    with pytest.raises(CommandError, match="dataset name x+… is 101 characters long, at most 100"):
        call_command("import_dicom", str(tmp_path), "--manifest", str(tmp_path / "labels.csv"), "--dataset", "x" * 101)
    assert not Case.objects.exists()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_at_a_terminal_each_exam_is_confirmed_or_corrected(written, cohort, media, tmp_path):
    root, exams = written
    labels = labels_for(tmp_path / "labels.csv", cohort, exams)
    plans = plan_import(root, labels).plans
    order = [next(v for v, e in exams.items() if e.study_uid == plans[n].exam.study_uid) for n in sorted(plans)]
    answers = {"GE": "y\n", "Philips": "n\n", "Siemens": "e\n" + "\n" * 7 + "y\n"}  # Siemens: edited, kept
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 exam"):
        call_command(
            "import_dicom",
            str(root),
            "--manifest",
            str(labels),
            stdin=Terminal("".join(answers[v] for v in order)),
            stdout=out,
        )

    assert "T2WI ← 3" in out.getvalue() and "Import with this mapping?" in out.getvalue()
    assert sorted(Case.objects.values_list("scanner_vendor", flat=True)) == ["GE", "Siemens"]
    assert "  T2WI [3]: " in out.getvalue() and "no confirmed mapping" in out.getvalue()


def _rejected(root, labels, *messages):
    """Import with the proposed mappings; the (only) exam is rejected with all ``messages``; nothing stored."""
    dicom_import = plan_import(root, labels)
    proposed = {name: dict(plan.proposal.mapping) for name, plan in dicom_import.plans.items()}
    report = import_exams(dicom_import, proposed, "dicom")
    problems = "\n".join(p for ps in report.rejected.values() for p in ps)
    for message in messages:
        assert message in problems, problems
    assert not report.imported and not Case.objects.exists() and not Lesion.objects.exists()
    return problems


def test_missing_phase_stops_the_exam(cohort, media, tmp_path):
    exam = write_ge(cohort / "C0001", tmp_path / "x" / "ge", Identity("GE", 45, "F"), phases=SEQUENCES[3:6])
    labels = labels_for(tmp_path / "labels.csv", cohort, {"GE": exam})
    _rejected(tmp_path / "x", labels, "missing DP: the first series 120-600 s after the first post-contrast one")
    assert not stored_files(media)
    (refused,) = AuditEvent.objects.filter(action=AuditEvent.Action.CASE_REJECTED)
    assert refused.object_id.split("/")[1].startswith("dicom-") and "1 problem(s)" in refused.summary


def test_two_candidates_for_one_sequence_stop_the_exam(cohort, media, tmp_path):
    exam = _two_fat_suppressed_t2(cohort, tmp_path / "x" / "si")
    labels = labels_for(tmp_path / "labels.csv", cohort, {"Siemens": exam})
    _rejected(
        tmp_path / "x",
        labels,
        "two or more candidates for T2WI: series 3 't2_tse_fs_tra', series 4 "
        "'t2_tse_fs_tra' (all axial T2 with the same fat suppression)",
    )


def test_inconsistent_slice_spacing_stops_the_exam(exams, cohort, media, tmp_path):
    root, exams = exams
    for vendor in ("GE", "Philips"):
        shutil.rmtree(exams[vendor].folder)
    (exams["Siemens"].folder / "003" / "0002.dcm").unlink()  # a middle slice of the fat-suppressed T2
    labels = labels_for(tmp_path / "labels.csv", cohort, {"Siemens": exams["Siemens"]})
    thickness = nib.load(cohort / "C0002" / "T2WI.nii.gz").header.get_zooms()[2]
    _rejected(
        root,
        labels,
        "T2WI: series 3 't2_tse_fs_tra': inconsistent slice spacing: gaps between slices "
        f"range from {thickness:.2f} to {2 * thickness:.2f} mm",
    )


def test_mixed_orientations_stop_the_exam(exams, cohort, media, tmp_path):
    root, exams = exams
    for vendor in ("GE", "Philips"):
        shutil.rmtree(exams[vendor].folder)
    path = exams["Siemens"].folder / "006" / "0102.dcm"  # one b = 800 slice, tilted
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, -0.6]
    ds.save_as(path)
    labels = labels_for(tmp_path / "labels.csv", cohort, {"Siemens": exams["Siemens"]})
    _rejected(
        root,
        labels,
        "DWI: series 6:b800 'ep2d_diff_b50_800_tra': mixed orientations: 2 different ImageOrientationPatient",
    )


def test_an_unreadable_file_or_a_stray_labels_row_stops_the_whole_folder(exams, cohort, media, tmp_path):
    root, exams = exams
    (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 7)
    labels = labels_for(tmp_path / "labels.csv", cohort, exams)
    with labels.open("a") as handle:
        handle.write("1.2.3.999,L1,cyst,10,test,no,no\n")
    stray = "labels.csv line(s) 5: no exam with StudyInstanceUID or AccessionNumber '1.2.3.999'"
    problems = _rejected(root, labels, "broken.dcm: DICOM file without StudyInstanceUID or SeriesInstanceUID", stray)
    assert f"not imported: the folder has problems (see {WHOLE_FOLDER})" in problems


def test_a_labels_row_without_a_mask_names_its_labels_line(exams, cohort, media, tmp_path):
    root, exams = exams
    for vendor in ("GE", "Philips"):
        shutil.rmtree(exams[vendor].folder)
    labels = labels_for(tmp_path / "labels.csv", cohort, {"Siemens": exams["Siemens"]})
    with labels.open("a") as handle:
        handle.write(f"{exams['Siemens'].study_uid},L9,cyst,10,development,yes,no\n")
    problems = _rejected(root, labels, "labels.csv line 3: row without files")
    assert "manifest.csv" not in problems and "MRN-" not in problems
