"""Cross-validated training: folds, augmentation, the run folder, determinism and resuming (no Django)."""

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.augment import augment_batch
from inference.config import AugmentationConfig, load_config
from inference.dataset import sha256_file
from inference.domain import CLASSES
from inference.manifest import read_manifest
from inference.phantoms import make_cohort
from inference.training import assign_folds, development_lesions, epoch_batches, train

RUN_FILES = {"config.json", "fold-1.pt", "fold-2.pt", "metrics.json", "manifest.json"}
_SHARED: dict[str, Path] = {}


def tiny_config(folder: Path, **training):
    """A network small enough to train in seconds: 16³ patches, 1/8 width, 2 folds × 2 epochs."""
    data = load_config("cpu").to_dict()
    data["description"] = "test"
    data["model"] |= {"name": "tiny", "input_size": 16, "widen_factor": 0.125, "head_hidden": 16}
    data["training"] |= {"epochs": 2, "batch_size": 2, "folds": 2} | training
    path = folder / f"tiny-{len(list(folder.glob('tiny-*.json')))}.json"
    path.write_text(json.dumps(data))
    return load_config(path)


def tiny_cohort(tmp_path_factory) -> Path:
    """14 phantom lesions (2 per class, coarse matrices), made once per session."""
    if "cohort" not in _SHARED:
        _SHARED["cohort"] = tmp_path_factory.mktemp("cohort") / "data"
        make_cohort(_SHARED["cohort"], lesions_per_class=2, matrix_scale=0.25, seed=3)
    return _SHARED["cohort"]


