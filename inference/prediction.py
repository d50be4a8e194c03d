"""Ensemble prediction with a finished training run (docs/paper.md, "Model": the five fold models averaged).

For a lesion x and the K fold models m_k (eval mode):

- seven-way: p_seven = (1/K) Σ_k softmax(m_k(x).seven_logits), over ``CLASSES``;
- two-way, from the binary head: p_binary = (1/K) Σ_k softmax(m_k(x).binary_logits), (benign, malignant);
  ``p_malignant`` = p_binary[1] is the two-way output (the paper's two-way task has its own head);
  ``p_malignant_seven`` = Σ_{c ∈ HCC, ICC, metastasis} p_seven[c] is reported beside it.

``Ensemble.load`` refuses a run whose ``manifest.json`` does not match its files (``ValueError`` naming the
file). ``predict_dataset`` reads the import layout one case at a time and predicts ``batch_size`` lesions
at once, so memory holds one case's volumes and one batch of patches whatever the dataset's size.
"""

from __future__ import annotations

import contextlib
import csv
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from inference.config import Config, load_config
from inference.dataset import CaseRejected, load_case
from inference.domain import CLASSES, SPLITS
from inference.manifest import read_manifest
from inference.model import MALIGNANT_INDICES, LiverLesionNet, select_device
from inference.preprocess import preprocess_lesion
from inference.runs import RUN_MANIFEST, verify_run
from inference.training import process_pool

MALIGNANT_THRESHOLD = 0.5
"""A lesion is predicted malignant when p_malignant (binary head) ≥ this."""

CSV_COLUMNS = (
    "case",
    "lesion",
    "patient",
    "split",
    "label",
    "predicted",
    "predicted_malignant",
    "p_malignant",
    "p_malignant_seven",
    *(f"p_{name}" for name in CLASSES),
    "error",
)


