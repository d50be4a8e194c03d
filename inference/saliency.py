"""Saliency for one lesion (docs/paper.md "Interpretability"): a heat map per sequence, on that sequence's ORIGINAL
voxel grid, and how much each of the seven sequences mattered for the prediction.

Both explain the seven-way logit y_c of class c (``class_index``, or the ensemble's predicted class: the argmax of
the softmax probabilities averaged over the models), in logit units averaged over the models (the folds).

Hiding a sequence, or a part of it, sets its image channel to the sequence's background level: the median of the
patch's image channel where the blurred lesion mask is below ``BACKGROUND_MASK_LEVEL`` (the tissue around the
lesion, usually liver). The mask channel is kept: the network still knows where the lesion is, it no longer sees
what it looks like there. Up to the heads the branches are independent, so hiding part of sequence s changes only
its feature vector f_s: one forward with all seven sequences hidden at the same place yields the seven hidden
features, and each drop Δ_s = y_c(f) − y_c(f with f_s swapped for the hidden one) costs only a head evaluation.

- Importance weight of sequence s: Δ_s with the whole sequence hidden (one more patch in the lesion's own
  forward); w_s = max(Δ_s, 0) / Σ_t max(Δ_t, 0), each sequence's share of the positive evidence for class c
  (1/7 each when no sequence has any). The seed study's phase weights (docs/paper.md) ask "how much did this
  sequence matter": a
  sequence is removed, not linearised (the gradient × activation mass ranks T2WI first for HCC
  phantoms whose class is told by their enhancement, ``bench/phantom_quality.py``).
- Heat map, method "occlusion" (Zeiler & Fergus 2014): Δ_s for every cube of b³ patch voxels (b =
  ``occlusion_block``) of the grid tiling the patch, (S/b)³ forwards per model (``OCCLUSION_BATCH_VOXELS``
  bounds a forward's patches); the (S/b)³ map of max(Δ_s, 0), averaged over the models, is upsampled to the S³
  patch by MONAI's ``default_upsampler`` (trilinear, align_corners False). Each value is what the network loses
  when that place of that sequence is hidden: faithful, and as fine as b.
- Heat map, method "grad-cam" (Selvaraju et al. 2017), for when (S/b)³ forwards are too slow (``paper`` on a
  CPU): in every branch the deepest ResNet stage whose output still has spatial extent > 1 voxel
  (``grad_cam_layer``: layer4 at S = 64, a 2³ map; layer3 at S = 32; layer2 at S = 16); A = its output
  [K, n, n, n], G = ∂y_c/∂A, α_k = mean over the n³ voxels of G_k, CAM_s = ReLU(Σ_k α_k A_k) upsampled to the
  patch like the occlusion map, averaged over the models. The same numbers as MONAI ``GradCAM`` on
  ``branches.<s>.<layer>`` with an identity post-processing (tested). A 2³ map cannot outline a lesion: on the
  ``cpu`` phantoms its mass within 5 mm of the lesion equals a uniform map's (README "Saliency").
- One scale for the seven maps: divided by their common maximum, so the most telling sequence peaks at 1 and a
  sequence that did not matter stays faint, as its weight says (all-zero maps stay zero).
- Back to the original grid: a voxel v of sequence s lies at patch voxel p = P_s⁻¹ · A_s · v (P_s =
  ``patch.affines[s]``, patch voxel → world mm; A_s the volume's affine, voxel → world mm); the heat map there is the
  patch map sampled trilinearly at p (``scipy.ndimage.map_coordinates``, order 1), and 0 where p lies outside the
  patch cube [−0.5, S − 0.5]³. Only the voxels in the bounding box of the patch cube are computed.
- Max-area slice: the axial index k (third voxel axis of the original grid) with the most mask voxels (the first
  of equals).

Written by hand: MONAI ``OcclusionSensitivity`` runs the whole network per occluded patch and class and cannot
swap one branch's features, so seven sequences would cost seven times the forwards. MONAI ``GradCAM`` hooks one
target layer per call (seven full forwards and backwards, weight gradients included: ≈ 26 s per model at full width
and 64³ on 2 CPU cores, docs/machines.md); here a forward hook on each branch's stage replaces its output by a
detached leaf that requires grad, and ``torch.autograd.grad`` of y_c with respect to the seven leaves
backpropagates only through the stages above, avgpool and the heads: one forward per model serves all seven maps.
Replacing the output (rather than hooking the module's backward) also keeps MONAI's in-place ReLUs away from the
stored activations. Besides, ``GradCAM`` needs a module returning one logits tensor (ours returns two heads), its
default post-processing inverts the map, and with ``class_idx=None`` it takes each sample's own argmax, not the
ensemble's class.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.visualize.visualizer import default_upsampler
from scipy import ndimage
from torch import Tensor, nn

from inference.config import SaliencyConfig
from inference.domain import CLASSES, SEQUENCES
from inference.model import LiverLesionNet
from inference.nifti import Volume, write_volume
from inference.preprocess import Patch

STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
"""The ResNet stages of a branch, shallow to deep; ``grad_cam_layer`` picks one."""
BACKGROUND_MASK_LEVEL = 0.01
"""Patch voxels whose blurred mask is below this are background (their median is the hiding level)."""
OCCLUSION_BATCH_VOXELS = 1 << 20
"""Occluded patches per forward: this / S³ (32 at S = 32, 4 at S = 64), bounding the memory of a forward."""


@dataclass
class SequenceSaliency:
    """One sequence's saliency."""

    sequence: str
    heatmap: np.ndarray
    """float32 in [0, 1] on the sequence's ORIGINAL voxel grid (same shape as the volume); 0 outside the patch."""
    weight: float
    """Importance of this sequence for the class; the seven sum to 1."""
    max_area_slice: int
    """Axial slice index k (third voxel axis of the original grid) with the largest lesion mask area."""
    mask_slice: np.ndarray | None = None
    """bool [I, J]: the lesion mask at ``max_area_slice`` (outlined in the panel)."""


