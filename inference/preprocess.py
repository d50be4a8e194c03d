"""Per-lesion preprocessing, docs/paper.md "Preprocessing" steps 2-5: seven sequences → one float32
[7, 2, S, S, S] patch.

Each sequence is processed with its own mask (the sequences are not co-registered):

1. Resample to 1 mm, only the crop: a cube of edge n = ceil(L) mm (L from ``crop_side_mm``; the box rule's edge is
   rounded up to whole mm so the 1 mm grid tiles the cube) centred on the mask centroid c (world mm) and aligned
   with the world RAS+ axes, sampled at c + (m − (n − 1)/2) mm, m = 0 … n − 1, per axis. Image trilinear, mask
   nearest neighbour; outside the volume the image is 0 (after step 2) and the mask empty.
2. Intensities: lo, hi = 0.5th and 99.5th percentiles of the whole volume's voxels (a fixed-seed sample of 2^18 of
   them in larger volumes); I' = clip((I − lo) / (hi − lo), 0, 1). All voxels of a volume have the same size, so
   these are the percentiles of the volume resampled to 1 mm too; the clip follows the interpolation.
3. Resize the n³ cube to S³ (trilinear image, nearest mask; voxel centres kept centred, align_corners False).
4. Channel 1: the resized mask Gaussian-blurred with σ = S/32 patch voxels (2 voxels = side_mm/32 mm at S = 64),
   zero outside the patch, not renormalised (≈ 1 inside lesions wider than ~3σ, ≈ 0.5 on the outline).

Because the grid is world-aligned, all seven patches share one orientation whatever the acquisition (oblique,
anisotropic, LPS-stored): patch axes i, j, k point to +R, +A, +S.

Image interpolation is trilinear, not nearest: the seed study's "nearest neighbour" is kept for masks, but for images
with 6-8 mm slices nearest neighbour turns each slice into a block of identical 1 mm slices with hard steps whose
spacing depends on the protocol; trilinear is a convex combination of neighbours (no overshoot, unlike cubic, which
also costs ~15x more: docs/machines.md) and is the interpolation the paper uses for the image resize in step 5.

Written by hand because MONAI lacks it: resampling only the crop on a world-aligned grid (MONAI ``Spacing`` resamples
the whole volume on its own axes, ~30x slower for 7 sequences; ``scipy.ndimage.affine_transform`` computes only the
n³ output points, with an explicit order). The blur is ``scipy.ndimage.gaussian_filter``: MONAI ``GaussianSmooth``
gave the same result 4-9x slower on 2 CPU cores (0.18-0.38 s vs 0.04 s for 7×64³). MONAI ``Resize`` does step 3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from monai.transforms import Resize
from scipy import ndimage

from inference.domain import MEDIUM_LESION_MM, SEQUENCES, SMALL_LESION_MM
from inference.nifti import Volume

PATCH_SIZE = 64
"""S, the patch edge in voxels (64 in the paper)."""
SMALL_CUBE_MM = 32.0
MEDIUM_CUBE_MM = 64.0
INFERENCE_MARGIN_MM = 10.0
"""Margin (mm) added on each side of the lesion box at inference (box rule only)."""
TRAINING_MARGIN_MM = (5.0, 20.0)
"""Training margin (mm): uniform in [low, high), one draw per lesion, the same for all seven sequences."""
PERCENTILES = (0.5, 99.5)
"""Robust intensity range (percent): these percentiles map to 0 and 1."""
PERCENTILE_SAMPLE = 1 << 18
"""Volumes with more voxels than this use this many voxels drawn with a fixed seed for the percentiles
(the percentile of 262 144 samples is within ~0.03 percentile points of the exact one); smaller volumes use all."""
GRID_MM = 1.0
"""Step of the intermediate isotropic grid (mm), docs/paper.md step 2."""
IMAGE_ORDER = 1
"""Spline order of the image resampling: 1 = trilinear (see the module docstring)."""
MASK_SIGMA_FRACTION = 1.0 / 32.0
"""σ of the mask blur as a fraction of S: σ = S/32 patch voxels = side_mm/32 mm."""


@dataclass(frozen=True)
class Patch:
    """One lesion, preprocessed.

    array: float32 [7, 2, S, S, S]; [:, 0] image in [0, 1], [:, 1] Gaussian-blurred mask in [0, 1].
    masks: bool [7, S, S, S], the un-blurred lesion mask per sequence in the patch.
    affines: float64 [7, 4, 4], patch voxel (i, j, k) → world mm (RAS+) per sequence: diag(side_mm/S) and the
    patch centre ((S − 1)/2, …) at that sequence's mask centroid.
    side_mm: edge of the cubic crop in mm (the same for all seven sequences).
    """

    array: np.ndarray
    masks: np.ndarray
    affines: np.ndarray
    side_mm: float


def crop_side_mm(diameter_mm: float, box_mm: Sequence[float], margin_mm: float) -> float:
    """Edge (mm) of the crop cube for a lesion of ``diameter_mm``.

    d < 16 → 32; 16 ≤ d ≤ 32 → 64 (both boundaries belong to the middle class: 15.9 → 32, 16 → 64, 32 → 64);
    d > 32 → max(box_mm) + 2·margin_mm, box_mm being the lesion's extent (mm) along each world axis.
    """
    if not math.isfinite(diameter_mm) or diameter_mm <= 0:
        raise ValueError(f"diameter_mm must be a positive finite number, got {diameter_mm!r}")
    if diameter_mm < SMALL_LESION_MM:
        return SMALL_CUBE_MM
    if diameter_mm <= MEDIUM_LESION_MM:
        return MEDIUM_CUBE_MM
    return float(max(box_mm)) + 2.0 * float(margin_mm)


def _checked(volumes: Mapping[str, Volume], masks: Mapping[str, Volume]) -> None:
    """ValueError naming the sequence for a missing, unknown, malformed or empty input."""
    for what, given in (("image", volumes), ("mask", masks)):
        missing = [s for s in SEQUENCES if s not in given]
        if missing:
            raise ValueError(f"missing {what} for sequence(s) {', '.join(missing)} (expected {', '.join(SEQUENCES)})")
        unknown = [s for s in given if s not in SEQUENCES]
        if unknown:
            raise ValueError(f"unknown sequence(s) {', '.join(map(str, unknown))} in {what}s")
    for sequence in SEQUENCES:
        image, mask = volumes[sequence], masks[sequence]
        for what, volume in (("image", image), ("mask", mask)):
            if np.ndim(volume.data) != 3 or 0 in volume.data.shape:
                raise ValueError(f"{sequence} {what}: expected a non-empty 3-D array, not shape {volume.data.shape}")
            affine = np.asarray(volume.affine, dtype=np.float64)
            if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
                raise ValueError(f"{sequence} {what}: affine must be a finite, invertible 4×4 matrix")
            if np.issubdtype(volume.data.dtype, np.floating) and not np.all(np.isfinite(volume.data)):
                bad = int(np.count_nonzero(~np.isfinite(volume.data)))
                raise ValueError(f"{sequence} {what}: {bad} NaN or infinite voxel(s)")
        if not mask.same_grid(image):
            raise ValueError(f"{sequence} mask: grid {mask.shape} does not match its image's grid {image.shape}")
        if not np.any(mask.data):
            raise ValueError(f"{sequence} mask: empty (no non-zero voxel)")


def _intensity_range(data: np.ndarray) -> tuple[float, float]:
    """(lo, hi) = PERCENTILES of the voxels (sampled above PERCENTILE_SAMPLE voxels); min/max if they coincide."""
    flat = data.reshape(-1)
    if flat.size > PERCENTILE_SAMPLE:
        flat = flat[np.random.default_rng(0).integers(0, flat.size, PERCENTILE_SAMPLE)]
    lo, hi = (float(v) for v in np.percentile(flat, PERCENTILES))
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max())
    return lo, hi


def _lesion_geometry(mask: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World centroid c (mm) of the mask voxel centres, and the lesion's world box (low, high corners, mm): the
    voxel centres' extent widened by half a voxel's extent along each world axis, ½·Σ_j |A_ij| along axis i."""
    index = np.asarray(np.nonzero(mask.data), dtype=np.float64)
    world = mask.affine[:3, :3] @ index + mask.affine[:3, 3:4]
    half_voxel = np.abs(mask.affine[:3, :3]).sum(axis=1) / 2.0
    return world.mean(axis=1), world.min(axis=1) - half_voxel, world.max(axis=1) + half_voxel


