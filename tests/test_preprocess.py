"""Per-lesion preprocessing on synthetic volumes: a sphere of known radius at a known world point, on seven
grids like the paper's (anisotropic, each sequence its own grid and its own lesion position), then rotated
(oblique) and stored LPS-like."""

from functools import cache

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from inference.domain import SEQUENCES
from inference.nifti import Volume
from inference.preprocess import INFERENCE_MARGIN_MM, TRAINING_MARGIN_MM, Patch, crop_side_mm, preprocess_lesion

CENTRE = np.array([12.0, -20.0, 30.0])
"""World point (mm, RAS+) of the lesion; each sequence adds its own offset (not co-registered)."""
OFFSETS = {s: np.array([1.5 * i - 4.0, 0.7 * i - 2.0, 1.1 * i - 3.0]) for i, s in enumerate(SEQUENCES)}
GRIDS = {  # shape, spacing (mm): small fields of view (~112 mm) with the paper's voxel sizes
    "T2WI": ((80, 80, 16), (1.4, 1.4, 7.0)),
    "DWI": ((40, 40, 16), (2.8, 2.8, 7.0)),
    "ADC": ((40, 40, 16), (2.8, 2.8, 7.0)),
    **{s: ((88, 88, 32), (1.25, 1.25, 3.5)) for s in ("T1WI", "LAP", "PVP", "DP")},
}


def rotation(degrees: float, axis: int) -> np.ndarray:
    a = np.deg2rad(degrees)
    i, j = (k for k in range(3) if k != axis)
    matrix = np.eye(3)
    matrix[i, i] = matrix[j, j] = np.cos(a)
    matrix[i, j], matrix[j, i] = -np.sin(a), np.sin(a)
    return matrix


def grid_affine(shape, spacing, centre, turn=None) -> np.ndarray:
    """A grid whose middle voxel is at ``centre``, axes turned by the rotation matrix ``turn``."""
    affine = np.eye(4)
    affine[:3, :3] = (np.eye(3) if turn is None else turn) @ np.diag(spacing)
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine


def world_of(shape, affine) -> np.ndarray:
    index = np.indices(shape).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:4]).T.reshape(*shape, 3)


def sphere(shape, affine, centre, radius) -> tuple[Volume, Volume]:
    """Image: smooth background texture plus a bright ball (soft edge), int16; mask: the ball, uint8."""
    world = world_of(shape, affine)
    distance = np.linalg.norm(world - centre, axis=-1)
    x, y, z = world[..., 0], world[..., 1], world[..., 2]  # texture with gradients: any flip or turn shows
    texture = 80 * np.sin(x / 9 + 0.4) * np.cos(y / 13 - 0.2) + 1.5 * x - 0.8 * y + 1.0 * z
    image = 300 + texture + 500 / (1 + np.exp((distance - radius) / 1.0))
    return Volume(image.astype(np.int16), affine), Volume((distance <= radius).astype(np.uint8), affine)


@cache
def case(radius: float, turn_degrees: float = 0.0) -> tuple[dict, dict]:
    """Seven sequences with a ball of ``radius`` mm at CENTRE + OFFSETS[s]; grids turned when turn_degrees ≠ 0."""
    volumes, masks = {}, {}
    turn = rotation(turn_degrees, 2) @ rotation(turn_degrees / 2, 0)
    for sequence in SEQUENCES:
        shape, spacing = GRIDS[sequence]
        affine = grid_affine(shape, spacing, CENTRE + 3.0, turn)
        volumes[sequence], masks[sequence] = sphere(shape, affine, CENTRE + OFFSETS[sequence], radius)
    return volumes, masks


