"""NIfTI input and output with the checks every importer and loader needs.

Reads files from any writer (nibabel, SimpleITK, dcm2niix, 3D Slicer): sform
takes precedence over qform (nibabel's ``affine``), ``scl_slope``/``scl_inter``
are applied, any byte order and integer type is accepted, and trailing singleton
dimensions (X, Y, Z, 1) are squeezed. Writes clean files whose header holds the
geometry and nothing else.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

AFFINE_TOLERANCE_MM = 0.01
"""Largest difference (mm, per affine entry) at which two grids count as the same."""
MAX_VOXELS = 512**3
"""Most voxels accepted in one image (about 134 million; beyond any MRI series): a header claiming more is
refused before a byte of voxel data is read or allocated."""
MAX_HEADER_BYTES = 64 << 20
"""Most bytes of header and extensions accepted before the voxel data (``vox_offset``, 64 MiB)."""
VOXEL_TYPES = ("uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64")
"""Stored voxel types accepted; complex, RGB(A), 1-bit, 64-bit integer and 128-bit types are refused."""
SINGULAR_TOLERANCE = 1e-6
"""An affine is singular when |det| of its 3×3 part is below this fraction of the product of its spacings
(i.e. the voxel axes span almost no volume)."""


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

    Raises VolumeError for a path that is not a regular file; an unreadable or
    unacceptable header (``_checked_shape``: refused before any voxel is read);
    a gzip stream that is truncated, corrupt or fails its CRC; voxel data
    shorter or longer than the header's shape × type; zero, negative or
    non-finite voxel spacing; a non-finite or singular affine; and NaN or
    infinite voxels.
    """
    name = label or str(path)
    path = Path(path)
    image = _open_image(path, name)
    shape = _checked_shape(image, name)
    voxel_bytes = math.prod(image.shape) * image.header.get_data_dtype().itemsize
    image = _whole_image(path, image, image.dataobj.offset + voxel_bytes, name)
    affine = _checked_affine(path, image, name)

    try:
        data = np.asanyarray(image.dataobj).reshape(shape)
    except (OSError, EOFError, zlib.error, ValueError, HeaderDataError) as exc:
        raise VolumeError(name, f"truncated or corrupt voxel data ({exc})") from None
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise VolumeError(name, f"{bad} NaN or infinite voxel(s)")
    return Volume(data=data, affine=affine)


def _checked_shape(image, name: str) -> tuple[int, int, int]:
    """The 3-D shape from the header alone (trailing singleton axes squeezed), refused for a zero or negative
    dimension, more than MAX_VOXELS voxels, a voxel type outside VOXEL_TYPES or more than MAX_HEADER_BYTES
    before the voxels."""
    header_shape = tuple(int(n) for n in image.shape)
    if not header_shape or min(header_shape) < 1:
        raise VolumeError(name, f"zero or negative dimension in shape {header_shape}")
    voxels = math.prod(header_shape)
    if voxels > MAX_VOXELS:
        raise VolumeError(name, f"header claims {voxels:,} voxels (shape {header_shape}), more than {MAX_VOXELS:,}")
    shape = header_shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeError(name, f"expected a 3-D image, got {len(shape)}-D shape {header_shape}")
    stored_type = image.header.get_data_dtype()
    if stored_type.name not in VOXEL_TYPES:
        raise VolumeError(
            name,
            f"voxel type {stored_type.name} (NIfTI datatype code {int(image.header['datatype'])}) is not accepted; "
            f"expected one of {', '.join(VOXEL_TYPES)}",
        )
    if image.dataobj.offset > MAX_HEADER_BYTES:
        raise VolumeError(name, f"voxel data said to start at byte {image.dataobj.offset:,}, past {MAX_HEADER_BYTES:,}")
    return shape


def _open_image(path: Path, name: str) -> nib.Nifti1Image | nib.Nifti2Image:
    """The image with its header read and no voxel read yet."""
    if path.is_dir():
        raise VolumeError(name, "a folder, not a NIfTI file")
    if not path.is_file():
        raise VolumeError(name, "not a regular file (missing, a broken link, a pipe or a device)")
    try:
        image = nib.load(str(path))
    except (OSError, EOFError, zlib.error, ValueError, ImageFileError, HeaderDataError) as exc:
        raise VolumeError(name, f"unreadable NIfTI file ({exc})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(name, f"not a NIfTI image ({type(image).__name__})")
    return image


def _whole_image(path: Path, image, needed: int, name: str):
    """``image`` once its file is known to hold exactly ``needed`` bytes (header, extensions and voxels)
    uncompressed; a gzip file's image is then parsed from the stream read here, so it is inflated once.

    A gzip stream is read to its end in 1 MiB chunks, so its CRC and length are
    checked (nibabel stops after the voxels and never sees a bad trailer); the
    reading stops just past ``needed``, so a stream that inflates without end is not followed.
    """
    raw = bytearray()
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                while len(raw) <= needed and (chunk := stream.read(1 << 20)):
                    raw += chunk
        except (OSError, EOFError, zlib.error) as exc:
            raise VolumeError(name, f"truncated or corrupt voxel data (gzip stream: {exc})") from None
        size = len(raw)
    else:
        size = path.stat().st_size
    if size < needed:
        raise VolumeError(name, f"truncated voxel data: {size:,} bytes where its header needs {needed:,}")
    if size > needed:
        raise VolumeError(
            name, f"more bytes than the header's shape and voxel type need ({needed:,}): wrong dimensions or type?"
        )
    return type(image).from_bytes(raw) if raw else image


def _checked_affine(path: Path, image, name: str) -> np.ndarray:
    """The voxel-to-world affine, refused when non-finite, of zero or negative spacing, or singular."""
    zooms = _stored_pixdim(path, type(image.header))
    if not all(math.isfinite(z) for z in zooms):
        raise VolumeError(name, f"non-finite voxel spacing {tuple(zooms)} mm")
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise VolumeError(name, "non-finite affine (NaN or infinite entries in the sform or qform)")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if min(zooms) <= 0 or not np.all(spacing > 0):
        raise VolumeError(name, f"zero or negative voxel spacing {tuple(zooms)} mm")
    if abs(np.linalg.det(affine[:3, :3])) < SINGULAR_TOLERANCE * np.prod(spacing):
        raise VolumeError(name, "singular affine: its voxel axes are not independent directions")
    return affine


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