class Ensemble:
    """The K fold models of a run, in eval mode on one device; ``predict`` averages their probabilities."""

    def __init__(self, config: Config, models: list[LiverLesionNet], device: torch.device):
        self.config, self.models, self.device = config, models, device

    @classmethod
    def load(
        cls, run_dir: Path, device: str | torch.device | None = None, *, expected: dict[str, str] | None = None
    ) -> Ensemble:
        """Verify ``run_dir`` (``verify_run``; with ``expected``, its manifest must list exactly those
        {file: SHA-256}) and load ``fold-1.pt`` … ``fold-K.pt`` (weights only)."""
        run_dir = Path(run_dir)
        listed = verify_run(run_dir)
        if expected is not None and listed != expected:
            raise ValueError(f"{run_dir / RUN_MANIFEST}: lists other files than expected (the run was replaced)")
        device = torch.device(device) if device is not None else select_device()
        config = load_config(run_dir / "config.json")
        models = []
        for fold in range(1, config.training.folds + 1):
            name = f"fold-{fold}.pt"
            if name not in listed:
                raise ValueError(f"{run_dir / name}: not listed in {RUN_MANIFEST}")
            model = LiverLesionNet(config.model)
            model.load_state_dict(torch.load(run_dir / name, map_location="cpu", weights_only=True))
            models.append(model.to(device).eval())
        return cls(config, models, device)

    def predict(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """patches float32 [B, 7, 2, S, S, S] → (binary_probabilities [B, 2], seven_probabilities [B, 7]), the
        mean over the fold models of each head's softmax, on the CPU."""
        with torch.inference_mode():
            x = patches.to(self.device, torch.float32)
            binary = seven = None
            for model in self.models:
                binary_logits, seven_logits = model(x)
                b, s = binary_logits.softmax(dim=1), seven_logits.softmax(dim=1)
                binary, seven = (b, s) if binary is None else (binary + b, seven + s)
            count = len(self.models)
            return (binary / count).float().cpu(), (seven / count).float().cpu()


def _case_patches(job: tuple) -> list[tuple[dict, np.ndarray | None]]:
    """Records and inference patches (None when unreadable: the record's ``error`` says why) of one case's
    lesions of the split, in lesion name order."""
    data_dir, entry, split, size = job
    rows = sorted((row for row in entry.lesions if split is None or row.split == split), key=lambda r: r.name)
    problem, loaded = "; ".join(entry.problems) or None, None
    if problem is None:
        try:
            loaded = load_case(data_dir / entry.name, entry)
        except CaseRejected as exc:
            problem = str(exc)
    out = []
    for row in rows:
        record = {
            "case": entry.name,
            "lesion": row.name,
            "patient": entry.patient,
            "split": row.split,
            "label": CLASSES[row.label],
            "diameter_mm": row.diameter_mm,
            "error": problem,
        }
        array = None
        if loaded is not None:
            try:
                array = preprocess_lesion(loaded.volumes, loaded.masks[row.name], row.diameter_mm, size=size).array
            except ValueError as exc:
                record["error"] = f"{entry.name}/{row.name}: {exc}"
        if array is None:
            record |= dict.fromkeys(("p_seven", "predicted", "p_malignant", "predicted_malignant", "p_malignant_seven"))
        out.append((record, array))
    return out


def _in_order(function, jobs: list, pool: ProcessPoolExecutor | None, window: int) -> Iterator:
    """``map(function, jobs)`` in order; with a pool at most ``window`` jobs are run ahead of the consumer,
    so finished patches cannot pile up in memory."""
    if pool is None:
        yield from map(function, jobs)
        return
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.submit(function, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _fill(records: list[dict], binary: Tensor, seven: Tensor) -> None:
    for record, b, s in zip(records, binary.tolist(), seven.tolist(), strict=True):
        record |= {
            "p_seven": s,
            "predicted": CLASSES[int(np.argmax(s))],
            "p_malignant": b[1],
            "predicted_malignant": b[1] >= MALIGNANT_THRESHOLD,
            "p_malignant_seven": sum(s[i] for i in MALIGNANT_INDICES),
        }


def predict_dataset(
    run_dir: Path,
    data_dir: Path,
    *,
    batch_size: int = 8,
    split: str | None = None,
    device: str | torch.device | None = None,
    workers: int = 1,
    progress: bool = False,
) -> list[dict]:
    """One record per lesion of ``data_dir`` (import layout; ``split`` "development"/"test", None = all), cases
    and lesions in name order: case, lesion, patient, split, label, diameter_mm, p_seven [7] (``CLASSES``
    order), predicted (class name), p_malignant (binary head), predicted_malignant (p_malignant ≥ 0.5),
    p_malignant_seven, error (None, or why the lesion could not be read; its probabilities are then None).

    ``workers`` > 1 preprocesses cases in that many processes (at most 2·workers cases ahead of the model).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
    ensemble = Ensemble.load(run_dir, device)
    data_dir = Path(data_dir)
    entries = read_manifest(data_dir)
    jobs = [(data_dir, entries[name], split, ensemble.config.model.input_size) for name in sorted(entries)]
    records: list[dict] = []
    waiting: list[tuple[dict, np.ndarray]] = []

    def flush() -> None:
        if waiting:
            binary, seven = ensemble.predict(torch.from_numpy(np.stack([array for _, array in waiting])))
            _fill([record for record, _ in waiting], binary, seven)
            waiting.clear()

    pool = process_pool(workers)
    bar = tqdm(total=len(jobs), unit="case", desc="predict", disable=not progress)
    with pool or contextlib.nullcontext(), bar:
        for lesions in _in_order(_case_patches, jobs, pool, 2 * workers):
            for record, array in lesions:
                records.append(record)
                if array is not None:
                    waiting.append((record, array))
                if len(waiting) >= batch_size:
                    flush()
            bar.update()
        flush()
    return records


def write_predictions_csv(records: list[dict], path: Path) -> Path:
    """``path``: one row per record, columns ``CSV_COLUMNS`` (probabilities as decimals, empty when unknown)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for record in records:
            seven = record["p_seven"] or [None] * len(CLASSES)
            row = [record[key] for key in CSV_COLUMNS[:9]] + seven + [record["error"] or ""]
            writer.writerow(
                ["" if value is None else f"{value:.6f}" if isinstance(value, float) else value for value in row]
            )
    return path
