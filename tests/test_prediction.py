"""Ensemble prediction from a finished run: verification, averaging, batched dataset prediction (no Django)."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import one_thread  # noqa: F401 (one_thread: autouse fixture)

from inference.dataset import load_case
from inference.domain import CLASSES
from inference.manifest import read_manifest
from inference.model import MALIGNANT_INDICES
from inference.prediction import CSV_COLUMNS, Ensemble, predict_dataset, write_predictions_csv
from inference.preprocess import preprocess_lesion


@pytest.fixture(scope="module")
def ensemble(trained_run) -> Ensemble:
    return Ensemble.load(trained_run, device="cpu")


def test_the_ensemble_is_the_runs_fold_models_in_eval_mode(ensemble):
    assert len(ensemble.models) == ensemble.config.training.folds == 2
    assert not any(model.training for model in ensemble.models)
    assert ensemble.config.model.name == "tiny"


def test_ensemble_probabilities_are_the_mean_of_the_folds_softmax(ensemble):
    x = torch.rand(3, 7, 2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    binary, seven = ensemble.predict(x)
    with torch.no_grad():
        outputs = [model(x) for model in ensemble.models]
    expected_binary = torch.stack([b.softmax(1) for b, _ in outputs]).mean(0)
    expected_seven = torch.stack([s.softmax(1) for _, s in outputs]).mean(0)
    assert binary.shape == (3, 2) and seven.shape == (3, 7)
    assert torch.allclose(binary, expected_binary, atol=1e-6) and torch.allclose(seven, expected_seven, atol=1e-6)
    assert torch.allclose(seven.sum(1), torch.ones(3)) and torch.allclose(binary.sum(1), torch.ones(3))
    assert not torch.allclose(outputs[0][1].softmax(1), outputs[1][1].softmax(1))  # the folds differ


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.mark.parametrize("name", ["fold-2.pt", "config.json", "metrics.json"])
def test_a_tampered_file_is_refused_by_name(trained_run, tmp_path, name):
    copy = copy_of(trained_run, tmp_path)
    content = bytearray((copy / name).read_bytes())
    content[len(content) // 2] ^= 1
    (copy / name).write_bytes(bytes(content))
    with pytest.raises(ValueError, match=rf"{name}: SHA-256 differs"):
        Ensemble.load(copy, device="cpu")


def test_a_missing_file_or_manifest_is_refused_by_name(trained_run, tmp_path):
    copy = copy_of(trained_run, tmp_path)
    (copy / "fold-1.pt").unlink()
    with pytest.raises(ValueError, match="fold-1.pt: listed in manifest.json but missing"):
        Ensemble.load(copy, device="cpu")
    (copy / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest.json: missing"):
        Ensemble.load(copy, device="cpu")


@pytest.fixture(scope="module")
def development(trained_run, phantom_cohort) -> tuple[list[dict], list[int]]:
    """predict_dataset on the development split with batch_size 2: (records, sizes of the batches predicted)."""
    batches, predict = [], Ensemble.predict

    def spy(self, patches):
        batches.append(len(patches))
        return predict(self, patches)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Ensemble, "predict", spy)
        return predict_dataset(trained_run, phantom_cohort, batch_size=2, split="development", device="cpu"), batches


def test_predict_dataset_batches_lesions_and_reports_both_tasks(phantom_cohort, development):
    records, batches = development
    entries = read_manifest(phantom_cohort).values()
    rows = [(e.name, r.name) for e in entries for r in e.lesions if r.split == "development"]
    assert [(r["case"], r["lesion"]) for r in records] == sorted(rows)
    assert batches == [2] * (len(rows) // 2) + [1] * (len(rows) % 2)  # 7 lesions today: the last batch has one
    for record in records:
        assert record["error"] is None and record["split"] == "development" and record["label"] in CLASSES
        assert len(record["p_seven"]) == 7 and sum(record["p_seven"]) == pytest.approx(1, abs=1e-5)
        assert record["predicted"] == CLASSES[int(np.argmax(record["p_seven"]))]
        malignant = sum(record["p_seven"][i] for i in MALIGNANT_INDICES)
        assert record["p_malignant_seven"] == pytest.approx(malignant)
        assert 0 <= record["p_malignant"] <= 1 and record["predicted_malignant"] == (record["p_malignant"] >= 0.5)


def test_a_dataset_lesion_equals_its_patch_predicted_alone(phantom_cohort, ensemble, development):
    first = development[0][0]
    entry = read_manifest(phantom_cohort)[first["case"]]
    row = next(r for r in entry.lesions if r.name == first["lesion"])
    case = load_case(phantom_cohort / entry.name, entry)
    patch = preprocess_lesion(case.volumes, case.masks[row.name], row.diameter_mm, size=16)
    binary, seven = ensemble.predict(torch.from_numpy(patch.array)[None])
    assert np.allclose(first["p_seven"], seven[0].numpy(), atol=1e-5)
    assert first["p_malignant"] == pytest.approx(float(binary[0, 1]), abs=1e-5)


def test_an_unreadable_case_gives_an_error_record_and_the_rest_are_predicted(trained_run, phantom_cohort, tmp_path):
    broken = Path(shutil.copytree(phantom_cohort, tmp_path / "data"))
    records = read_manifest(broken)
    victim = sorted(e.name for e in records.values() if any(r.split == "test" for r in e.lesions))[0]
    (broken / victim / "ADC.nii.gz").unlink()
    predictions = predict_dataset(trained_run, broken, batch_size=4, split="test", device="cpu")
    failed = [r for r in predictions if r["error"]]
    assert {r["case"] for r in failed} == {victim} and "missing sequence ADC" in failed[0]["error"]
    assert failed[0]["p_seven"] is None and all(r["p_seven"] for r in predictions if not r["error"])
    path = write_predictions_csv(predictions, tmp_path / "predictions.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(predictions)
    for row, record in zip(rows, predictions, strict=True):
        if record["error"]:
            assert row["p_malignant"] == "" and row["error"]
        else:
            assert float(row["p_malignant"]) == pytest.approx(record["p_malignant"], abs=1e-6)
            assert sum(float(row[f"p_{name}"]) for name in CLASSES) == pytest.approx(1, abs=1e-4)


def test_the_command_line_names_bad_input_and_exits_with_status_2(trained_run, phantom_cohort, tmp_path, capsys):
    from inference.__main__ import main

    copy = copy_of(trained_run, tmp_path)
    (copy / "fold-1.pt").write_bytes(b"altered")
    assert main(["predict", str(copy), "--data", str(phantom_cohort), "--out", str(tmp_path / "p.csv")]) == 2
    assert "fold-1.pt: SHA-256 differs" in capsys.readouterr().err
    arguments = ["--data", str(phantom_cohort), "--case", "C9999", "--lesion", "L1", "--out", str(tmp_path / "s")]
    assert main(["saliency", str(trained_run), *arguments]) == 2
    assert "no lesion C9999/L1" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "manifest.csv" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "s").exists()
