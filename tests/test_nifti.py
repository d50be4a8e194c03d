"""NIfTI files from other writers load with the right geometry and values."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from inference.nifti import load_volume, write_volume


def _affine(spacing, origin, rotation_deg=0.0):
    theta = np.deg2rad(rotation_deg)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def test_sform_takes_precedence_over_qform(tmp_path):
    qform, sform = _affine((1, 1, 3), (0, 0, 0)), _affine((1.5, 1.5, 4), (-100, -90, 20), rotation_deg=10)
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None)
    image.set_qform(qform, code=1)
    image.set_sform(sform, code=2)
    image.to_filename(tmp_path / "both.nii.gz")
    assert np.allclose(load_volume(tmp_path / "both.nii.gz").affine, sform)


def test_qform_is_used_when_sform_is_unset(tmp_path):
    qform = _affine((0.8, 0.8, 3), (-150, -120, -60), rotation_deg=-15)
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None)
    image.set_qform(qform, code=1)
    image.set_sform(None, code=0)
    image.to_filename(tmp_path / "qform.nii")
    volume = load_volume(tmp_path / "qform.nii")
    assert np.allclose(volume.affine, qform, atol=1e-4)
    assert volume.spacing == pytest.approx((0.8, 0.8, 3.0), abs=1e-5)


def test_scl_slope_and_inter_are_applied(tmp_path):
    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(2.5, -10.0)
    image.to_filename(tmp_path / "scaled.nii")
    volume = load_volume(tmp_path / "scaled.nii")
    assert np.allclose(volume.data, raw * 2.5 - 10.0)


def test_big_endian_uint16_reads_as_native_values(tmp_path):
    data = np.array([[[0, 1, 65535], [256, 4095, 1000]]], dtype=np.uint16)
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(">u2")
    nib.Nifti1Image(data.astype(">u2"), np.eye(4), header).to_filename(tmp_path / "be.nii")
    assert (tmp_path / "be.nii").read_bytes()[:4] == (348).to_bytes(4, "big")
    volume = load_volume(tmp_path / "be.nii")
    assert volume.data.dtype.isnative and volume.data.dtype.kind == "u"
    assert np.array_equal(volume.data, data)


def test_trailing_singleton_dimension_is_squeezed(tmp_path):
    data = np.random.default_rng(0).integers(0, 100, (5, 6, 7, 1)).astype(np.int16)
    nib.Nifti1Image(data, np.eye(4)).to_filename(tmp_path / "xyz1.nii.gz")
    volume = load_volume(tmp_path / "xyz1.nii.gz")
    assert volume.shape == (5, 6, 7) and np.array_equal(volume.data, data[..., 0])


def test_simpleitk_file_has_the_same_world_geometry(tmp_path):
    """SimpleITK stores LPS; nibabel's affine is RAS+: x and y flip sign."""
    array_zyx = np.random.default_rng(1).integers(0, 1000, (6, 5, 4)).astype(np.int16)
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing((0.9, 1.1, 5.0))
    image.SetOrigin((120.0, 80.0, -40.0))
    c, s = np.cos(np.deg2rad(12)), np.sin(np.deg2rad(12))
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "sitk.nii.gz"))

    volume = load_volume(tmp_path / "sitk.nii.gz")

    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    assert np.allclose(volume.affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
    assert np.array_equal(volume.data, array_zyx.transpose(2, 1, 0))
    # a voxel's world position agrees with SimpleITK's own, up to LPS → RAS
    ras = volume.affine @ np.array([3, 2, 1, 1.0])
    assert np.allclose(ras[:3] * [-1, -1, 1], image.TransformIndexToPhysicalPoint((3, 2, 1)), atol=1e-4)


def test_simpleitk_float_file_with_four_dims_of_one(tmp_path):
    array = np.ones((1, 3, 4, 5), np.float32)  # t, z, y, x
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(tmp_path / "t1.nii"))
    assert load_volume(tmp_path / "t1.nii").shape == (5, 4, 3)


def test_write_volume_round_trips_an_oblique_grid_and_stores_no_free_text(tmp_path):
    affine = _affine((1.4, 1.4, 7.0), (-200, -180, -90), rotation_deg=20)
    data = np.random.default_rng(2).integers(-5, 500, (8, 9, 10)).astype(np.int16)
    write_volume(tmp_path / "out.nii.gz", data, affine)
    volume = load_volume(tmp_path / "out.nii.gz")
    assert np.allclose(volume.affine, affine, atol=1e-4) and np.array_equal(volume.data, data)
    header = nib.load(tmp_path / "out.nii.gz").header
    assert header["descrip"].item() == b"" and header["sform_code"] == 1 and header["qform_code"] == 1
