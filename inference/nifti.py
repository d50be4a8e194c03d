"""NIfTI input and output with the checks every importer and loader needs.

Reads files from any writer (nibabel, SimpleITK, dcm2niix, 3D Slicer): sform
takes precedence over qform (nibabel's ``affine``), ``scl_slope``/``scl_inter``
are applied, any byte order and integer type is accepted, and trailing singleton
dimensions (X, Y, Z, 1) are squeezed. Writes clean files whose header holds the
geometry and nothing else.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE_TOLERANCE_MM = 0.01
"""Largest difference (mm, per affine entry) at which two grids count as the same."""


class VolumeError(ValueError):
    """A NIfTI file that cannot be used, with the file and the problem named."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Volume:
    """A 3-D image: voxel array (i, j, k) and its voxel-to-world affine (mm, RAS+)."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k: the lengths of the affine's columns."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def same_grid(self, other: Volume) -> bool:
        """True when both volumes have the same shape and affine within tolerance."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, rtol=0, atol=AFFINE_TOLERANCE_MM)
        )


def load_volume(path: Path | str, *, label: str | None = None) -> Volume:
    """Read and check a 3-D NIfTI image; ``label`` is the name used in errors.

    Raises VolumeError for an unreadable or truncated file, an image that is not
    3-D after squeezing trailing singleton axes, zero or negative voxel spacing,
    and NaN or infinite voxels.
    """
    name = label or str(path)
    try:
        image = nib.load(str(path))
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise VolumeError(name, f"unreadable NIfTI file ({exc})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(name, f"not a NIfTI image ({type(image).__name__})")

    shape = tuple(image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeError(name, f"expected a 3-D image, got {len(shape)}-D shape {tuple(image.shape)}")

    zooms = _stored_pixdim(path, type(image.header))
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if min(zooms) <= 0 or not np.all(spacing > 0) or not np.all(np.isfinite(affine)):
        raise VolumeError(name, f"zero or negative voxel spacing {tuple(zooms)} mm")

    try:
        data = np.asanyarray(image.dataobj).reshape(shape)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise VolumeError(name, f"truncated or corrupt voxel data ({exc})") from None
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise VolumeError(name, f"{bad} NaN or infinite voxel(s)")
    return Volume(data=data, affine=affine)


def _stored_pixdim(path: Path | str, header_class) -> list[float]:
    """Voxel sizes as written in the file: nibabel silently replaces zero and
    negative pixdim on load, so the raw header is read without its fixes."""
    with nib.openers.ImageOpener(str(path)) as handle:
        block = handle.read(header_class.template_dtype.itemsize)
    return [float(z) for z in header_class(block, check=False)["pixdim"][1:4]]


def write_volume(path: Path | str, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a clean NIfTI-1 file: geometry in both sform and qform (code 1,
    scanner), units mm, and no free text (descrip, aux_file, db_name, intent_name
    stay empty). A ``.nii.gz`` suffix compresses."""
    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    image.to_filename(str(path))
