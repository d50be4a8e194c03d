"""Saliency: occlusion and Grad-CAM maps per sequence on the original grids, the weights of hidden sequences, the
brute-force and MONAI cross-checks, and the files written."""

import json
import math
import struct

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.visualize import GradCAM

from inference.config import ModelConfig, SaliencyConfig
from inference.dataset import load_case
from inference.domain import SEQUENCES
from inference.manifest import read_manifest
from inference.model import LiverLesionNet, SevenWayLogits
from inference.nifti import Volume
from inference.phantoms import make_cohort
from inference.preprocess import preprocess_lesion
from inference.saliency import (
    background_levels,
    compute_saliency,
    grad_cam_layer,
    grad_cam_saliency,
    hide_sequences,
    map_to_volume,
    max_area_slice,
    normalise,
    occlusion_saliency,
    patch_saliency,
    save_saliency,
    sequence_weights,
)

SIZE = 32
CENTRE = np.array([6.0, -4.0, 10.0])  # lesion centre, world mm
RADIUS = 9.0  # mm: diameter 18 → 64 mm crop
OCCLUSION = SaliencyConfig("occlusion", 8)
GRAD_CAM = SaliencyConfig("grad-cam", 8)
GRIDS = {  # spacing (mm), rotation about z (degrees), LPS-style flip of i and j
    "T2WI": ((1.4, 1.4, 5.0), 0.0, False),
    "DWI": ((2.6, 2.6, 6.0), 12.0, False),
    "ADC": ((2.6, 2.6, 6.0), 12.0, True),
    "T1WI": ((1.6, 1.9, 3.0), -8.0, False),
    "LAP": ((1.2, 1.2, 2.5), 25.0, True),
    "PVP": ((1.8, 1.5, 4.0), 0.0, True),
    "DP": ((1.5, 1.5, 3.5), -30.0, False),
}


def tiny_model(size=SIZE, seed=0) -> LiverLesionNet:
    torch.manual_seed(seed)
    return LiverLesionNet(ModelConfig(name="tiny", input_size=size, widen_factor=0.125, head_hidden=16, dropout=0.0))


def make_volume(spacing, degrees, flip, shift, rng) -> tuple[Volume, Volume]:
    """A 100 mm field of view on an oblique, anisotropic grid, off-centre from the lesion; image and mask."""
    t = math.radians(degrees)
    rotation = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    if flip:
        rotation = rotation @ np.diag([-1.0, -1.0, 1.0])
    shape = tuple(int(math.ceil(100.0 / s)) for s in spacing)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = CENTRE + shift - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    index = np.indices(shape).reshape(3, -1).astype(float)
    world = (affine[:3, :3] @ index + affine[:3, 3:4]).T.reshape(*shape, 3)
    distance = np.linalg.norm(world - CENTRE, axis=-1)
    image = 100.0 + 10.0 * rng.standard_normal(shape) + 300.0 * (distance <= RADIUS)
    return Volume(image.astype(np.float32), affine), Volume((distance <= RADIUS).astype(np.uint8), affine)


@pytest.fixture(scope="module")
def lesion():
    rng = np.random.default_rng(1)
    volumes, masks = {}, {}
    for n, (sequence, (spacing, degrees, flip)) in enumerate(GRIDS.items()):
        shift = np.array([-10.0 + 3 * n, 7.0 - 2 * n, 3.0])
        volumes[sequence], masks[sequence] = make_volume(spacing, degrees, flip, shift, rng)
    return volumes, masks, preprocess_lesion(volumes, masks, 2 * RADIUS, size=SIZE)


def test_layer_is_the_deepest_with_spatial_extent():
    assert grad_cam_layer(tiny_model(64)) == "layer4"  # 2³ map
    assert grad_cam_layer(tiny_model(32)) == "layer3"  # layer4 is 1³
    assert grad_cam_layer(tiny_model(32), 64) == "layer4"
    assert grad_cam_layer(tiny_model(32), 16) == "layer2"