@dataclass
class Saliency:
    """Saliency of one lesion for one class."""

    predicted_class: int
    """The class explained: the ensemble's predicted seven-way class unless another was asked for."""
    sequences: list[SequenceSaliency]
    """One per sequence, in SEQUENCES order."""
    probabilities: np.ndarray | None = None
    """float [7]: seven-way softmax probabilities averaged over the models (CLASSES order), from the same pass."""
    binary_probabilities: np.ndarray | None = None
    """float [2]: (benign, malignant) softmax probabilities averaged over the models, from the same pass."""
    method: str = ""
    """How the maps were made, e.g. "occlusion of 4³-voxel cubes" or "Grad-CAM on layer3"."""
    models: int = 0
    """How many models the maps and weights are averaged over."""


@dataclass
class PatchSaliency:
    """Raw results on the patch grid, averaged over the models (before any normalisation)."""

    class_index: int
    maps: np.ndarray
    """float32 [7, S, S, S] ≥ 0: the heat maps of the method, upsampled to the patch, logit units."""
    drops: np.ndarray
    """float64 [7]: Δ_s, the drop of y_c when sequence s is hidden whole, logit units."""
    probabilities: np.ndarray
    """float64 [7]: seven-way softmax averaged over the models."""
    binary_probabilities: np.ndarray
    """float64 [2]: binary softmax averaged over the models."""
    method: str
    """How the maps were made (``Saliency.method``)."""


def _first(value) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _shrink(n: int, module: nn.Module) -> int:
    """Output length of a convolution or pooling along one axis (dilation 1)."""
    kernel, stride, padding = (_first(getattr(module, a)) for a in ("kernel_size", "stride", "padding"))
    return (n + 2 * padding - kernel) // stride + 1


def stage_extent(branch: nn.Module, size: int, stage: str) -> int:
    """Side (voxels) of ``stage``'s output in a MONAI ResNet branch for a cubic input of side ``size``, from the
    strides, kernels and paddings of the stem and of each block's main-path convolutions (no forward pass)."""
    n = _shrink(size, branch.conv1)
    if not getattr(branch, "no_max_pool", False):
        n = _shrink(n, branch.maxpool)
    for name in STAGES[: STAGES.index(stage) + 1]:
        for block in getattr(branch, name):
            for child in block.children():
                if isinstance(child, (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d)):
                    n = _shrink(n, child)
    return n


