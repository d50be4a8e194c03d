"""DICOM series into 3-D stacks: geometry (checked against SimpleITK's reading of the same files), splitting
a series into phases, rescaling, and the geometry problems named."""

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEGLSLossless, RLELossless
from scipy.spatial.transform import Rotation

from readerstudy.cases.dicom.frames import DicomFileError
from readerstudy.cases.dicom.series import scan_folder
from tests.dicom_builder import ExamWriter, Identity

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def oblique_volume(shape=(12, 10, 6), spacing=(1.5, 2.0, 4.0)) -> nib.Nifti1Image:
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("zx", [20, 10], degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = (-30.5, 12.25, -80.0)
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    return nib.Nifti1Image(data, affine)


@pytest.fixture
def writer(tmp_path):
    return ExamWriter(tmp_path / "exam", "Siemens", Identity("T", 50, "F"))


def only_stacks(root):
    scan = scan_folder(root)
    assert not scan.problems
    (exam,) = scan.exams.values()
    return exam.stacks


def sitk_affine(folder) -> np.ndarray:
    """SimpleITK's (GDCM's) voxel-to-RAS affine of a classic series folder."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


def test_an_oblique_series_keeps_its_grid_and_voxels_and_agrees_with_simpleitk(writer, tmp_path):
    volume = oblique_volume()
    writer.classic(3, "t2_tse_tra", volume, slices=[4, 1, 5, 0, 3, 2])  # files in any order

    (stack,) = only_stacks(tmp_path)
    loaded = stack.load()

    assert stack.shape == volume.shape and not stack.problems
    np.testing.assert_allclose(stack.affine, volume.affine, atol=1e-4)
    np.testing.assert_allclose(stack.affine, sitk_affine(tmp_path / "exam" / "003"), atol=1e-4)
    assert loaded.data.dtype == np.int16 and np.array_equal(loaded.data, np.asarray(volume.dataobj))


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless])
def test_compressed_files_are_decoded(syntax, writer, tmp_path):
    volume = oblique_volume()
    writer.classic(3, "t2", volume)
    for path in (tmp_path / "exam" / "003").iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    assert np.array_equal(only_stacks(tmp_path)[0].load().data, np.asarray(volume.dataobj))


def test_phases_with_per_slice_times_are_split_by_acquisition_time(writer, tmp_path):
    volume = oblique_volume()

    def slice_time(start):
        def extra(ds, k):
            ds.AcquisitionTime = f"1000{start + k:02d}.5"

        return extra

    writer.classic(7, "t1_fl2d_dyn", volume, extra=slice_time(0))
    writer.classic(7, "t1_fl2d_dyn", volume, extra=slice_time(40), first_instance=101)

    stacks = only_stacks(tmp_path)

    assert [(s.id, s.shape, s.problems) for s in stacks] == [("7:t1", volume.shape, []), ("7:t2", volume.shape, [])]
    assert stacks[1].time_s - stacks[0].time_s == pytest.approx(40)


def test_rescaled_pixels_become_float_values(writer, tmp_path):
    def rescale(ds, k):
        ds.RescaleSlope, ds.RescaleIntercept = 0.5, -10

    volume = oblique_volume()
    writer.classic(8, "ADC", volume, extra=rescale)
    loaded = only_stacks(tmp_path)[0].load()
    assert loaded.data.dtype == np.float32
    np.testing.assert_allclose(loaded.data, np.asarray(volume.dataobj) * 0.5 - 10)


def test_a_single_slice_is_as_thick_as_its_slice(writer, tmp_path):
    volume = oblique_volume(shape=(12, 10, 1))
    writer.classic(9, "t2", volume)
    (stack,) = only_stacks(tmp_path)
    np.testing.assert_allclose(stack.affine, volume.affine, atol=1e-4)


def test_repeated_positions_without_a_separating_tag_are_a_problem(writer, tmp_path):
    volume = oblique_volume()
    writer.classic(7, "vibe", volume)
    writer.classic(7, "vibe", volume, first_instance=101)
    (stack,) = only_stacks(tmp_path)
    assert stack.problems == [
        "each slice position occurs 2 times and no tag (TemporalPositionIdentifier/Index, TriggerTime, "
        "AcquisitionNumber, AcquisitionTime) separates them into volumes"
    ]


def test_a_phase_with_a_missing_slice_is_a_problem(writer, tmp_path):
    volume = oblique_volume()

    def phase(n):
        def extra(ds, k):
            ds.TemporalPositionIdentifier = n

        return extra

    writer.classic(7, "vibe", volume, extra=phase(1))
    writer.classic(7, "vibe", volume, extra=phase(2), first_instance=101, slices=range(5))
    (stack,) = only_stacks(tmp_path)
    assert stack.problems == [
        "slice positions repeat unequally often (1 position(s) × 1, 5 position(s) × 2): a phase with missing slices?"
    ]


def test_a_slice_off_the_stack_line_is_a_problem(writer, tmp_path):
    volume = oblique_volume()

    def shift(ds, k):
        if k == 2:  # 3 mm along the rows
            row = ds.ImageOrientationPatient[:3]
            ds.ImagePositionPatient = [v + 3 * c for v, c in zip(ds.ImagePositionPatient, row, strict=True)]

    writer.classic(3, "t2", volume, extra=shift)
    (stack,) = only_stacks(tmp_path)
    assert stack.problems == ["slices are not stacked along their normal (off by up to 3.00 mm)"]


def test_burned_in_annotation_is_refused(writer, tmp_path):
    def burned(ds, k):
        ds.BurnedInAnnotation = "YES"

    writer.classic(3, "t2", oblique_volume(), extra=burned)
    (stack,) = only_stacks(tmp_path)
    assert stack.problems == ["BurnedInAnnotation is YES: the pixels may show identifying text"]


def test_truncated_pixel_data_names_the_file(writer, tmp_path):
    writer.classic(3, "t2", oblique_volume())
    path = tmp_path / "exam" / "003" / "0003.dcm"
    path.write_bytes(path.read_bytes()[:-50])
    (stack,) = only_stacks(tmp_path)
    with pytest.raises(DicomFileError, match="003/0003.dcm: cannot decode pixel data"):
        stack.load()


def test_images_without_geometry_make_an_unusable_series_and_other_objects_are_ignored(writer, tmp_path):
    writer.classic(3, "t2", oblique_volume())
    capture = pydicom.dcmread(tmp_path / "exam" / "003" / "0001.dcm")
    del capture.ImagePositionPatient
    capture.SeriesInstanceUID, capture.SeriesNumber, capture.SeriesDescription = "1.2.3.4", 99, "Dose report"
    capture.save_as(tmp_path / "exam" / "capture.dcm")
    (tmp_path / "exam" / "notes.txt").write_text("not DICOM")

    stacks = only_stacks(tmp_path)

    assert [s.id for s in stacks] == ["3", "99"]
    assert "image without usable plane geometry" in stacks[1].problems[0]