@pytest.mark.parametrize(("size", "checked"), [(32, 7), (64, 2)])  # at 64 the two strongest branches, for time
def test_one_pass_equals_monai_grad_cam_per_branch(size, checked):
    model = tiny_model(size, seed=3)
    array = np.random.default_rng(2).random((7, 2, size, size, size), dtype=np.float32)
    ours = grad_cam_saliency([model], array, class_index=2)
    layer = grad_cam_layer(model, size)
    x = torch.from_numpy(array.reshape(1, 14, size, size, size))
    assert np.count_nonzero(ours.maps.max(axis=(1, 2, 3)) > 0) >= 2
    for index in np.argsort(-ours.maps.max(axis=(1, 2, 3)), kind="stable")[:checked]:
        cam = GradCAM(SevenWayLogits(model), f"model.branches.{index}.{layer}", postprocessing=lambda t: t)
        reference = cam(x, class_idx=2)[0, 0].detach().numpy()
        np.testing.assert_allclose(ours.maps[index], reference, rtol=1e-4, atol=1e-6 * max(reference.max(), 1e-3))
    assert ours.maps.shape == (7, size, size, size) and ours.method == f"Grad-CAM on {layer}"


def seven_way_logit(model, array, class_index) -> float:
    with torch.no_grad():
        return float(model.eval()(torch.from_numpy(array[None]))[1][0, class_index])


def test_hiding_sets_the_image_to_the_median_around_the_lesion_and_keeps_the_mask(lesion):
    _, _, patch = lesion
    hidden = hide_sequences(patch.array)
    np.testing.assert_array_equal(hidden[:, 1], patch.array[:, 1])
    for index in range(7):
        background = patch.array[index, 0][patch.array[index, 1] < 0.01]
        assert 1000 < background.size < patch.array[index, 0].size
        assert np.all(hidden[index, 0] == np.median(background))
    np.testing.assert_allclose(background_levels(patch.array), hidden[:, 0, 0, 0, 0])