def grad_cam_layer(model: LiverLesionNet, size: int | None = None) -> str:
    """Name of the stage of each branch to hook (``model.branches[s].<name>``): the deepest of STAGES whose output
    has spatial extent > 1 for a patch of side ``size`` (default the model's ``input_size``): "layer4" at 64,
    "layer3" at 32, "layer2" at 16; "layer1" if none has."""
    size = int(model.config.input_size if size is None else size)
    branch = model.branches[0]
    return next((s for s in reversed(STAGES) if stage_extent(branch, size, s) > 1), STAGES[0])


def background_levels(array: np.ndarray) -> np.ndarray:
    """float32 [7]: per sequence, the median of the image channel over the voxels whose blurred mask is below
    ``BACKGROUND_MASK_LEVEL`` (over the whole patch if there are none)."""
    levels = []
    for image, mask in zip(array[:, 0], array[:, 1], strict=True):
        background = image[mask < BACKGROUND_MASK_LEVEL]
        levels.append(np.median(background if background.size else image))
    return np.asarray(levels, dtype=np.float32)


def hide_sequences(array: np.ndarray) -> np.ndarray:
    """A copy of the patch [7, 2, S, S, S] with every image channel set to its background level (masks kept)."""
    hidden = np.array(array, dtype=np.float32, copy=True)
    hidden[:, 0] = background_levels(array)[:, None, None, None]
    return hidden


@contextlib.contextmanager
def _evaluating(models: Sequence[nn.Module]) -> Iterator[None]:
    """Every model in eval mode with its parameters frozen for the duration (so autograd records the hooked pass
    only from the hooked stages up, not the activations below them), each back as it was afterwards."""
    modes = [model.training for model in models]
    parameters = [p for model in models for p in model.parameters()]
    trainable = [p.requires_grad for p in parameters]
    for model in models:
        model.eval().requires_grad_(False)
    try:
        yield
    finally:
        for model, training in zip(models, modes, strict=True):
            model.train(training)
        for parameter, flag in zip(parameters, trainable, strict=True):
            parameter.requires_grad_(flag)


def _drops(model: LiverLesionNet, features: Tensor, hidden: Tensor, class_index: int) -> Tensor:
    """[7, n]: Δ_s = y_c(features) − y_c(features with f_s := hidden[j, s]) for each sequence s and each of the n
    hidden feature sets; ``features`` [1, 7, F], ``hidden`` [n, 7, F] (no gradient)."""
    sequences, n = features.shape[1], hidden.shape[0]
    with torch.no_grad():
        swapped = features.expand(sequences, n, *features.shape[1:]).clone()
        every = torch.arange(sequences)
        swapped[every, :, every] = hidden.transpose(0, 1)
        y = model.heads(swapped.flatten(0, 1))[1][:, class_index].view(sequences, n)
        return model.heads(features)[1][0, class_index] - y


def _hooked_forward(model: LiverLesionNet, x: torch.Tensor, layer: str):
    """Forward that swaps each branch's ``layer`` output for a detached leaf requiring grad.

    Returns (the seven leaves [B, K, n, n, n], features [B, 7, F], seven-way logits [B, 7], binary logits [B, 2]);
    gradients of the logits reach the leaves through the rest of the branch and the heads only."""
    leaves: list[torch.Tensor] = []

    def swap(_module, _inputs, output):
        leaf = output.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    handles = [getattr(branch, layer).register_forward_hook(swap) for branch in model.branches]
    try:
        with torch.enable_grad():
            features = model.branch_features(x)
            binary, seven = model.heads(features)
    finally:
        for handle in handles:
            handle.remove()
    if len(leaves) != len(SEQUENCES):
        raise RuntimeError(f"expected {len(SEQUENCES)} hooked {layer} outputs, got {len(leaves)}")
    return leaves, features, seven, binary


