"""Five-fold cross-validated multitask training on the development split (docs/paper.md, "Model").

``train(config, data_dir, run_dir)`` reads the import layout (``data_dir/manifest.csv``) and writes::

    run_dir/config.json      the config (``Config.to_dict()``)
    run_dir/fold-K.pt        K = 1 … folds: state_dict (tensors only) of fold K's best validation epoch
    run_dir/metrics.json     folds, per-epoch losses and accuracies, best epochs, skipped lesions
    run_dir/manifest.json    {"files": {name: sha256}} of every other file; written last = run complete
    run_dir/state/, cache/   while running only: resumable per-fold state and preprocessed patches
                             (``cache_dir=`` puts the patches elsewhere, kept and reused by later runs)

Folds: lesions grouped by patient, stratified by class (``assign_folds``). Best epoch of a fold: highest
validation seven-way accuracy, ties broken by lower validation loss, then by the earlier epoch.
Loss: ``multitask_loss`` (seven-way CE + binary_loss_weight · binary CE), AdamW, learning rate
lr_t = lr · ½(1 + cos(π·t/T)) over the T training steps of a fold. Batches of one lesion are dropped.

Patches are preprocessed once per run (``cache/``, float16): the inference crop (margin
``INFERENCE_MARGIN_MM``) validates; lesions > 32 mm also get a training crop whose margin is drawn from the
config's ``margin_mm_range`` through ``preprocess_lesion``'s rng (one draw per lesion and run). Every epoch
then augments the cached patch (``inference.augment``).

Determinism: the folds come from ``training.seed``; fold k's initial weights from seed (seed, k); epoch e's
order, augmentation and dropout from seed (seed, k, e), re-seeded at every epoch. So a run interrupted at
an epoch boundary and resumed from ``state/fold-k.pt`` (weights, optimizer, best so far, history) gives the
same checkpoints as an uninterrupted one; on CPU two runs with one seed give byte-identical checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.augment import augment_batch
from inference.config import Config, load_config
from inference.dataset import CaseRejected, load_case, sha256_file
from inference.domain import CLASSES, MEDIUM_LESION_MM, SPLITS
from inference.manifest import MANIFEST_NAME, CaseEntry, read_manifest
from inference.model import MALIGNANT_INDICES, LiverLesionNet, multitask_loss, select_device
from inference.preprocess import preprocess_lesion
from inference.runs import RUN_MANIFEST

SELECTION = "highest validation seven-way accuracy; ties: lower validation loss, then the earlier epoch"


@dataclass(frozen=True)
class Lesion:
    """One development lesion; ``index`` is its position in the run's sorted lesion list."""

    index: int
    case: str
    lesion: str
    patient: str
    label: int
    diameter_mm: float

    @property
    def key(self) -> str:
        return f"{self.case}/{self.lesion}"


def development_lesions(entries: dict[str, CaseEntry]) -> list[Lesion]:
    """Lesions of the development split, sorted by case then lesion name."""
    rows = sorted(
        (entry.name, row.name, entry.patient, row.label, row.diameter_mm)
        for entry in entries.values()
        for row in entry.lesions
        if row.split == SPLITS[0]
    )
    return [Lesion(i, *row) for i, row in enumerate(rows)]


# --- folds ------------------------------------------------------------------------------------------------


def assign_folds(patients: list[str], labels: list[int], folds: int, seed: int) -> list[int]:
    """Fold (0 … folds−1) of each lesion: all lesions of a patient in one fold, classes spread evenly.

    Like scikit-learn's StratifiedGroupKFold(shuffle=True): patients in a seeded random order, then stably
    sorted by decreasing standard deviation of their class counts; each goes to the fold minimising
    mean_c std_f(n_fc / n_c) (n_fc lesions of class c in fold f, n_c in all), ties to the smaller fold,
    then the lower index.
    """
    if len(patients) != len(labels):
        raise ValueError("patients and labels differ in length")
    names = sorted(set(patients))
    if len(names) < folds:
        raise ValueError(f"{len(names)} patient(s) cannot fill {folds} folds")
    row = {name: i for i, name in enumerate(names)}
    counts = np.zeros((len(names), len(CLASSES)))
    for patient, label in zip(patients, labels, strict=True):
        counts[row[patient], label] += 1
    order = np.random.default_rng(seed).permutation(len(names))
    order = sorted(order, key=lambda g: -counts[g].std())
    totals = np.maximum(counts.sum(axis=0), 1)
    per_fold = np.zeros((folds, len(CLASSES)))
    fold_of = np.zeros(len(names), int)
    for group in order:
        costs = []
        for fold in range(folds):
            trial = per_fold.copy()
            trial[fold] += counts[group]
            costs.append((round(float(np.mean(np.std(trial / totals, axis=0))), 12), trial[fold].sum(), fold))
        fold_of[group] = min(costs)[2]
        per_fold[fold_of[group]] += counts[group]
    return [int(fold_of[row[p]]) for p in patients]