def test_weights_and_occlusion_maps_equal_brute_force_forwards(lesion):
    """Hiding one sequence (or one cube of it) in a full forward gives the drops the feature swap computes."""
    _, _, patch = lesion
    model, array, c = tiny_model(seed=12), patch.array, 3
    y = seven_way_logit(model, array, c)
    whole = occlusion_saliency([model], array, block=SIZE, class_index=c)
    half = occlusion_saliency([model], array, block=SIZE // 2, class_index=c)
    levels = background_levels(array)
    compared = []
    for index in range(7):
        hidden = array.copy()
        hidden[index, 0] = levels[index]
        drop = y - seven_way_logit(model, hidden, c)
        assert whole.drops[index] == pytest.approx(drop, rel=1e-4, abs=1e-5)
        np.testing.assert_allclose(whole.maps[index], max(drop, 0.0), rtol=1e-4, atol=1e-5)  # one cube: constant
        for corner in (slice(0, SIZE // 2), slice(SIZE // 2, SIZE)):
            cube = array.copy()
            cube[index, 0, corner, corner, corner] = levels[index]
            drop = y - seven_way_logit(model, cube, c)
            voxel = 0 if corner.start == 0 else SIZE - 1  # the outer corner voxel holds its cube's value
            assert half.maps[index, voxel, voxel, voxel] == pytest.approx(max(drop, 0.0), rel=1e-4, abs=1e-5)
            compared.append(drop)
    assert max(compared) > 0 and min(compared) < 0  # both signs were checked
    np.testing.assert_allclose(half.drops, whole.drops, rtol=1e-6)
    assert half.method == f"occlusion of {SIZE // 2}³-voxel cubes"


def test_a_sequence_the_network_ignores_gets_no_weight_and_no_heat(lesion):
    _, _, patch = lesion
    model = tiny_model(seed=13)
    features = model.feature_size
    dwi = SEQUENCES.index("DWI")
    first = len(("LAP", "PVP", "DP")) * features + dwi * features  # f_DWI's first column in F_all
    with torch.no_grad():
        kept = model.seven_way_head[0].weight[:, first : first + features].clone()
        model.seven_way_head[0].weight.zero_()
        model.seven_way_head[0].weight[:, first : first + features] = kept
    # a class for which DWI is evidence (hiding it lowers the logit), so the weight check is never the uniform case
    c = next(c for c in range(7) if patch_saliency([model], patch.array, GRAD_CAM, class_index=c).drops[dwi] > 0)
    for settings in (OCCLUSION, GRAD_CAM):
        raw = patch_saliency([model], patch.array, settings, class_index=c)
        others = [i for i in range(7) if i != dwi]
        assert np.abs(raw.maps[others]).max() < 1e-6 and np.abs(raw.drops[others]).max() < 1e-6, settings.method
        assert sequence_weights(raw.drops)[dwi] == 1.0 and raw.maps[dwi].max() > 0, settings.method


@pytest.mark.parametrize("settings", [OCCLUSION, GRAD_CAM], ids=lambda s: s.method)
def test_maps_average_over_models_before_normalisation(lesion, settings):
    _, _, patch = lesion
    first, second = tiny_model(seed=4), tiny_model(seed=5)
    both = patch_saliency([first, second], patch.array, settings, class_index=4)
    one, two = (patch_saliency([m], patch.array, settings, class_index=4) for m in (first, second))
    np.testing.assert_allclose(both.drops, (one.drops + two.drops) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(both.probabilities, (one.probabilities + two.probabilities) / 2, rtol=1e-6)
    if settings.method == "grad-cam":
        np.testing.assert_allclose(both.maps, (one.maps + two.maps) / 2, rtol=1e-5, atol=1e-9)
    else:  # the positive part of the mean drop: never more than the mean of the positive parts
        assert np.all(both.maps <= (one.maps + two.maps) / 2 + 1e-6)
        assert both.maps.max() > 0


@pytest.mark.parametrize("settings", [OCCLUSION, GRAD_CAM], ids=lambda s: s.method)
def test_default_class_is_the_ensemble_argmax_and_modes_and_gradients_are_restored(lesion, settings):
    _, _, patch = lesion
    models = [tiny_model(seed=6), tiny_model(seed=7)]
    models[0].eval()
    models[1].train()
    frozen = models[1].branches[2].conv1.weight.requires_grad_(False)
    result = patch_saliency(models, patch.array, settings)
    assert result.class_index == int(np.argmax(result.probabilities))
    assert math.isclose(result.probabilities.sum(), 1.0, rel_tol=1e-6)
    assert not models[0].training and models[1].training
    assert not frozen.requires_grad and sum(not p.requires_grad for m in models for p in m.parameters()) == 1
    with pytest.raises(ValueError, match="class_index"):
        patch_saliency(models, patch.array, settings, class_index=7)
    with pytest.raises(ValueError, match="at least one model"):
        patch_saliency([], patch.array, settings)
    with pytest.raises(ValueError, match="occlusion block 5 must be ≥ 1 and divide the patch side 32"):
        occlusion_saliency(models, patch.array, block=5)


def test_heat_maps_lie_on_each_original_grid_and_vanish_outside_the_patch(lesion):
    volumes, masks, patch = lesion
    saliency = compute_saliency([tiny_model(seed=8)], patch, volumes, masks, OCCLUSION)
    assert [s.sequence for s in saliency.sequences] == list(SEQUENCES)
    assert saliency.method == "occlusion of 8³-voxel cubes" and saliency.models == 1
    assert any(s.heatmap.max() > 0 for s in saliency.sequences)
    half_diagonal = patch.side_mm * math.sqrt(3) / 2
    for index, item in enumerate(saliency.sequences):
        volume = volumes[item.sequence]
        assert item.heatmap.shape == volume.shape and item.heatmap.dtype == np.float32
        assert item.heatmap.min() >= 0 and item.heatmap.max() <= 1
        world = np.einsum("ij,jxyz->xyzi", volume.affine[:3, :3], np.indices(volume.shape)) + volume.affine[:3, 3]
        centre = patch.affines[index][:3, :3] @ ((np.array([SIZE] * 3) - 1) / 2) + patch.affines[index][:3, 3]
        far = np.linalg.norm(world - centre, axis=-1) > half_diagonal + max(volume.spacing)
        assert far.any() and not item.heatmap[far].any()
        counts = [int(np.count_nonzero(masks[item.sequence].data[:, :, k])) for k in range(volume.shape[2])]
        assert counts[item.max_area_slice] == max(counts)
        np.testing.assert_array_equal(item.mask_slice, masks[item.sequence].data[:, :, item.max_area_slice] != 0)
    weights = np.array([s.weight for s in saliency.sequences])
    assert np.all(weights >= 0) and math.isclose(weights.sum(), 1.0, rel_tol=1e-9)


def test_a_patch_peak_maps_back_to_its_world_position(lesion):
    volumes, masks, patch = lesion
    grid = np.indices((SIZE,) * 3).astype(float)
    for index, sequence in enumerate(SEQUENCES):
        volume, affine = volumes[sequence], patch.affines[index]
        mask_world = volume.affine[:3, :3] @ np.nonzero(masks[sequence].data) + volume.affine[:3, 3:4]
        for peak in ((np.array([SIZE] * 3) - 1) / 2, np.array([9.0, 21.0, 13.0])):
            blob = np.exp(-np.sum((grid - peak[:, None, None, None]) ** 2, axis=0) / (2 * 2.0**2))
            mapped = map_to_volume(blob, affine, volume)
            found = volume.affine[:3, :3] @ np.unravel_index(np.argmax(mapped), volume.shape) + volume.affine[:3, 3]
            expected = affine[:3, :3] @ peak + affine[:3, 3]
            assert np.linalg.norm(found - expected) <= np.linalg.norm(volume.spacing) / 2 + 0.5, sequence
        # the patch centre is the mask centroid: a centred peak lands on the lesion
        assert (
            np.linalg.norm(affine[:3, :3] @ ((np.array([SIZE] * 3) - 1) / 2) + affine[:3, 3] - mask_world.mean(1))
            < 1e-6
        )
        assert np.linalg.norm(mask_world.mean(1) - CENTRE) < max(volume.spacing)


def test_weights_are_the_positive_share_and_maps_share_one_scale():
    np.testing.assert_allclose(
        sequence_weights(np.array([2.0, -1.0, 1.0, 0, 0, 0, 1.0])), [0.5, 0, 0.25, 0, 0, 0, 0.25]
    )
    np.testing.assert_allclose(sequence_weights(-np.ones(7)), np.full(7, 1 / 7))
    assert normalise(np.zeros((2, 2, 2))).max() == 0
    assert normalise(np.array([[0.0, 2.0], [1.0, 4.0]])).tolist() == [[0.0, 0.5], [0.25, 1.0]]


def test_max_area_slice_is_the_first_largest():
    mask = np.zeros((5, 5, 4), bool)
    mask[1:3, 1:3, 1] = True
    mask[0:4, 0:3, 2] = True
    mask[0:3, 0:4, 3] = True
    assert max_area_slice(mask) == 2
    assert max_area_slice(Volume(mask.astype(np.uint8), np.eye(4))) == 2


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_save_writes_nifti_on_each_affine_json_and_panel(lesion, tmp_path):
    volumes, masks, patch = lesion
    saliency = compute_saliency([tiny_model(seed=9)], patch, volumes, masks, GRAD_CAM, class_index=1)
    paths = save_saliency(saliency, volumes, tmp_path / "out")
    assert set(paths) == {*SEQUENCES, "weights", "panel"}
    for item in saliency.sequences:
        image = nib.load(str(paths[item.sequence]))
        np.testing.assert_allclose(image.affine, volumes[item.sequence].affine, atol=1e-5)
        np.testing.assert_allclose(np.asarray(image.dataobj), item.heatmap)
    document = json.loads(paths["weights"].read_text())
    assert document["predicted_class"] == 1 and document["predicted_class_name"] == "FNH"
    assert math.isclose(sum(document["weights"].values()), 1.0, rel_tol=1e-9)
    assert document["max_area_slices"] == {s.sequence: s.max_area_slice for s in saliency.sequences}
    assert document["method"].startswith("Grad-CAM on layer3, mean over models, one scale for the seven maps")
    width, height = png_size(paths["panel"])
    assert width >= 800 and height >= 400


def test_phantom_case_end_to_end(tmp_path):
    make_cohort(tmp_path / "cohort", lesions_per_class=1, matrix_scale=0.25)
    name, entry = next(iter(read_manifest(tmp_path / "cohort").items()))
    case = load_case(tmp_path / "cohort" / name, entry)
    lesion = entry.lesions[0]
    masks = case.masks[lesion.name]
    patch = preprocess_lesion(case.volumes, masks, lesion.diameter_mm, size=SIZE)
    saliency = compute_saliency([tiny_model(seed=10), tiny_model(seed=11)], patch, case.volumes, masks, OCCLUSION)
    assert saliency.models == 2 and 0 <= saliency.predicted_class < 7
    for item in saliency.sequences:
        assert item.heatmap.shape == case.volumes[item.sequence].shape
    paths = save_saliency(saliency, case.volumes, tmp_path / "saliency")
    assert all(p.exists() for p in paths.values())