def mask_centroid(mask: Volume) -> np.ndarray:
    index = np.asarray(np.nonzero(mask.data), dtype=float)
    return (mask.affine[:3, :3] @ index + mask.affine[:3, 3:4]).mean(axis=1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_shapes_dtypes_and_ranges():
    volumes, masks = case(10.0)
    patch = preprocess_lesion(volumes, masks, 20.0)
    assert isinstance(patch, Patch)
    assert patch.array.shape == (7, 2, 64, 64, 64) and patch.array.dtype == np.float32
    assert patch.masks.shape == (7, 64, 64, 64) and patch.masks.dtype == bool
    assert patch.affines.shape == (7, 4, 4) and patch.affines.dtype == np.float64
    assert patch.side_mm == 64.0
    assert patch.array.min() >= 0.0 and patch.array.max() <= 1.0
    assert patch.array[:, 0].max() > 0.9  # the bright ball reaches the top of the robust range
    small = preprocess_lesion(volumes, masks, 20.0, size=32)
    assert small.array.shape == (7, 2, 32, 32, 32) and small.masks.shape == (7, 32, 32, 32)


@pytest.mark.parametrize(
    ("radius", "diameter", "size"), [(5.0, 10.0, 64), (10.0, 20.0, 64), (10.0, 20.0, 32), (20.0, 40.0, 64)]
)
def test_sphere_keeps_its_physical_size_and_position(radius, diameter, size):
    volumes, masks = case(radius)
    patch = preprocess_lesion(volumes, masks, diameter, size=size)
    middle = (size - 1) / 2
    for index, sequence in enumerate(SEQUENCES):
        inside = patch.masks[index]
        centroid = np.argwhere(inside).mean(axis=0)
        assert np.allclose(centroid, middle, atol=0.5 + size / patch.side_mm), sequence
        expected_radius = radius * size / patch.side_mm  # patch voxels
        measured_radius = (3 * np.count_nonzero(inside) / (4 * np.pi)) ** (1 / 3)
        assert measured_radius == pytest.approx(expected_radius, rel=0.1), sequence
        affine = patch.affines[index]
        assert np.allclose(affine[:3, :3], np.eye(3) * patch.side_mm / size)
        assert np.allclose(affine @ [middle, middle, middle, 1], [*mask_centroid(masks[sequence]), 1], atol=1e-6)
        world_centroid = (affine @ [*centroid, 1])[:3]  # the ball's true centre, within half a voxel (+0.5 mm)
        half_voxel = np.array(GRIDS[sequence][1]) / 2 + 0.5
        assert np.all(np.abs(world_centroid - CENTRE - OFFSETS[sequence]) <= half_voxel), sequence
        image = patch.array[index, 0]
        assert image[inside].mean() > image[~inside].mean() + 0.3, sequence


def test_oblique_grid_gives_nearly_the_same_patch():
    straight = preprocess_lesion(*case(12.0), 24.0)
    oblique = preprocess_lesion(*case(12.0, turn_degrees=25.0), 24.0)
    assert straight.side_mm == oblique.side_mm
    for index, sequence in enumerate(SEQUENCES):
        # thick slices voxelise the ball differently once tilted (Dice ≈ 0.86 at 7 mm, 0.91 at 3.5 mm)
        assert dice(straight.masks[index], oblique.masks[index]) > 0.8, sequence
        difference = np.abs(straight.array[index] - oblique.array[index])
        # ≈ 0.01 here; a patch left on the volume's own (turned) axes differs by ≈ 0.09, a flipped one by ≈ 0.11
        assert difference[0].mean() < 0.03 and difference[1].mean() < 0.02, sequence
        assert np.allclose(straight.affines[index], oblique.affines[index], atol=1.0)


def test_lps_storage_gives_the_same_patch():
    """The same voxels stored with i and j reversed (negative x/y affine columns, as DICOM-LPS writers do)."""
    volumes, masks = case(10.0)

    def flipped(volume: Volume) -> Volume:
        affine = volume.affine.copy()
        for axis in (0, 1):
            affine[:3, 3] += affine[:3, axis] * (volume.shape[axis] - 1)
            affine[:3, axis] *= -1
        return Volume(np.ascontiguousarray(volume.data[::-1, ::-1, :]), affine)

    lps_volumes = {s: flipped(v) for s, v in volumes.items()}
    lps_masks = {s: flipped(m) for s, m in masks.items()}
    assert lps_volumes["T2WI"].affine[0, 0] < 0 and lps_volumes["T2WI"].affine[1, 1] < 0
    ras = preprocess_lesion(volumes, masks, 20.0)
    lps = preprocess_lesion(lps_volumes, lps_masks, 20.0)
    assert np.allclose(ras.affines, lps.affines, atol=1e-6)
    assert np.allclose(ras.array[:, 0], lps.array[:, 0], atol=1e-4)
    # nearest neighbour may break exact ties (a 1 mm point halfway between two voxel centres) the other way
    assert np.mean(ras.masks != lps.masks) < 1e-3
    assert np.abs(ras.array[:, 1] - lps.array[:, 1]).mean() < 1e-3


def test_crop_rule_at_its_boundaries():
    box = (40.0, 35.0, 38.0)
    assert crop_side_mm(15.9, box, 10.0) == 32.0
    assert crop_side_mm(16.0, box, 10.0) == 64.0
    assert crop_side_mm(32.0, box, 10.0) == 64.0
    assert crop_side_mm(32.1, box, 10.0) == pytest.approx(60.0)
    assert crop_side_mm(80.0, box, 5.0) == pytest.approx(50.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="diameter"):
            crop_side_mm(bad, box, 10.0)


def test_crop_rule_applied_to_a_case():
    volumes, masks = case(10.0)
    assert preprocess_lesion(volumes, masks, 15.9).side_mm == 32.0
    assert preprocess_lesion(volumes, masks, 16.0).side_mm == 64.0
    assert preprocess_lesion(volumes, masks, 32.0).side_mm == 64.0
    boxed = preprocess_lesion(volumes, masks, 32.1)
    # box: the 20 mm ball plus up to one voxel (7 mm slices), then 2 × 10 mm, rounded up to whole mm
    assert 20 + 2 * INFERENCE_MARGIN_MM <= boxed.side_mm <= 20 + 7 + 2 * INFERENCE_MARGIN_MM + 1


def test_mask_channel_is_blurred_and_masks_are_binary():
    patch = preprocess_lesion(*case(20.0), 40.0)
    assert patch.masks.dtype == bool
    blurred = patch.array[:, 1]
    for index, sequence in enumerate(SEQUENCES):
        soft = blurred[index]
        assert soft.max() > 0.99, sequence  # ≈ 1 inside a large lesion
        assert np.count_nonzero((soft > 0.05) & (soft < 0.95)) > 1000, sequence  # fractional at the edge
        steps = max(np.abs(np.diff(soft, axis=axis)).max() for axis in range(3))
        assert steps < 0.25, sequence  # smooth: σ = 2 voxels gives at most 1/(σ√(2π)) ≈ 0.2 per voxel
        core = binary_erosion(patch.masks[index], iterations=4)
        shell = binary_dilation(patch.masks[index], iterations=4)
        assert np.all(soft[core] > 0.75) and np.all(soft[~shell] < 0.25), sequence
        assert not np.array_equal(soft, patch.masks[index].astype(np.float32))


def test_training_margin_is_random_and_inference_deterministic():
    volumes, masks = case(20.0)
    sides = {preprocess_lesion(volumes, masks, 40.0, rng=np.random.default_rng(seed)).side_mm for seed in range(6)}
    assert len(sides) >= 3
    low, high = TRAINING_MARGIN_MM
    assert min(sides) >= 40 + 2 * low and max(sides) <= 40 + 7 + 2 * high + 1
    again = [preprocess_lesion(volumes, masks, 40.0, rng=np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(again[0].array, again[1].array)
    first, second = preprocess_lesion(volumes, masks, 40.0), preprocess_lesion(volumes, masks, 40.0)
    assert first.side_mm == second.side_mm
    assert np.array_equal(first.array, second.array) and np.array_equal(first.affines, second.affines)


def broken(what: str, sequence: str, change) -> tuple[dict, dict]:
    """A copy of a valid case with one image or mask changed (``change`` returns a Volume, or None to drop it)."""
    volumes, masks = (dict(d) for d in case(8.0))
    target = volumes if what == "image" else masks
    new = change(target[sequence])
    if new is None:
        del target[sequence]
    else:
        target[sequence] = new
    return volumes, masks


def with_value(value):
    def change(volume: Volume) -> Volume:
        data = volume.data.astype(np.float32)
        data[3, 4, 5] = value
        return Volume(data, volume.affine)

    return change


@pytest.mark.parametrize(
    ("what", "sequence", "change", "message"),
    [
        ("image", "ADC", lambda v: None, "missing image for sequence.*ADC"),
        ("mask", "LAP", lambda v: None, "missing mask for sequence.*LAP"),
        ("mask", "PVP", lambda v: Volume(np.zeros_like(v.data), v.affine), "PVP mask: empty"),
        ("image", "DWI", with_value(np.nan), "DWI image: 1 NaN or infinite"),
        ("image", "T1WI", with_value(np.inf), "T1WI image: 1 NaN or infinite"),
        ("mask", "DP", with_value(np.nan), "DP mask: 1 NaN or infinite"),
        ("mask", "T2WI", lambda v: Volume(v.data[:-1], v.affine), "T2WI mask: grid"),
        ("image", "DWI", lambda v: Volume(v.data[..., 0], v.affine), "DWI image: expected a non-empty 3-D"),
    ],
)
def test_malformed_input_fails_naming_the_problem(what, sequence, change, message):
    volumes, masks = broken(what, sequence, change)
    with pytest.raises(ValueError, match=message):
        preprocess_lesion(volumes, masks, 20.0)


def test_unknown_sequence_and_bad_diameter_fail():
    volumes, masks = case(8.0)
    with pytest.raises(ValueError, match="unknown sequence.*T2"):
        preprocess_lesion({**volumes, "T2": volumes["T2WI"]}, masks, 20.0)
    for bad in (0.0, -5.0, float("nan"), float("inf"), None):
        with pytest.raises(ValueError, match="diameter_mm must be a positive finite number"):
            preprocess_lesion(volumes, masks, bad)