# --- the patch cache --------------------------------------------------------------------------------------


class _MarginDraw:
    """Stands in for ``preprocess_lesion``'s rng so that the training margin follows the config's
    ``margin_mm_range`` (mm) instead of preprocess's own default range: ``uniform`` ignores its bounds."""

    def __init__(self, generator: np.random.Generator, margin_mm_range: tuple[float, float]):
        self.generator, self.range = generator, margin_mm_range

    def uniform(self, *_bounds) -> float:
        return float(self.generator.uniform(*self.range))


def _cache_case(job: tuple) -> list[tuple[int, str | None]]:
    """Preprocess the development lesions of one case into ``cache/<index>.npz``; (index, problem or None)."""
    data_dir, entry, lesions, cache_dir, size, seed, margin_range = job
    if entry.problems:
        return [(lesion.index, "; ".join(entry.problems)) for lesion in lesions]
    try:
        loaded = load_case(data_dir / entry.name, entry)
    except CaseRejected as exc:
        return [(lesion.index, str(exc)) for lesion in lesions]
    results = []
    for lesion in lesions:
        try:
            masks = loaded.masks[lesion.lesion]
            val = preprocess_lesion(loaded.volumes, masks, lesion.diameter_mm, size=size)
            arrays = {"val": val.array.astype(np.float16), "val_side_mm": np.float64(val.side_mm)}
            if lesion.diameter_mm > MEDIUM_LESION_MM:  # only the box rule has a margin to vary
                rng = _MarginDraw(np.random.default_rng([seed, lesion.index]), margin_range)
                cut = preprocess_lesion(loaded.volumes, masks, lesion.diameter_mm, size=size, rng=rng)  # type: ignore[arg-type]
                arrays |= {"train": cut.array.astype(np.float16), "train_side_mm": np.float64(cut.side_mm)}
        except ValueError as exc:
            results.append((lesion.index, f"{lesion.key}: {exc}"))
            continue
        partial = cache_dir / f".{lesion.index:05d}-{os.getpid()}.npz"  # unique: runs may share a cache
        np.savez(partial, **arrays)
        os.replace(partial, cache_dir / f"{lesion.index:05d}.npz")
        results.append((lesion.index, None))
    return results


def _init_worker() -> None:
    torch.set_num_threads(1)


def process_pool(workers: int) -> ProcessPoolExecutor | None:
    """``workers`` spawned processes of one torch thread each, or None (work in this process) for one worker or
    inside a daemon process such as a Celery worker, which may not have children. Spawned, not forked: a fork
    of a process whose OpenMP pool has run can hang."""
    if workers <= 1 or multiprocessing.current_process().daemon:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)