def _check(models: Sequence[LiverLesionNet], array: np.ndarray, class_index: int | None) -> np.ndarray:
    if not models:
        raise ValueError("need at least one model")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 5 or array.shape[:2] != (len(SEQUENCES), 2) or len(set(array.shape[2:])) != 1:
        raise ValueError(f"expected a patch array [7, 2, S, S, S], got shape {array.shape}")
    if class_index is not None and not 0 <= int(class_index) < len(CLASSES):
        raise ValueError(f"class_index must be in 0..{len(CLASSES) - 1}, got {class_index}")
    return array


def _on_device_of(model: nn.Module, array: np.ndarray) -> Tensor:
    return torch.from_numpy(array).to(next(model.parameters()).device)


def _mean_softmax(logits: Sequence[Tensor]) -> Tensor:
    """Softmax of each model's first row, averaged over the models (float64, CPU)."""
    return torch.stack([torch.softmax(row[0].detach().double(), 0).cpu() for row in logits]).mean(0)


def _explained_class(probabilities: Tensor, class_index: int | None) -> int:
    """``class_index``, or the class of the largest mean probability when it is None."""
    return int(torch.argmax(probabilities)) if class_index is None else int(class_index)


def _upsample(cells: Tensor, size: int) -> np.ndarray:
    """[7, m, m, m] → float32 [7, S, S, S] by MONAI's ``default_upsampler`` (trilinear, align_corners False)."""
    return default_upsampler((size,) * 3)(cells[:, None].float().cpu())[:, 0].numpy().astype(np.float32)


def grad_cam_saliency(
    models: Sequence[LiverLesionNet], array: np.ndarray, *, class_index: int | None = None
) -> PatchSaliency:
    """Grad-CAM maps of all seven branches and the whole-sequence drops on one patch, averaged over ``models``:
    one hooked forward (the patch and its hidden copy) and one backward of y_c to the seven hooked stages per model.

    ``array``: float32 [7, 2, S, S, S] (``Patch.array``). ``class_index`` None = the class with the largest
    softmax probability averaged over the models. Model modes are restored afterwards."""
    array = _check(models, array, class_index)
    size = array.shape[-1]
    layer = grad_cam_layer(models[0], size)
    cams = torch.zeros((len(SEQUENCES), size, size, size))
    drops = torch.zeros(len(SEQUENCES), dtype=torch.float64)
    pair = np.stack([array, hide_sequences(array)])  # the patch and its copy with every sequence hidden
    with _evaluating(models):
        passes = [_hooked_forward(m, _on_device_of(m, pair), grad_cam_layer(m, size)) for m in models]
        probabilities = _mean_softmax([seven for _, _, seven, _ in passes])
        binary = _mean_softmax([b for _, _, _, b in passes])
        class_index = _explained_class(probabilities, class_index)
        for model, (leaves, features, seven, _) in zip(models, passes, strict=True):
            grads = torch.autograd.grad(seven[0, class_index], leaves, allow_unused=True)
            maps = []
            for activation, grad in zip(leaves, grads, strict=True):
                activation = activation[:1].detach()
                grad = torch.zeros_like(activation) if grad is None else grad[:1]
                alpha = grad.mean(dim=tuple(range(2, grad.dim())), keepdim=True)
                maps.append(torch.relu((alpha * activation).sum(1))[0])
            cams += torch.from_numpy(_upsample(torch.stack(maps), size))
            features = features.detach()
            drops += _drops(model, features[:1], features[1:], class_index)[:, 0].double().cpu()
    count = len(models)
    return PatchSaliency(
        class_index=class_index,
        maps=(cams / count).numpy().astype(np.float32),
        drops=(drops / count).numpy(),
        probabilities=probabilities.numpy(),
        binary_probabilities=binary.numpy(),
        method=f"Grad-CAM on {layer}",
    )


