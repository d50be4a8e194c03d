"""The seven-branch multitask 3D CNN (docs/paper.md, "Model").

One 3D ResNet-18 per MRI sequence, each reading two channels (the image patch and its Gaussian-blurred
lesion mask) and yielding a feature vector of F = 512·widen_factor. F_all is the concatenation of the
seven vectors in ``SEQUENCES`` order. Two MLP heads:

- binary (benign, malignant): concat(f_T2WI, f_DWI, f_ADC, F_all), 10·F inputs;
- seven-way (``CLASSES``):   concat(f_LAP, f_PVP, f_DP, F_all), 10·F inputs.

``branch_features`` and ``heads`` split ``forward`` so that saliency can hook every branch's layers
and get all seven maps from one forward and one backward pass.
"""

from __future__ import annotations

import torch
from monai.networks.nets import resnet18
from torch import Tensor, nn
from torch.nn import functional

from inference.config import ModelConfig
from inference.domain import CLASSES, SEQUENCES, is_malignant

BINARY_CLASSES: tuple[str, ...] = ("benign", "malignant")
"""Columns of the binary logits."""

BINARY_SEQUENCES: tuple[str, ...] = ("T2WI", "DWI", "ADC")
"""Sequences whose own features feed the binary head (besides F_all)."""
SEVEN_WAY_SEQUENCES: tuple[str, ...] = ("LAP", "PVP", "DP")
"""Sequences whose own features feed the seven-way head (besides F_all)."""

BINARY_INDICES: tuple[int, ...] = tuple(SEQUENCES.index(s) for s in BINARY_SEQUENCES)
SEVEN_WAY_INDICES: tuple[int, ...] = tuple(SEQUENCES.index(s) for s in SEVEN_WAY_SEQUENCES)
MALIGNANT_INDICES: tuple[int, ...] = tuple(i for i in range(len(CLASSES)) if is_malignant(i))
"""Class indices of the malignant classes (HCC, ICC, metastasis)."""

CHANNELS_PER_SEQUENCE = 2
"""Image patch and Gaussian-blurred mask."""
BRANCH_BASE_FEATURES = 512
"""Feature size of a full-width ResNet-18 branch; scaled by ``widen_factor``."""


def build_branch(widen_factor: float, stem_kernel: int = 7) -> nn.Module:
    """One 3D ResNet-18 with a stride-2 stem of edge ``stem_kernel``: [B, 2, S, S, S] → pooled features
    [B, int(512·w)]."""
    return resnet18(
        spatial_dims=3,
        n_input_channels=CHANNELS_PER_SEQUENCE,
        feed_forward=False,
        conv1_t_size=stem_kernel,
        conv1_t_stride=2,
        widen_factor=widen_factor,
    )


def build_head(in_features: int, hidden: int, out_features: int, dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout → Linear; index 0 is the layer that reads the concatenated features."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_features),
    )


class LiverLesionNet(nn.Module):
    """Seven ResNet-18 branches and two heads, built from a ``ModelConfig``.

    Input: float32 [B, 7, 2, S, S, S], the sequence axis in ``SEQUENCES`` order, channel 0 the image
    (normalised to [0, 1]) and channel 1 the blurred mask; [B, 14, S, S, S] (sequence-major) is also
    accepted, for tools that expect one multichannel image. Output: (binary_logits [B, 2] in
    ``BINARY_CLASSES`` order, seven_logits [B, 7] in ``CLASSES`` order), unnormalised.

    BatchNorm in training mode needs B ≥ 2 at small inputs (the last block's map is 1×1×1 at 32³).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.branches = nn.ModuleList(build_branch(config.widen_factor, config.stem_kernel) for _ in SEQUENCES)
        self.feature_size = int(BRANCH_BASE_FEATURES * config.widen_factor)
        all_features = len(SEQUENCES) * self.feature_size
        self.binary_head = build_head(
            len(BINARY_SEQUENCES) * self.feature_size + all_features,
            config.head_hidden,
            len(BINARY_CLASSES),
            config.dropout,
        )
        self.seven_way_head = build_head(
            len(SEVEN_WAY_SEQUENCES) * self.feature_size + all_features,
            config.head_hidden,
            len(CLASSES),
            config.dropout,
        )

    def sequence_inputs(self, x: Tensor) -> Tensor:
        """Check the input and return it as [B, 7, 2, S, S, S]."""
        sequences, channels = len(SEQUENCES), CHANNELS_PER_SEQUENCE
        if x.dim() == 5 and x.shape[1] == sequences * channels:
            x = x.reshape(x.shape[0], sequences, channels, *x.shape[2:])
        if x.dim() != 6 or tuple(x.shape[1:3]) != (sequences, channels):
            raise ValueError(
                f"expected input [B, {sequences}, {channels}, S, S, S] or [B, {sequences * channels}, S, S, S], "
                f"got {list(x.shape)}"
            )
        return x

    def branch_features(self, x: Tensor) -> Tensor:
        """Per-sequence features: [B, 7, 2, S, S, S] → [B, 7, F], F = ``feature_size``."""
        x = self.sequence_inputs(x)
        return torch.stack([branch(x[:, i]) for i, branch in enumerate(self.branches)], dim=1)

    def head_inputs(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 7, F] → (binary head input, seven-way head input), each [B, 10·F].

        Binary: concat(f_T2WI, f_DWI, f_ADC, F_all); seven-way: concat(f_LAP, f_PVP, f_DP, F_all),
        with F_all = the seven vectors concatenated in ``SEQUENCES`` order.
        """
        f_all = features.flatten(start_dim=1)
        binary = torch.cat([features[:, list(BINARY_INDICES)].flatten(start_dim=1), f_all], dim=1)
        seven_way = torch.cat([features[:, list(SEVEN_WAY_INDICES)].flatten(start_dim=1), f_all], dim=1)
        return binary, seven_way

    def heads(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 7, F] → (binary_logits [B, 2], seven_logits [B, 7])."""
        binary, seven_way = self.head_inputs(features)
        return self.binary_head(binary), self.seven_way_head(seven_way)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 7, 2, S, S, S] → (binary_logits [B, 2], seven_logits [B, 7])."""
        return self.heads(self.branch_features(x))


def multitask_loss(binary_logits: Tensor, seven_logits: Tensor, labels: Tensor, binary_weight: float) -> Tensor:
    """Joint loss of both tasks, averaged over the batch (a scalar).

    L = CE(seven_logits, y) + binary_weight · CE(binary_logits, m(y)), where y ∈ {0..6} is the class
    index into ``CLASSES`` (int64 [B]) and m(y) = 1 if ``CLASSES[y]`` is malignant (HCC, ICC,
    metastasis; indices ``MALIGNANT_INDICES``) else 0, and CE is the mean softmax cross-entropy.
    """
    malignant = torch.isin(labels, torch.tensor(MALIGNANT_INDICES, device=labels.device)).long()
    seven_way = functional.cross_entropy(seven_logits, labels)
    return seven_way + binary_weight * functional.cross_entropy(binary_logits, malignant)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BatchNorm running statistics excluded: they are buffers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def select_device() -> torch.device:
    """The first visible CUDA device when there is one (CUDA_VISIBLE_DEVICES decides which), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SevenWayLogits(nn.Module):
    """``model`` reduced to its seven-way logits [B, 7], for tools that expect a module with one output
    (MONAI ``GradCAM``, used as the reference the one-pass saliency is tested and benchmarked against)."""

    def __init__(self, model: LiverLesionNet):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[1]
