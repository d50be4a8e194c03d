"""Model and training configurations as plain data, read from JSON.

A bare name (``"paper"``, ``"cpu"``) reads ``inference/configs/<name>.json``; anything else is a path.
Every key of every section is required and no other key is allowed, so a typo fails at load time
with a ``ValueError`` naming the key and the file. ``Config.to_dict()`` writes a loaded config back
(e.g. into a run folder) in the same shape, so ``load_config`` of that file gives an equal config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""Where the named configs live: ``<name>.json``."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of ``inference.model.LiverLesionNet``.

    ``input_size`` is the side S of the cubic patch fed to every branch (voxels; the network input is
    [B, 7, 2, S, S, S]). ``widen_factor`` scales the ResNet-18 channels (64·w … 512·w; 1 = the paper's
    width, each branch then yields 512·w features). ``head_hidden`` is the hidden width of both MLP heads
    and ``dropout`` the probability in [0, 1) between their two layers. ``stem_kernel`` is the edge of the
    stride-2 stem convolution (7 in ResNet-18 and the paper; 3 costs a twelfth of its work on small patches).
    """

    name: str
    input_size: int
    widen_factor: float
    head_hidden: int
    dropout: float
    stem_kernel: int = 7

    def validate(self) -> list[str]:
        problems = []
        if self.input_size < 16:
            problems.append(f"input_size must be ≥ 16 voxels, got {self.input_size}")
        if int(64 * self.widen_factor) < 1:
            problems.append(f"widen_factor must leave ≥ 1 stem channel (≥ 1/64), got {self.widen_factor}")
        if self.stem_kernel < 1 or self.stem_kernel % 2 == 0:
            problems.append(f"stem_kernel must be an odd number ≥ 1, got {self.stem_kernel}")
        if self.head_hidden < 1:
            problems.append(f"head_hidden must be ≥ 1, got {self.head_hidden}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        return problems


@dataclass(frozen=True)
class AugmentationConfig:
    """Online augmentation while training (docs/paper.md, preprocessing step 6) and the crop margin (step 4).

    Intensities are the normalised ones, in [0, 1]. Each range is (low, high), drawn uniformly.
    """

    rotation_degrees: float
    """Largest absolute rotation about each axis, degrees."""
    flip_probability: float
    """Probability of flipping the patch along each spatial axis, independently."""
    shift_mm: float
    """Largest absolute shift of the crop centre along each axis, mm (1 mm grid before resizing)."""
    scale_range: tuple[float, float]
    """Zoom factor of the patch (1 = none)."""
    brightness_range: tuple[float, float]
    """Additive intensity offset."""
    contrast_range: tuple[float, float]
    """Multiplicative intensity factor about the patch mean (1 = none)."""
    noise_std: float
    """Standard deviation of additive Gaussian noise."""
    margin_mm_range: tuple[float, float]
    """Margin added on each side of the box of a lesion > 32 mm while training, mm (one draw per lesion);
    outside training ``inference.preprocess.INFERENCE_MARGIN_MM`` applies."""

    def validate(self) -> list[str]:
        problems = [
            f"{name} must be (low, high) with low ≤ high, got {list(value)}"
            for name in ("scale_range", "brightness_range", "contrast_range", "margin_mm_range")
            if (value := getattr(self, name))[0] > value[1]
        ]
        if not 0 <= self.flip_probability <= 1:
            problems.append(f"flip_probability must be in [0, 1], got {self.flip_probability}")
        for name in ("rotation_degrees", "shift_mm", "noise_std"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.scale_range[0] <= 0 or self.contrast_range[0] <= 0 or self.margin_mm_range[0] < 0:
            problems.append("scale_range and contrast_range must be > 0 and margin_mm_range ≥ 0")
        return problems


@dataclass(frozen=True)
class TrainingConfig:
    """Five-fold cross-validated multitask training (docs/paper.md, "Model").

    ``learning_rate`` and ``weight_decay`` are for AdamW; ``binary_loss_weight`` multiplies the two-way
    cross-entropy in ``inference.model.multitask_loss``; ``seed`` fixes folds, initialisation and
    augmentation. Batches of one are dropped while training (BatchNorm needs two samples at 32³).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    folds: int
    binary_loss_weight: float
    seed: int
    augmentation: AugmentationConfig

    def validate(self) -> list[str]:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be ≥ 1, got {self.epochs}")
        if self.batch_size < 2:
            problems.append(f"batch_size must be ≥ 2 (BatchNorm), got {self.batch_size}")
        if self.folds < 2:
            problems.append(f"folds must be ≥ 2, got {self.folds}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0 or self.binary_loss_weight < 0:
            problems.append("weight_decay and binary_loss_weight must be ≥ 0")
        return problems + self.augmentation.validate()


SALIENCY_METHODS: tuple[str, ...] = ("occlusion", "grad-cam")
"""Heat-map methods of ``inference.saliency`` (the sequence weights are computed the same way for both)."""


@dataclass(frozen=True)
class SaliencyConfig:
    """How ``inference.saliency`` draws the per-sequence heat maps.

    ``method`` "occlusion": the drop of the class logit when one cube of ``occlusion_block`` patch voxels of
    one sequence is hidden, for every cube of the grid tiling the patch ((S/b)³ forwards per model; faithful,
    and as fine as b). "grad-cam": one hooked forward and backward per model (fast, but only as fine as the
    deepest ResNet stage with spatial extent: 2³ cells at S = 64). ``occlusion_block`` must divide S; it is
    unused by "grad-cam".
    """

    method: str
    occlusion_block: int

    def validate(self, input_size: int) -> list[str]:
        problems = []
        if self.method not in SALIENCY_METHODS:
            problems.append(f"saliency method must be one of {', '.join(SALIENCY_METHODS)}, got {self.method!r}")
        if self.occlusion_block < 1 or input_size % self.occlusion_block:
            problems.append(
                f"occlusion_block must be ≥ 1 and divide input_size {input_size}, got {self.occlusion_block}"
            )
        return problems


@dataclass(frozen=True)
class Config:
    """One named configuration: the network, how to train it and how to explain its predictions."""

    description: str
    model: ModelConfig
    training: TrainingConfig
    saliency: SaliencyConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (ranges as lists), the shape ``load_config`` reads."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def config_path(name_or_path: str | Path) -> Path:
    """``inference/configs/<name>.json`` for a bare name, else the path itself."""
    if isinstance(name_or_path, str) and not any(c in name_or_path for c in "/\\.") and name_or_path:
        return CONFIG_DIR / f"{name_or_path}.json"
    return Path(name_or_path)


def load_config(name_or_path: str | Path) -> Config:
    """Read and check a config; ``ValueError`` names the file and the bad key or value."""
    path = config_path(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        raise ValueError(f"{path}: no such config file (named configs: {known})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    config = _build(Config, data, path, "")
    problems = config.model.validate() + config.training.validate()
    problems += config.saliency.validate(config.model.input_size)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return config


def _build(cls: type, data: Any, path: Path, where: str) -> Any:
    """Instance of dataclass ``cls`` from a JSON object, with exact keys and checked types."""
    section = where.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise ValueError(f"{path}: {section} must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in hints:
            raise ValueError(f"{path}: unknown key {where + key!r} (expected {', '.join(names)})")
    values = {}
    for name in names:
        if name not in data:
            raise ValueError(f"{path}: missing key {where + name!r}")
        values[name] = _value(hints[name], data[name], path, f"{where}{name}")
    return cls(**values)


def _value(kind: Any, value: Any, path: Path, key: str) -> Any:
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, path, f"{key}.")
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        if not isinstance(value, list) or len(value) != len(items):
            raise ValueError(f"{path}: key {key!r} must be a list of {len(items)} numbers, got {value!r}")
        return tuple(_value(item, v, path, key) for item, v in zip(items, value, strict=True))
    ok = {
        str: isinstance(value, str),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
    }[kind]
    if not ok:
        raise ValueError(f"{path}: key {key!r} must be {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value