def occlusion_saliency(
    models: Sequence[LiverLesionNet], array: np.ndarray, *, block: int, class_index: int | None = None
) -> PatchSaliency:
    """Occlusion maps of all seven sequences and the whole-sequence drops on one patch, averaged over ``models``:
    per model one forward of the patch and its hidden copy, then (S/``block``)³ patches with all seven sequences
    hidden in one cube, ``OCCLUSION_BATCH_VOXELS`` at a time.

    ``array``: float32 [7, 2, S, S, S] (``Patch.array``); ``block`` must divide S. ``class_index`` None = the
    class with the largest softmax probability averaged over the models. Model modes are restored afterwards."""
    array = _check(models, array, class_index)
    size = array.shape[-1]
    if block < 1 or size % block:
        raise ValueError(f"occlusion block {block} must be ≥ 1 and divide the patch side {size}")
    cells = size // block
    corners = list(itertools.product(range(0, size, block), repeat=3))
    pair = np.stack([array, hide_sequences(array)])  # the patch and its copy with every sequence hidden
    levels = torch.from_numpy(pair[1, :, 0, :1, :1, :1])  # [7, 1, 1, 1]: each sequence's hiding level
    per_forward = max(1, OCCLUSION_BATCH_VOXELS // size**3)
    occluded = torch.zeros((len(SEQUENCES), len(corners)), dtype=torch.float64)
    drops = torch.zeros(len(SEQUENCES), dtype=torch.float64)
    with _evaluating(models), torch.inference_mode():
        features = [model.branch_features(_on_device_of(model, pair)) for model in models]
        heads = [model.heads(both[:1]) for model, both in zip(models, features, strict=True)]
        probabilities = _mean_softmax([seven for _, seven in heads])
        binary = _mean_softmax([b for b, _ in heads])
        class_index = _explained_class(probabilities, class_index)
        for model, both in zip(models, features, strict=True):
            drops += _drops(model, both[:1], both[1:], class_index)[:, 0].double().cpu()
            x, fill = _on_device_of(model, array), levels.to(both.device)
            for start in range(0, len(corners), per_forward):
                chunk = corners[start : start + per_forward]
                batch = x.expand(len(chunk), *x.shape).clone()
                for j, (i, k, m) in enumerate(chunk):
                    batch[j, :, 0, i : i + block, k : k + block, m : m + block] = fill
                hidden = model.branch_features(batch)
                occluded[:, start : start + len(chunk)] += _drops(model, both[:1], hidden, class_index).double().cpu()
    count = len(models)
    grid = torch.clamp(occluded / count, min=0).view(len(SEQUENCES), cells, cells, cells)
    return PatchSaliency(
        class_index=class_index,
        maps=_upsample(grid, size),
        drops=(drops / count).numpy(),
        probabilities=probabilities.numpy(),
        binary_probabilities=binary.numpy(),
        method=f"occlusion of {block}³-voxel cubes",
    )


def patch_saliency(
    models: Sequence[LiverLesionNet], array: np.ndarray, settings: SaliencyConfig, *, class_index: int | None = None
) -> PatchSaliency:
    """The maps of ``settings.method`` and the whole-sequence drops on one patch, averaged over ``models``."""
    if settings.method == "occlusion":
        return occlusion_saliency(models, array, block=settings.occlusion_block, class_index=class_index)
    return grad_cam_saliency(models, array, class_index=class_index)


def sequence_weights(drops: np.ndarray) -> np.ndarray:
    """w_s = max(Δ_s, 0) / Σ max(Δ, 0); uniform when no drop is positive. Non-negative, sums to 1."""
    positive = np.clip(np.nan_to_num(np.asarray(drops, dtype=np.float64)), 0.0, None)
    total = positive.sum()
    return positive / total if total > 0 else np.full(positive.shape, 1.0 / positive.size)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Maps divided by their common maximum (float32 in [0, 1]); all zeros if the maximum is not positive."""
    peak = float(np.max(maps)) if maps.size else 0.0
    return (np.clip(maps, 0.0, None) / peak).astype(np.float32) if peak > 0 else np.zeros(maps.shape, np.float32)


def map_to_volume(heat: np.ndarray, patch_affine: np.ndarray, volume: Volume) -> np.ndarray:
    """A patch map [S, S, S] (patch voxel → world by ``patch_affine``) on ``volume``'s voxel grid: float32 of the
    volume's shape, trilinear inside the patch cube [−0.5, S − 0.5]³ (edge values held to the cube's faces), 0
    outside it. Only the bounding box of the cube in the volume's grid is sampled."""
    heat = np.asarray(heat, dtype=np.float32)
    out = np.zeros(volume.shape, np.float32)
    to_patch = np.linalg.inv(patch_affine) @ np.asarray(volume.affine, dtype=np.float64)
    to_volume = np.linalg.inv(to_patch)
    edges = [(-0.5, n - 0.5) for n in heat.shape]
    corners = np.array(np.meshgrid(*edges, indexing="ij")).reshape(3, -1)
    reached = to_volume[:3, :3] @ corners + to_volume[:3, 3:4]
    first = np.clip(np.floor(reached.min(axis=1)).astype(int), 0, volume.shape)
    last = np.clip(np.ceil(reached.max(axis=1)).astype(int) + 1, 0, volume.shape)
    if np.any(last <= first):
        return out
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(first, last, strict=True)], indexing="ij"))
    points = np.tensordot(to_patch[:3, :3], grid.astype(np.float64), axes=1) + to_patch[:3, 3, None, None, None]
    inside = np.all((points >= -0.5) & (points <= np.reshape(heat.shape, (3, 1, 1, 1)) - 0.5), axis=0)
    sampled = ndimage.map_coordinates(heat, points, order=1, mode="nearest", prefilter=False, output=np.float32)
    region = tuple(slice(a, b) for a, b in zip(first, last, strict=True))
    out[region] = np.where(inside, np.clip(sampled, 0.0, 1.0), 0.0)
    return out