def _resample(volume: Volume, data: np.ndarray, start: np.ndarray, shape, order: int, cval: float, dtype):
    """``data`` (on ``volume``'s grid) sampled on the world-aligned 1 mm grid of ``shape`` whose point 0 is at
    ``start`` (world mm): output voxel m ↦ world w = start + m·GRID_MM ↦ input voxel A⁻¹(w − t); points outside
    the volume get ``cval``. Only the input block around the output (+1 voxel) is read, as float32."""
    inverse = np.linalg.inv(volume.affine[:3, :3]) * GRID_MM
    offset = inverse @ ((start - volume.affine[:3, 3]) / GRID_MM)
    corners = np.array(np.meshgrid(*[(0, k - 1) for k in shape], indexing="ij")).reshape(3, -1)
    reached = inverse @ corners + offset[:, None]
    first = np.clip(np.floor(reached.min(axis=1)).astype(int) - 1, 0, volume.shape)
    last = np.clip(np.ceil(reached.max(axis=1)).astype(int) + 2, 0, volume.shape)
    if np.any(last <= first):  # the grid lies wholly outside the volume
        return np.full(tuple(shape), cval, dtype)
    block = np.asarray(data[tuple(slice(a, b) for a, b in zip(first, last, strict=True))], dtype=np.float32)
    return ndimage.affine_transform(
        block,
        inverse,
        offset - first,
        output_shape=tuple(shape),
        output=dtype,
        order=order,
        mode="constant",
        cval=cval,
        prefilter=False,
    )