def train_tiny(config, run_dir: Path, **options) -> Path:
    """``train`` on the tiny cohort, sharing one patch cache between the runs of the session, on one thread
    whichever module asks first (the byte-identical reruns compare against it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config, _SHARED["cohort"], run_dir, progress=False, cache_dir=_SHARED["patches"], **options)
    finally:
        torch.set_num_threads(threads)


def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run on ``tiny_cohort``, trained once per session (test_prediction uses it too)."""
    if "run" not in _SHARED:
        tiny_cohort(tmp_path_factory)
        folder = _SHARED["patches"] = tmp_path_factory.mktemp("tiny-run")
        _SHARED["run"] = train_tiny(tiny_config(folder), folder / "run")
    return _SHARED["run"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run faster on one thread than on two (and much faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


# --- folds -------------------------------------------------------------------------------------------------


def synthetic_lesions(seed=0, patients=60):
    """Patients with 1-3 lesions each, classes skewed as in the paper's development set."""
    rng = np.random.default_rng(seed)
    weights = np.array([70, 46, 79, 67, 63, 59, 60], float)
    names, labels = [], []
    for patient in range(patients):
        for _ in range(rng.choice([1, 2, 3], p=[0.75, 0.2, 0.05])):
            names.append(f"P{patient:03d}")
            labels.append(int(rng.choice(len(CLASSES), p=weights / weights.sum())))
    return names, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_keep_each_patient_in_one_fold_and_spread_every_class(seed):
    patients, labels = synthetic_lesions(seed)
    folds = assign_folds(patients, labels, 5, seed)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    fold_of_patient = {}
    for patient, fold in zip(patients, folds, strict=True):
        assert fold_of_patient.setdefault(patient, fold) == fold
    for label in set(labels):
        per_fold = Counter(f for f, y in zip(folds, labels, strict=True) if y == label)
        counts = [per_fold.get(f, 0) for f in range(5)]
        assert max(counts) - min(counts) <= 2, (CLASSES[label], counts)


def test_folds_depend_only_on_the_seed():
    patients, labels = synthetic_lesions(4)
    assert assign_folds(patients, labels, 5, 7) == assign_folds(patients, labels, 5, 7)
    assert assign_folds(patients, labels, 5, 7) != assign_folds(patients, labels, 5, 8)


def test_folds_need_a_patient_per_fold():
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        assign_folds(["P1", "P1", "P2"], [0, 1, 2], 5, 0)


def test_development_lesions_are_the_development_split_in_name_order(tmp_path_factory):
    entries = read_manifest(tiny_cohort(tmp_path_factory))
    lesions = development_lesions(entries)
    rows = sorted((e.name, r.name) for e in entries.values() for r in e.lesions if r.split == "development")
    assert [(x.case, x.lesion) for x in lesions] == rows
    assert [x.index for x in lesions] == list(range(len(rows)))


# --- batches and augmentation ----------------------------------------------------------------------------


def test_epoch_batches_cover_the_lesions_and_drop_a_batch_of_one():
    batches = epoch_batches(9, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(sum(batches, []))) == 8
    assert sorted(sum(epoch_batches(10, 4, torch.Generator().manual_seed(0)), [])) == list(range(10))


def patches(batch=3, size=16):
    x = torch.rand(batch, 7, 2, size, size, size, generator=torch.Generator().manual_seed(5))
    return x, torch.full((batch,), 64.0, dtype=torch.float64)


def test_augmentation_with_every_range_at_identity_changes_nothing():
    identity = AugmentationConfig(
        rotation_degrees=0.0,
        flip_probability=0.0,
        shift_mm=0.0,
        scale_range=(1.0, 1.0),
        brightness_range=(0.0, 0.0),
        contrast_range=(1.0, 1.0),
        noise_std=0.0,
        margin_mm_range=(5.0, 20.0),
    )
    x, side = patches()
    assert torch.allclose(augment_batch(x, side, identity, torch.Generator().manual_seed(0)), x, atol=1e-5)
    flipped = augment_batch(x, side, replace(identity, flip_probability=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, x.flip(3, 4, 5), atol=1e-5)


def test_augmentation_is_seeded_and_stays_in_range(tmp_path):
    config = tiny_config(tmp_path).training.augmentation
    x, side = patches()
    first = augment_batch(x, side, config, torch.Generator().manual_seed(1))
    assert torch.equal(first, augment_batch(x, side, config, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, augment_batch(x, side, config, torch.Generator().manual_seed(2)))
    assert first.shape == x.shape and first.min() >= 0 and first.max() <= 1


# --- the run folder --------------------------------------------------------------------------------------


def test_training_writes_checkpoints_config_metrics_and_a_manifest_of_their_hashes(run):
    assert {p.name for p in run.iterdir()} == RUN_FILES  # state/ and cache/ are gone
    manifest = json.loads((run / "manifest.json").read_text())["files"]
    assert set(manifest) == RUN_FILES - {"manifest.json"}
    assert all(sha256_file(run / name) == digest for name, digest in manifest.items())
    assert load_config(run / "config.json").model.name == "tiny"
    for fold in (1, 2):
        state = torch.load(run / f"fold-{fold}.pt", weights_only=True)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    metrics = json.loads((run / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["folds"]] == [1, 2]
    validated = sum((f["validation"] for f in metrics["folds"]), [])
    assert len(validated) == len(set(validated)) == metrics["data"]["development_lesions"]
    for fold in metrics["folds"]:
        assert [e["epoch"] for e in fold["epochs"]] == [1, 2] and 1 <= fold["best_epoch"] <= 2
        keys = {"train_loss", "val_loss", "val_accuracy_seven", "val_accuracy_binary"}
        assert all(keys <= set(e) for e in fold["epochs"])
        best = fold["epochs"][fold["best_epoch"] - 1]
        assert all(best["val_accuracy_seven"] >= e["val_accuracy_seven"] for e in fold["epochs"])


def test_a_finished_run_is_not_trained_again(run, tmp_path):
    with pytest.raises(FileExistsError, match="finished run"):
        train_tiny(load_config(run / "config.json"), run)


class Interrupt(Exception):
    pass


def stop_at(fold, epoch):
    def callback(record):
        if (record["fold"], record["epoch"]) == (fold, epoch):
            raise Interrupt

    return callback


def test_an_interrupted_run_resumes_to_the_checkpoints_of_an_uninterrupted_one(run, tmp_path):
    config = load_config(run / "config.json")
    resumed = tmp_path / "resumed"
    with pytest.raises(Interrupt):  # in the middle of fold 1
        train_tiny(config, resumed, callback=stop_at(1, 1))
    assert (resumed / "state" / "fold-1.pt").exists() and not (resumed / "manifest.json").exists()
    with pytest.raises(ValueError, match="differs from the config"):
        train_tiny(tiny_config(tmp_path, seed=1), resumed)
    with pytest.raises(Interrupt):  # fold 1 finished, fold 2 started
        train_tiny(config, resumed, callback=stop_at(2, 1))
    assert (resumed / "fold-1.pt").exists() and not (resumed / "fold-2.pt").exists()
    seen = []
    train_tiny(config, resumed, callback=lambda record: seen.append((record["fold"], record["epoch"])))
    assert seen == [(2, 2)]  # only what was left
    assert {p.name for p in resumed.iterdir()} == RUN_FILES
    for name in ("fold-1.pt", "fold-2.pt"):
        assert sha256_file(resumed / name) == sha256_file(run / name)
    epochs = [json.loads((folder / "metrics.json").read_text())["folds"] for folder in (run, resumed)]
    strip = [[{k: v for k, v in e.items() if k != "seconds"} for f in folds for e in f["epochs"]] for folds in epochs]
    assert strip[0] == strip[1]


def test_the_same_seed_gives_byte_identical_checkpoints(run, tmp_path):
    """From the data on (its own preprocessing too), two runs with one seed give the same bytes."""
    again = train(load_config(run / "config.json"), _SHARED["cohort"], tmp_path / "again", progress=False)
    for name in ("fold-1.pt", "fold-2.pt"):
        assert sha256_file(again / name) == sha256_file(run / name)


def test_a_non_empty_folder_that_is_not_a_run_is_refused(run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a run folder"):
        train_tiny(load_config(run / "config.json"), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