def max_area_slice(mask: Volume | np.ndarray) -> int:
    """Index k along the third voxel axis where the mask has the most non-zero voxels (the first of equals)."""
    data = mask.data if isinstance(mask, Volume) else np.asarray(mask)
    return int(np.argmax(np.count_nonzero(data, axis=(0, 1))))


def compute_saliency(
    models: Sequence[LiverLesionNet],
    patch: Patch,
    volumes: Mapping[str, Volume],
    masks: Mapping[str, Volume],
    settings: SaliencyConfig,
    *,
    class_index: int | None = None,
) -> Saliency:
    """Saliency of one lesion: ``patch`` from ``preprocess_lesion(volumes, masks, …)``; ``volumes`` and ``masks``
    map each of the seven SEQUENCES to its original image and lesion mask; ``settings`` the config's saliency
    section. ``class_index`` None = the ensemble's predicted seven-way class; maps and weights are averaged over
    ``models`` and the maps share one scale (see the module docstring)."""
    missing = [s for s in SEQUENCES if s not in volumes or s not in masks]
    if missing:
        raise ValueError(f"missing image or mask for sequence(s) {', '.join(missing)}")
    raw = patch_saliency(models, patch.array, settings, class_index=class_index)
    weights, maps = sequence_weights(raw.drops), normalise(raw.maps)
    sequences = []
    for index, sequence in enumerate(SEQUENCES):
        heat = map_to_volume(maps[index], patch.affines[index], volumes[sequence])
        k = max_area_slice(masks[sequence])
        sequences.append(
            SequenceSaliency(sequence, heat, float(weights[index]), k, np.asarray(masks[sequence].data[:, :, k] != 0))
        )
    return Saliency(
        predicted_class=raw.class_index,
        sequences=sequences,
        probabilities=raw.probabilities,
        binary_probabilities=raw.binary_probabilities,
        method=raw.method,
        models=len(models),
    )


