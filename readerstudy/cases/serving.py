"""The one serving transform applied to every volume sent to the viewer: image, mask and heat map alike.

1. Reorient to LPS: voxel axes are permuted and flipped to point closest to Left, Posterior, Superior
   (nibabel orientations; an oblique grid stays oblique), so that Cornerstone's stack and volume views
   agree and the axial viewport shows the k slices.
2. With a field of view of F mm, crop to the voxels within F/2 mm of the lesion centre along each axis
   (the centre being the sequence's own mask centroid: the sequences are not co-registered).

Files are written as clean gzipped NIfTI-1 (geometry only in the header) and cached under
``MEDIA_ROOT/served/`` by a key of (source identity, centre, F, transform version); the key is the ETag.
An image's sidecar holds its display window, a mask's the lesion focus.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from django.conf import settings

from inference.nifti import write_volume

TRANSFORM_VERSION = "1"
LPS = nib.orientations.axcodes2ornt(("L", "P", "S"))
WINDOW_PERCENTILES = (1.0, 99.5)
"""Initial display window: these percentiles (%) of the nonzero voxels of the served image."""


@dataclass(frozen=True)
class ServedFile:
    path: Path
    etag: str
    meta: dict


def transform(image: nib.Nifti1Image, centre_mm, fov_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The served (data, affine): ``image`` reoriented to LPS and, when ``fov_mm`` is set, cropped to the
    cube of side ``fov_mm`` around ``centre_mm`` (world RAS+ mm)."""
    turn = nib.orientations.ornt_transform(nib.orientations.io_orientation(image.affine), LPS)
    image = image.as_reoriented(turn)
    if fov_mm:
        affine = image.affine
        centre = np.linalg.solve(affine, [*centre_mm, 1.0])[:3]
        half = fov_mm / 2 / np.linalg.norm(affine[:3, :3], axis=0)
        lo = np.clip(np.floor(centre - half), 0, image.shape).astype(int)
        hi = np.clip(np.ceil(centre + half) + 1, 0, image.shape).astype(int)
        hi = np.maximum(hi, lo + 1)
        image = image.slicer[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return np.asanyarray(image.dataobj), image.affine


def focus_lps(mask: np.ndarray, affine: np.ndarray) -> list[float]:
    """The lesion focus in Cornerstone's world (LPS mm): the mask's centroid on its axial (k) slice of
    largest area, where the viewer opens."""
    areas = mask.reshape(-1, mask.shape[2]).astype(bool).sum(axis=0)
    k = int(np.argmax(areas))
    i, j = np.nonzero(mask[:, :, k])
    ras = affine @ [i.mean(), j.mean(), k, 1.0]
    return [round(float(-ras[0]), 3), round(float(-ras[1]), 3), round(float(ras[2]), 3)]


def display_window(data: np.ndarray) -> list[float]:
    """[lower, upper] of the initial window: WINDOW_PERCENTILES of the nonzero voxels."""
    values = data[data != 0]
    if values.size == 0:
        return [0.0, 1.0]
    lower, upper = np.percentile(values, WINDOW_PERCENTILES)
    return [float(lower), float(max(upper, lower + 1e-3))]


def served(source: Path | str, identity: str, centre_mm, fov_mm: float | None, kind: str) -> ServedFile:
    """The served version of ``source`` (kind "image", "mask" or "heat"), made once and cached.
    ``identity`` names the source's content for good (its SHA-256, or the name of an immutable file)."""
    centre = [round(float(c), 3) for c in centre_mm]
    key = hashlib.sha256(json.dumps([TRANSFORM_VERSION, identity, centre, fov_mm, kind]).encode()).hexdigest()[:32]
    folder = Path(settings.MEDIA_ROOT) / "served" / key[:2]
    path, sidecar = folder / f"{key}.nii.gz", folder / f"{key}.json"
    if not (path.exists() and sidecar.exists()):
        data, affine = transform(nib.load(str(source)), centre, fov_mm)
        if kind == "mask":
            data = (data > 0).astype(np.uint8)
            meta = {"focus": focus_lps(data, affine)}
        else:
            meta = {"window": display_window(data)} if kind == "image" else {}
        folder.mkdir(parents=True, exist_ok=True)
        _atomic(path, lambda tmp: write_volume(tmp, data, affine), suffix=".nii.gz")
        _atomic(sidecar, lambda tmp: tmp.write_text(json.dumps(meta)), suffix=".json")
    return ServedFile(path, key, json.loads(sidecar.read_text()))


def _atomic(path: Path, write, suffix: str) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=suffix)
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