def preprocess_lesion(
    volumes: Mapping[str, Volume],
    masks: Mapping[str, Volume],
    diameter_mm: float,
    *,
    size: int = PATCH_SIZE,
    rng: np.random.Generator | None = None,
) -> Patch:
    """Preprocess one lesion: ``volumes`` and ``masks`` map each of the seven SEQUENCES to a Volume, each mask on
    its sequence's grid; ``diameter_mm`` is the lesion's largest diameter (manifest) and picks the crop rule.

    rng None = inference: margin INFERENCE_MARGIN_MM (deterministic). An rng = training: margin uniform in
    TRAINING_MARGIN_MM, one draw per call (drawn whatever the diameter, so the rng stream does not depend on it).
    The box of the box rule is the element-wise largest of the seven masks' world boxes, so one side_mm fits all.
    Raises ValueError naming the sequence and the problem for malformed input.
    """
    try:
        diameter = float(diameter_mm)
    except (TypeError, ValueError):
        diameter = math.nan
    if not math.isfinite(diameter) or diameter <= 0:
        raise ValueError(f"diameter_mm must be a positive finite number, got {diameter_mm!r}")
    if not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an integer ≥ 2, got {size!r}")
    _checked(volumes, masks)
    margin = INFERENCE_MARGIN_MM if rng is None else float(rng.uniform(*TRAINING_MARGIN_MM))

    geometry = {s: _lesion_geometry(masks[s]) for s in SEQUENCES}
    box = np.max([high - low for _, low, high in geometry.values()], axis=0)
    n = max(1, math.ceil(crop_side_mm(diameter, box, margin) / GRID_MM - 1e-9))
    side = n * GRID_MM  # the box rule's edge rounded up to whole grid steps, so the 1 mm grid tiles the cube

    images = np.empty((len(SEQUENCES), n, n, n), np.float32)
    cubes = np.zeros((len(SEQUENCES), n, n, n), np.uint8)
    affines = np.zeros((len(SEQUENCES), 4, 4))
    step = side / size
    for index, sequence in enumerate(SEQUENCES):
        volume, mask = volumes[sequence], masks[sequence]
        centre, low, high = geometry[sequence]
        start = centre - (n - 1) / 2.0 * GRID_MM  # world mm of 1 mm grid point (0, 0, 0)
        lo, hi = _intensity_range(volume.data)
        raw = _resample(volume, volume.data, start, (n, n, n), IMAGE_ORDER, lo, np.float32)
        images[index] = np.clip((raw - lo) / (hi - lo), 0.0, 1.0) if hi > lo else 0.0
        # The mask only within the lesion's box (+1 grid step): nearest neighbour is 0 everywhere else.
        first = np.clip(np.floor((low - start) / GRID_MM).astype(int) - 1, 0, n)
        last = np.clip(np.ceil((high - start) / GRID_MM).astype(int) + 2, 0, n)
        if np.all(last > first):
            region = tuple(slice(a, b) for a, b in zip(first, last, strict=True))
            sub = _resample(mask, mask.data, start + first * GRID_MM, last - first, 0, 0, np.float32)
            cubes[(index, *region)] = sub != 0
        affines[index] = np.diag([step, step, step, 1.0])
        affines[index, :3, 3] = centre - side / 2.0 + step / 2.0

    if n != size:
        images = np.asarray(Resize((size,) * 3, mode="trilinear")(images).numpy(), dtype=np.float32)
        cubes = np.asarray(Resize((size,) * 3, mode="nearest-exact")(cubes.astype(np.float32)).numpy())
    binary = cubes > 0.5
    sigma = size * MASK_SIGMA_FRACTION
    blurred = ndimage.gaussian_filter(binary.astype(np.float32), (0, sigma, sigma, sigma), mode="constant")

    array = np.empty((len(SEQUENCES), 2, size, size, size), np.float32)
    array[:, 0] = np.clip(images, 0.0, 1.0)
    array[:, 1] = np.clip(blurred, 0.0, 1.0)
    return Patch(array=array, masks=binary, affines=affines, side_mm=float(side))