def _view(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None) -> tuple[slice, slice]:
    """In-plane crop around the heat footprint and the mask, widened by a quarter on each side."""
    shown = heat > 0 if mask is None else (heat > 0) | mask
    if not shown.any():
        return slice(None), slice(None)
    crop = []
    for axis in (0, 1):
        hits = np.nonzero(shown.any(axis=1 - axis))[0]
        pad = max(4, (hits[-1] - hits[0] + 1) // 4)
        crop.append(slice(max(0, hits[0] - pad), min(image.shape[axis], hits[-1] + pad + 1)))
    return crop[0], crop[1]


def save_panel(saliency: Saliency, volumes: Mapping[str, Volume], path: Path) -> Path:
    """PNG of the seven sequences at their max-area slice (i across, j up; voxel aspect kept), the heat map overlaid
    (jet, opacity 0.6 × heat) and the mask outlined, titled with sequence and weight; an eighth tile plots the
    weights."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 7), dpi=100)
    axes = figure.subplots(2, 4).ravel()
    for ax, item in zip(axes, saliency.sequences, strict=False):
        volume = volumes[item.sequence]
        k = min(max(item.max_area_slice, 0), volume.shape[2] - 1)
        image, heat = np.asarray(volume.data[:, :, k], dtype=np.float32), item.heatmap[:, :, k]
        mask = None if item.mask_slice is None else np.asarray(item.mask_slice, dtype=bool)
        rows, cols = _view(image, heat, mask)
        image, heat = image[rows, cols], heat[rows, cols]
        low, high = np.percentile(image, (1, 99)) if image.size else (0.0, 1.0)
        aspect = volume.spacing[1] / volume.spacing[0]
        ax.imshow(image.T, cmap="gray", origin="lower", vmin=low, vmax=max(high, low + 1e-6), aspect=aspect)
        ax.imshow(heat.T, cmap="jet", origin="lower", vmin=0, vmax=1, alpha=0.6 * heat.T, aspect=aspect)
        if mask is not None and mask[rows, cols].any() and min(heat.shape) > 1:
            ax.contour(mask[rows, cols].T.astype(float), levels=[0.5], colors="lime", linewidths=1.0, origin="lower")
        ax.set_title(f"{item.sequence}  w = {item.weight:.2f}  (k = {k})", fontsize=10)
        ax.set_axis_off()
    bars = axes[len(SEQUENCES)]
    bars.bar(range(len(saliency.sequences)), [s.weight for s in saliency.sequences], color="tab:orange")
    bars.set_xticks(range(len(saliency.sequences)), [s.sequence for s in saliency.sequences], fontsize=8)
    bars.set_ylim(0, 1)
    bars.set_title("sequence weights", fontsize=10)
    name = CLASSES[saliency.predicted_class]
    figure.suptitle(f"Class {name}: {saliency.method}, {saliency.models} model(s)")
    figure.savefig(path, format="png")
    return path


def save_saliency(saliency: Saliency, volumes: Mapping[str, Volume], out_dir: Path) -> dict[str, Path]:
    """Write ``<SEQ>.nii.gz`` heat maps (float32, on each volume's affine), ``weights.json`` and ``panel.png`` into
    ``out_dir`` (created). Returns {sequence: heat map path, "weights": …, "panel": …}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for item in saliency.sequences:
        volume = volumes[item.sequence]
        if item.heatmap.shape != volume.shape:
            raise ValueError(
                f"{item.sequence}: heat map {item.heatmap.shape} is not on the volume's grid {volume.shape}"
            )
        paths[item.sequence] = out_dir / f"{item.sequence}.nii.gz"
        write_volume(paths[item.sequence], item.heatmap.astype(np.float32), volume.affine)
    document = {
        "predicted_class": saliency.predicted_class,
        "predicted_class_name": CLASSES[saliency.predicted_class],
        "weights": {s.sequence: s.weight for s in saliency.sequences},
        "max_area_slices": {s.sequence: s.max_area_slice for s in saliency.sequences},
        "models": saliency.models,
        "method": f"{saliency.method}, mean over models, one scale for the seven maps; weights = positive share "
        "of the class logit's drop when each sequence is hidden",
    }
    if saliency.probabilities is not None:
        document["probabilities"] = dict(zip(CLASSES, map(float, saliency.probabilities), strict=True))
    paths["weights"] = out_dir / "weights.json"
    paths["weights"].write_text(json.dumps(document, indent=2), encoding="utf-8")
    paths["panel"] = save_panel(saliency, volumes, out_dir / "panel.png")
    return paths