def cache_folder(cache_root: Path, config: Config, data_sha256: str) -> Path:
    """``cache_root/<key>``: one folder per (data manifest, patch size, seed, margin range), the inputs that
    decide the cached patches, so runs that differ only in other settings share their preprocessing."""
    key = [data_sha256, config.model.input_size, config.training.seed, config.training.augmentation.margin_mm_range]
    return cache_root / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def build_cache(
    data_dir: Path,
    entries: dict[str, CaseEntry],
    lesions: list[Lesion],
    cache_dir: Path,
    config: Config,
    workers: int | None = None,
    progress: bool = True,
) -> dict[int, str]:
    """Preprocess every lesion not cached yet (one case at a time per worker process, so at most ``workers``
    cases' volumes are in memory); returns {index: problem} of the lesions that could not be used."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    by_case: dict[str, list[Lesion]] = {}
    for lesion in lesions:
        if not (cache_dir / f"{lesion.index:05d}.npz").exists():
            by_case.setdefault(lesion.case, []).append(lesion)
    size, augmentation = config.model.input_size, config.training.augmentation
    jobs = [
        (data_dir, entries[case], group, cache_dir, size, config.training.seed, augmentation.margin_mm_range)
        for case, group in by_case.items()
    ]
    workers = min(workers or os.cpu_count() or 1, 8, len(jobs))
    pool = process_pool(workers) if len(jobs) >= 8 else None
    problems = {}
    bar = tqdm(total=len(jobs), unit="case", desc="preprocess", disable=not progress or not jobs)
    with pool or contextlib.nullcontext(), bar:
        for results in (pool.map if pool else map)(_cache_case, jobs):
            problems |= {index: problem for index, problem in results if problem}
            bar.update()
    return problems


class PatchCache:
    """Cached patches: ``batch(indices, train)`` → (float32 [B, 7, 2, S, S, S], side_mm float64 [B]).

    Files read are also held in memory up to ``memory_bytes`` (float16; ~160 MB for 112 lesions at 32³,
    reading them from disk every epoch cost ~15 % of a CPU run); beyond that they are read on each use.
    """

    def __init__(self, cache_dir: Path, memory_bytes: int = 2 << 30):
        self.cache_dir, self.memory_bytes, self.held, self.used = cache_dir, memory_bytes, {}, 0

    def _arrays(self, index: int) -> dict[str, np.ndarray]:
        if index in self.held:
            return self.held[index]
        with np.load(self.cache_dir / f"{index:05d}.npz") as stored:
            arrays = {name: stored[name] for name in stored.files}
        size = sum(array.nbytes for array in arrays.values())
        if self.used + size <= self.memory_bytes:
            self.held[index], self.used = arrays, self.used + size
        return arrays

    def batch(self, indices: list[int], train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        arrays, sides = [], []
        for index in indices:
            stored = self._arrays(index)
            kind = "train" if train and "train" in stored else "val"
            arrays.append(stored[kind].astype(np.float32))
            sides.append(float(stored[f"{kind}_side_mm"]))
        return torch.from_numpy(np.stack(arrays)), torch.tensor(sides, dtype=torch.float64)


# --- one fold ---------------------------------------------------------------------------------------------


def _seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0] >> 1)


def _cpu_copy(model: torch.nn.Module) -> dict:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def _save(payload: dict, path: Path) -> None:
    """torch.save to a temporary name, then rename: a crash leaves the old file or the new one."""
    partial = path.with_name(f".{path.name}")
    torch.save(payload, partial)
    os.replace(partial, path)


def evaluate(
    model: LiverLesionNet, cache: PatchCache, lesions: list[Lesion], config: Config, device: torch.device
) -> dict[str, float]:
    """Validation loss (mean multitask loss per lesion), seven-way accuracy (argmax of the seven-way head)
    and binary accuracy (argmax of the binary head against malignant = HCC, ICC, metastasis)."""
    model.eval()
    loss = correct_seven = correct_binary = 0.0
    step = 2 * config.training.batch_size
    with torch.inference_mode():
        for start in range(0, len(lesions), step):
            chunk = lesions[start : start + step]
            x, _ = cache.batch([lesion.index for lesion in chunk], train=False)
            labels = torch.tensor([lesion.label for lesion in chunk], device=device)
            binary, seven = model(x.to(device))
            loss += float(multitask_loss(binary, seven, labels, config.training.binary_loss_weight)) * len(chunk)
            correct_seven += float((seven.argmax(1) == labels).sum())
            malignant = torch.isin(labels, torch.tensor(MALIGNANT_INDICES, device=device))
            correct_binary += float(((binary.argmax(1) == 1) == malignant).sum())
    n = max(len(lesions), 1)
    return {"val_loss": loss / n, "val_accuracy_seven": correct_seven / n, "val_accuracy_binary": correct_binary / n}


def epoch_batches(count: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """A random order of ``count`` training lesions cut into batches of ``batch_size``; a last batch of one
    lesion is dropped (BatchNorm in training mode needs two)."""
    order = torch.randperm(count, generator=generator).tolist()
    batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    return [batch for batch in batches if len(batch) >= 2]


def train_fold(
    fold: int,
    train_set: list[Lesion],
    val_set: list[Lesion],
    cache: PatchCache,
    config: Config,
    state_path: Path,
    device: torch.device,
    progress: bool,
    callback: Callable | None,
) -> dict:
    """Train fold ``fold`` (1-based) from its state file if there is one; returns the finished state."""
    settings, seed = config.training, config.training.seed
    torch.manual_seed(_seed(seed, fold))
    model = LiverLesionNet(config.model).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
    )  # fused: one kernel for all parameters, 4× faster than the default on CPU
    state = {"epoch": 0, "history": [], "best_epoch": 0, "best_score": [-1.0, 0.0], "best_model": None}
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    per_epoch = len(train_set) // settings.batch_size + (len(train_set) % settings.batch_size >= 2)
    total_steps = max(settings.epochs * per_epoch, 1)
    epochs = tqdm(
        range(state["epoch"], settings.epochs),
        desc=f"fold {fold}",
        unit="epoch",
        disable=not progress,
        initial=state["epoch"],
        total=settings.epochs,
    )
    for epoch in epochs:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(_seed(seed, fold, epoch))
        torch.manual_seed(_seed(seed, fold, epoch, 1))  # dropout
        batches = epoch_batches(len(train_set), settings.batch_size, generator)
        model.train()
        loss_sum = seen = 0.0
        for step, batch in enumerate(tqdm(batches, desc="batches", leave=False, disable=not progress)):
            t = epoch * per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * t / total_steps))
            chosen = [train_set[i] for i in batch]
            x, side_mm = cache.batch([lesion.index for lesion in chosen], train=True)
            x = augment_batch(x.to(device), side_mm, settings.augmentation, generator)
            labels = torch.tensor([lesion.label for lesion in chosen], device=device)
            binary, seven = model(x)
            loss = multitask_loss(binary, seven, labels, settings.binary_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, seen = loss_sum + float(loss.detach()) * len(batch), seen + len(batch)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1)}
        record |= evaluate(model, cache, val_set, config, device)
        record["seconds"] = round(time.perf_counter() - started, 2)
        score = [record["val_accuracy_seven"], -record["val_loss"]]
        if state["best_model"] is None or score > state["best_score"]:
            state |= {"best_model": _cpu_copy(model), "best_epoch": epoch + 1, "best_score": score}
        state |= {"epoch": epoch + 1, "history": [*state["history"], record]}
        state |= {"model": _cpu_copy(model), "optimizer": optimizer.state_dict()}
        _save(state, state_path)
        epochs.set_postfix(loss=f"{record['train_loss']:.3f}", val_acc=f"{record['val_accuracy_seven']:.2f}")
        if callback is not None:
            callback({"fold": fold, **record})
    return state


# --- the run ----------------------------------------------------------------------------------------------


def _write_json(data, path: Path) -> None:
    partial = path.with_name(f".{path.name}")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _prepare(config: Config, run_dir: Path, data_sha256: str) -> None:
    """Create the run folder, or check that an existing one is this run, unfinished."""
    if (run_dir / RUN_MANIFEST).exists():
        raise FileExistsError(f"{run_dir} holds a finished run ({RUN_MANIFEST} present); use a new folder")
    if (run_dir / "config.json").exists():
        if load_config(run_dir / "config.json") != config:
            raise ValueError(f"{run_dir}/config.json differs from the config given; resume with the same config")
        started = json.loads((run_dir / "state" / "run.json").read_text())
        if started["data_manifest_sha256"] != data_sha256:
            raise ValueError(f"{run_dir} was started on another {MANIFEST_NAME}; resume with the same data")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} exists, is not empty and is not a run folder")
    (run_dir / "state").mkdir(parents=True, exist_ok=True)
    _write_json({"data_manifest_sha256": data_sha256}, run_dir / "state" / "run.json")
    _write_json(config.to_dict(), run_dir / "config.json")


def train(
    config: Config,
    data_dir: Path,
    run_dir: Path,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    workers: int | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Train ``config.training.folds`` models on the development split of ``data_dir``; returns ``run_dir``.

    Resumes an interrupted run in ``run_dir`` (same config and data). ``device`` None = CUDA when present,
    else CPU. ``callback`` gets each finished epoch's record (fold, epoch, losses, accuracies) after its
    state is saved; an exception from it interrupts the run. ``workers``: preprocessing processes (default:
    the CPU count, at most 8). ``cache_dir``: keep the preprocessed patches there for later runs (default:
    ``run_dir/cache``, removed when the run is complete).
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    device = torch.device(device) if device is not None else select_device()
    started = time.perf_counter()
    entries = read_manifest(data_dir)
    data_sha256 = sha256_file(data_dir / MANIFEST_NAME)
    _prepare(config, run_dir, data_sha256)
    lesions = development_lesions(entries)
    patches = cache_folder(Path(cache_dir) if cache_dir is not None else run_dir / "cache", config, data_sha256)
    problems = build_cache(data_dir, entries, lesions, patches, config, workers, progress)
    usable = [lesion for lesion in lesions if lesion.index not in problems]
    folds = config.training.folds
    fold_of = assign_folds([x.patient for x in usable], [x.label for x in usable], folds, config.training.seed)
    cache = PatchCache(patches)
    previous = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    reports = []
    try:
        for fold in range(1, folds + 1):
            state_path = run_dir / "state" / f"fold-{fold}.pt"
            val_set = [x for x, f in zip(usable, fold_of, strict=True) if f == fold - 1]
            train_set = [x for x, f in zip(usable, fold_of, strict=True) if f != fold - 1]
            state = torch.load(state_path, weights_only=True) if state_path.exists() else {"done": False}
            if not state.get("done"):
                state = train_fold(fold, train_set, val_set, cache, config, state_path, device, progress, callback)
                _save(state["best_model"], run_dir / f"fold-{fold}.pt")
                state = {key: state[key] for key in ("history", "best_epoch")} | {"done": True}
                _save(state, state_path)
            reports.append(
                {
                    "fold": fold,
                    "train_lesions": len(train_set),
                    "best_epoch": state["best_epoch"],
                    "validation": [x.key for x in val_set],
                    "epochs": state["history"],
                }
            )
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous
    _finish(config, run_dir, lesions, problems, reports, device, time.perf_counter() - started)
    return run_dir


def _finish(
    config: Config,
    run_dir: Path,
    lesions: list[Lesion],
    problems: dict[int, str],
    reports: list[dict],
    device: torch.device,
    seconds: float,
) -> None:
    """metrics.json, then remove state/ and cache/, then manifest.json (last: its presence = complete)."""
    data = json.loads((run_dir / "state" / "run.json").read_text())
    best = [fold["epochs"][fold["best_epoch"] - 1] | {"n": len(fold["validation"])} for fold in reports]
    pooled = {
        key: sum(b[key] * b["n"] for b in best) / max(sum(b["n"] for b in best), 1)
        for key in ("val_loss", "val_accuracy_seven", "val_accuracy_binary")
    }
    metrics = {
        "selection": SELECTION,
        "seed": config.training.seed,
        "device": str(device),
        "wall_seconds_last_session": round(seconds, 1),
        "data": data
        | {
            "development_lesions": len(lesions) - len(problems),
            "skipped": [{"lesion": lesions[i].key, "problem": p} for i, p in sorted(problems.items())],
        },
        "cross_validation_at_best_epochs": pooled,
        "folds": reports,
    }
    _write_json(metrics, run_dir / "metrics.json")
    shutil.rmtree(run_dir / "state", ignore_errors=True)
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    write_run_manifest(run_dir)


def write_run_manifest(run_dir: Path) -> Path:
    """``manifest.json``: {"files": {relative path: sha256}} for every file in the run except itself."""
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != RUN_MANIFEST)
    digests = {p.relative_to(run_dir).as_posix(): sha256_file(p) for p in files}
    _write_json({"algorithm": "sha256", "files": digests}, run_dir / RUN_MANIFEST)
    return run_dir / RUN_MANIFEST
