"""Saliency for one lesion (PAPER.md "Interpretability"): a class-activation heat map per sequence, on that
sequence's ORIGINAL voxel grid, and how much each of the seven sequences mattered for the prediction.

Method, for the seven-way logit y_c of class c (``class_index``, or the ensemble's predicted class: the argmax of
the softmax probabilities averaged over the models):

- Layer (``grad_cam_layer``): in every branch, the deepest ResNet stage whose output still has spatial extent > 1
  voxel for the patch side S: layer4 at S = 64 (a 2³ map), layer3 at S = 32 (layer4 is 1³ there, and Grad-CAM on a
  1³ map is a constant), layer2 at S = 16.
- Heat map (Grad-CAM, Selvaraju et al. 2017) of branch s: A = that stage's output [K, n, n, n], G = ∂y_c/∂A,
  α_k = mean over the n³ voxels of G_k, CAM_s = ReLU(Σ_k α_k A_k) in logit units, upsampled to the S³ patch by
  MONAI's ``default_upsampler`` (trilinear, align_corners False). The same numbers as MONAI ``GradCAM`` on
  ``branches.<s>.<layer>`` with an identity post-processing (tested).
- Several models (the folds): the raw upsampled CAMs are averaged over the models (logit units, before any
  normalisation); the patch heat map is that mean divided by its maximum, so each sequence's map peaks at 1
  (sequences are compared by their weights, not by their maps). An all-zero mean stays zero.
- Importance weight of sequence s: the gradient × activation mass of its branch, C_s = Σ_k Σ_v A_k(v)·G_k(v), the
  first-order (Taylor) drop of y_c if the branch's stage output were zeroed; at layer4 it equals Σ_k f_k·∂y_c/∂f_k
  on the pooled feature vector f, and the sum over voxels of the Grad-CAM map before its ReLU. C_s is averaged over
  the models, then w_s = max(C_s, 0) / Σ_t max(C_t, 0): each sequence's share of the positive evidence for class c
  (w = 1/7 each when no sequence has any). It comes from the same pass as the maps: no extra forward.
- Back to the original grid: a voxel v of sequence s lies at patch voxel p = P_s⁻¹ · A_s · v (P_s =
  ``patch.affines[s]``, patch voxel → world mm; A_s the volume's affine, voxel → world mm); the heat map there is the
  patch map sampled trilinearly at p (``scipy.ndimage.map_coordinates``, order 1), and 0 where p lies outside the
  patch cube [−0.5, S − 0.5]³. Only the voxels in the bounding box of the patch cube are computed.
- Max-area slice: the axial index k (third voxel axis of the original grid) with the most mask voxels (the first
  of equals).

Why one hand-written hooked pass instead of MONAI ``GradCAM`` per branch: ``GradCAM`` hooks one target layer per
call, so the seven branches cost seven full forwards and seven backwards through the whole network, weight
gradients included (≈ 26 s per model at full width and 64³ on 2 CPU cores, MODEL_NOTES.md). Here a forward hook on
each branch's stage replaces its output by a detached leaf that requires grad, and ``torch.autograd.grad`` of y_c
with respect to the seven leaves backpropagates only through avgpool and the heads: one forward per model serves all
seven maps, the weights and the ensemble's probabilities. Replacing the output (rather than hooking the module's
backward) also keeps MONAI's in-place ReLUs away from the stored activations. Besides, ``GradCAM`` needs a module
returning one logits tensor (ours returns two heads), its default post-processing maps (min, max) → (1, 0) and so
inverts the map, and with ``class_idx=None`` it takes each sample's own argmax, not the ensemble's class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.visualize.visualizer import default_upsampler
from scipy import ndimage
from torch import nn

from inference.domain import CLASSES, SEQUENCES
from inference.model import LiverLesionNet
from inference.nifti import Volume, write_volume
from inference.preprocess import Patch

STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
"""The ResNet stages of a branch, shallow to deep; ``grad_cam_layer`` picks one."""


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
    layer: str = ""
    """The stage hooked in every branch (of the first model)."""
    models: int = 0
    """How many models the maps and weights are averaged over."""


@dataclass
class PatchSaliency:
    """Raw Grad-CAM results on the patch grid, averaged over the models (before any normalisation)."""

    class_index: int
    cams: np.ndarray
    """float32 [7, S, S, S]: mean over the models of ReLU(Σ_k α_k A_k) upsampled to the patch, logit units."""
    contributions: np.ndarray
    """float64 [7]: mean over the models of the gradient × activation mass Σ A·∂y_c/∂A of each branch, logit units."""
    probabilities: np.ndarray
    """float64 [7]: seven-way softmax averaged over the models."""
    binary_probabilities: np.ndarray
    """float64 [2]: binary softmax averaged over the models."""
    layers: list[str]
    """The stage hooked, per model."""


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


def _hooked_forward(model: LiverLesionNet, x: torch.Tensor, layer: str):
    """Eval-mode forward that swaps each branch's ``layer`` output for a detached leaf requiring grad.

    Returns (the seven leaves [1, K, n, n, n], binary logits [1, 2], seven-way logits [1, 7]); gradients of the
    logits reach the leaves through the rest of the branch and the heads only."""
    leaves: list[torch.Tensor] = []

    def swap(_module, _inputs, output):
        leaf = output.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    handles = [getattr(branch, layer).register_forward_hook(swap) for branch in model.branches]
    training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            binary, seven = model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    if len(leaves) != len(SEQUENCES):
        raise RuntimeError(f"expected {len(SEQUENCES)} hooked {layer} outputs, got {len(leaves)}")
    return leaves, binary, seven


def patch_saliency(
    models: Sequence[LiverLesionNet], array: np.ndarray, *, class_index: int | None = None
) -> PatchSaliency:
    """Grad-CAM maps and gradient × activation masses of all seven branches on one patch, averaged over
    ``models``: one hooked forward per model and one backward of y_c to the seven hooked stages.

    ``array``: float32 [7, 2, S, S, S] (``Patch.array``). ``class_index`` None = the class with the largest
    softmax probability averaged over the models. Model modes are restored afterwards."""
    if not models:
        raise ValueError("need at least one model")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 5 or array.shape[:2] != (len(SEQUENCES), 2) or len(set(array.shape[2:])) != 1:
        raise ValueError(f"expected a patch array [7, 2, S, S, S], got shape {array.shape}")
    if class_index is not None and not 0 <= int(class_index) < len(CLASSES):
        raise ValueError(f"class_index must be in 0..{len(CLASSES) - 1}, got {class_index}")
    size = array.shape[-1]
    passes, layers = [], []
    for model in models:
        device = next(model.parameters()).device
        layer = grad_cam_layer(model, size)
        layers.append(layer)
        passes.append(_hooked_forward(model, torch.from_numpy(array[None]).to(device), layer))
    with torch.no_grad():
        probabilities = torch.stack([torch.softmax(seven[0].float(), 0).cpu() for _, _, seven in passes]).mean(0)
        binary = torch.stack([torch.softmax(b[0].float(), 0).cpu() for _, b, _ in passes]).mean(0)
    class_index = int(torch.argmax(probabilities)) if class_index is None else int(class_index)

    cams = torch.zeros((len(SEQUENCES), 1, size, size, size))
    contributions = torch.zeros(len(SEQUENCES), dtype=torch.float64)
    upsample = default_upsampler((size,) * 3)
    for leaves, _, seven in passes:
        grads = torch.autograd.grad(seven[0, class_index], leaves, allow_unused=True)
        maps = []
        for index, (activation, grad) in enumerate(zip(leaves, grads, strict=True)):
            grad = torch.zeros_like(activation) if grad is None else grad
            alpha = grad.mean(dim=tuple(range(2, grad.dim())), keepdim=True)
            maps.append(torch.relu((alpha * activation).sum(1, keepdim=True)).detach())
            contributions[index] += float((activation.detach() * grad).sum())
        cams += upsample(torch.cat(maps).float()).cpu()
    count = len(models)
    return PatchSaliency(
        class_index=class_index,
        cams=(cams[:, 0] / count).numpy().astype(np.float32),
        contributions=(contributions / count).numpy(),
        probabilities=probabilities.double().numpy(),
        binary_probabilities=binary.double().numpy(),
        layers=layers,
    )


def sequence_weights(contributions: np.ndarray) -> np.ndarray:
    """w_s = max(C_s, 0) / Σ max(C, 0); uniform when no contribution is positive. Non-negative, sums to 1."""
    positive = np.clip(np.nan_to_num(np.asarray(contributions, dtype=np.float64)), 0.0, None)
    total = positive.sum()
    return positive / total if total > 0 else np.full(positive.shape, 1.0 / positive.size)


def normalise(cam: np.ndarray) -> np.ndarray:
    """A raw map divided by its maximum (float32 in [0, 1]); all zeros if the maximum is not positive."""
    peak = float(np.max(cam)) if cam.size else 0.0
    return (np.clip(cam, 0.0, None) / peak).astype(np.float32) if peak > 0 else np.zeros(cam.shape, np.float32)


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
    *,
    class_index: int | None = None,
) -> Saliency:
    """Saliency of one lesion: ``patch`` from ``preprocess_lesion(volumes, masks, …)``; ``volumes`` and ``masks``
    map each of the seven SEQUENCES to its original image and lesion mask. ``class_index`` None = the ensemble's
    predicted seven-way class; maps and weights are averaged over ``models`` (see the module docstring)."""
    missing = [s for s in SEQUENCES if s not in volumes or s not in masks]
    if missing:
        raise ValueError(f"missing image or mask for sequence(s) {', '.join(missing)}")
    raw = patch_saliency(models, patch.array, class_index=class_index)
    weights = sequence_weights(raw.contributions)
    sequences = []
    for index, sequence in enumerate(SEQUENCES):
        heat = map_to_volume(normalise(raw.cams[index]), patch.affines[index], volumes[sequence])
        k = max_area_slice(masks[sequence])
        sequences.append(
            SequenceSaliency(sequence, heat, float(weights[index]), k, np.asarray(masks[sequence].data[:, :, k] != 0))
        )
    return Saliency(
        predicted_class=raw.class_index,
        sequences=sequences,
        probabilities=raw.probabilities,
        binary_probabilities=raw.binary_probabilities,
        layer=raw.layers[0],
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
    figure.suptitle(f"Grad-CAM for class {name} ({saliency.models} model(s), {saliency.layer})")
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
        "layer": saliency.layer,
        "models": saliency.models,
        "method": "Grad-CAM per branch, mean over models, max-normalised; weights = positive share of "
        "gradient x activation mass per branch",
    }
    if saliency.probabilities is not None:
        document["probabilities"] = dict(zip(CLASSES, map(float, saliency.probabilities), strict=True))
    paths["weights"] = out_dir / "weights.json"
    paths["weights"].write_text(json.dumps(document, indent=2), encoding="utf-8")
    paths["panel"] = save_panel(saliency, volumes, out_dir / "panel.png")
    return paths
