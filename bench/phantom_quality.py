"""Model quality on phantoms, end to end: train a config on the demo cohort, predict an evaluation cohort.

    .venv/bin/python bench/phantom_quality.py [--config cpu] [--demo DIR] [--eval DIR] [--runs DIR]

The demo cohort (``make_cohort(DIR)``: 20 lesions per class, seed 0) and the evaluation cohort
(``make_cohort(DIR, lesions_per_class=50, seed=1)``) are generated once if missing (default under
``var/bench/phantom_quality/``). Training uses the demo cohort's development split and a fresh run folder;
prediction covers every lesion of the evaluation cohort. Prints wall times, seven-way accuracy with a Wilson
95 % CI, two-way AUC (Mann-Whitney, binary head and summed seven-way malignant probability) with a DeLong
95 % CI, and the confusion matrix.

Saliency sanity (``--saliency-per-class N``, default 10): for the first N evaluation lesions of each class,
the five-fold averaged saliency of the predicted class (the config's method) is mapped into every sequence's
original grid. It reports the fraction of heat-map mass inside the lesion mask dilated by 5 mm: per lesion,
Σ_s Σ heat_s · voxel volume over mask_s ⊕ 5 mm / Σ_s Σ heat_s · voxel volume (the seven maps share one scale,
so a sequence that did not matter weighs little), averaged over the lesions with a normal 95 % CI, and beside
it the same fraction of each map on its own. For HCC: the mean sequence weights, and how often each of LAP,
PVP and DP outweighs T2WI.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.config import load_config  # noqa: E402
from inference.dataset import load_case  # noqa: E402
from inference.domain import CLASSES, SEQUENCES, is_malignant  # noqa: E402
from inference.manifest import read_manifest  # noqa: E402
from inference.nifti import Volume  # noqa: E402
from inference.phantoms import make_cohort  # noqa: E402
from inference.prediction import Ensemble, predict_dataset, write_predictions_csv  # noqa: E402
from inference.preprocess import preprocess_lesion  # noqa: E402
from inference.saliency import compute_saliency  # noqa: E402
from inference.training import train  # noqa: E402

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)."""
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def auc_delong(scores: np.ndarray, positive: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """AUC = P(score of a positive > score of a negative) + ½ P(tie) (Mann-Whitney U / (m·n)), and its DeLong
    (1988) 95 % CI: Var = s²(V10)/m + s²(V01)/n, V10_i / V01_j the per-positive / per-negative mean kernels."""
    x, y = scores[positive], scores[~positive]
    kernel = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    auc = float(kernel.mean())
    se = math.sqrt(kernel.mean(axis=1).var(ddof=1) / len(x) + kernel.mean(axis=0).var(ddof=1) / len(y))
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)


def cohort(folder: Path, **options) -> Path:
    if not (folder / "manifest.csv").exists():
        started = time.perf_counter()
        make_cohort(folder, progress=True, **options)
        print(f"generated {folder} in {time.perf_counter() - started:.0f} s")
    return folder


def report(records: list[dict]) -> None:
    done = [r for r in records if r["error"] is None]
    labels = np.array([CLASSES.index(r["label"]) for r in done])
    predicted = np.array([CLASSES.index(r["predicted"]) for r in done])
    malignant = np.array([is_malignant(y) for y in labels])
    n, correct = len(done), int((labels == predicted).sum())
    low, high = wilson(correct, n)
    print(f"lesions predicted: {n} ({len(records) - n} unreadable)")
    print(f"seven-way accuracy: {correct}/{n} = {correct / n:.3f} (Wilson 95% CI {low:.3f}-{high:.3f})")
    binary_correct = int((np.array([r["predicted_malignant"] for r in done]) == malignant).sum())
    low, high = wilson(binary_correct, n)
    print(f"two-way accuracy (binary head): {binary_correct}/{n} = {binary_correct / n:.3f} ({low:.3f}-{high:.3f})")
    for key, title in (("p_malignant", "binary head"), ("p_malignant_seven", "seven-way, malignant summed")):
        auc, low, high = auc_delong(np.array([r[key] for r in done]), malignant)
        print(f"two-way AUC ({title}): {auc:.4f} (DeLong 95% CI {low:.4f}-{high:.4f})")
    confusion = np.zeros((len(CLASSES), len(CLASSES)), int)
    np.add.at(confusion, (labels, predicted), 1)
    print("confusion (rows: truth, columns: predicted):")
    print(" " * 12 + " ".join(f"{c[:6]:>6}" for c in CLASSES))
    for name, row in zip(CLASSES, confusion, strict=True):
        print(
            f"{name:>11} " + " ".join(f"{v:6d}" for v in row) + f"   recall {row[CLASSES.index(name)] / row.sum():.2f}"
        )


def mass_near_lesion(heat: np.ndarray, mask: Volume, margin_mm: float = 5.0) -> tuple[float, float]:
    """(Σ heat · voxel volume inside the mask dilated by ``margin_mm`` (Euclidean, mm), Σ heat · voxel volume),
    in heat × mm³."""
    from scipy.ndimage import distance_transform_edt

    near = distance_transform_edt(mask.data == 0, sampling=mask.spacing) <= margin_mm
    voxel = float(np.prod(mask.spacing))
    return float(heat[near].sum()) * voxel, float(heat.sum()) * voxel


def saliency_sanity(run_dir: Path, evaluation: Path, per_class: int) -> None:
    ensemble = Ensemble.load(run_dir, device="cpu")
    size, taken = ensemble.config.model.input_size, [0] * len(CLASSES)
    pooled, per_map, hcc_weights, labels = [], [], [], []
    started = time.perf_counter()
    for name, entry in sorted(read_manifest(evaluation).items()):
        wanted = [row for row in entry.lesions if taken[row.label] < per_class]
        if not wanted:
            continue
        case = load_case(evaluation / name, entry)
        for row in wanted:
            taken[row.label] += 1
            masks = case.masks[row.name]
            patch = preprocess_lesion(case.volumes, masks, row.diameter_mm, size=size)
            saliency = compute_saliency(ensemble.models, patch, case.volumes, masks, ensemble.config.saliency)
            masses = np.array([mass_near_lesion(s.heatmap, masks[s.sequence]) for s in saliency.sequences])
            pooled.append(masses[:, 0].sum() / masses[:, 1].sum() if masses[:, 1].sum() > 0 else np.nan)
            per_map += [near / total for near, total in masses if total > 0]
            labels.append(row.label)
            if CLASSES[row.label] == "HCC":
                hcc_weights.append([s.weight for s in saliency.sequences])
    seconds = (time.perf_counter() - started) / sum(taken)
    pooled, per_map, labels = np.array(pooled), np.array(per_map), np.array(labels)
    low, high = wilson(int(np.sum(pooled >= 0.7)), len(pooled))
    mean, half = np.nanmean(pooled), Z95 * np.nanstd(pooled, ddof=1) / math.sqrt(len(pooled))
    print(
        f"saliency: {sum(taken)} lesions, {ensemble.config.saliency.method} maps averaged over "
        f"{len(ensemble.models)} models, {seconds:.2f} s per lesion (preprocessing included)"
    )
    print(
        f"heat-map mass inside mask ⊕ 5 mm, the seven maps of a lesion together: mean {mean:.3f} "
        f"(95% CI {mean - half:.3f}-{mean + half:.3f}), "
        f"median {np.nanmedian(pooled):.3f}, ≥ 0.70 in {np.mean(pooled >= 0.7):.0%} of lesions ({low:.0%}-{high:.0%})"
    )
    print("  per class: " + ", ".join(f"{c} {np.nanmean(pooled[labels == i]):.2f}" for i, c in enumerate(CLASSES)))
    print(
        f"  each map on its own (7 per lesion, maps with any heat): mean {np.mean(per_map):.3f}, "
        f"median {np.median(per_map):.3f}"
    )
    weights = np.array(hcc_weights)
    mean = dict(zip(SEQUENCES, weights.mean(axis=0), strict=True))
    print("HCC mean sequence weights: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    t2 = weights[:, SEQUENCES.index("T2WI")]
    for phase in ("LAP", "PVP", "DP"):
        above = np.mean(weights[:, SEQUENCES.index(phase)] > t2)
        print(f"HCC: {phase} weight > T2WI weight in {above:.0%} of {len(weights)} lesions")
    phases = weights[:, [SEQUENCES.index(p) for p in ("LAP", "PVP", "DP")]].sum(axis=1)
    print(f"HCC: LAP + PVP + DP weight > T2WI weight in {np.mean(phases > t2):.0%} of {len(weights)} lesions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = ROOT / "var" / "bench" / "phantom_quality"
    parser.add_argument("--config", default="cpu", help="config name or path")
    parser.add_argument("--demo", type=Path, default=base / "demo", help="demo cohort (training)")
    parser.add_argument("--eval", type=Path, default=base / "eval", help="evaluation cohort")
    parser.add_argument("--runs", type=Path, default=base / "runs", help="where the run folder is made")
    parser.add_argument("--cache-dir", type=Path, help="reuse preprocessed training patches (for tuning only)")
    parser.add_argument("--batch-size", type=int, default=8, help="prediction batch size")
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes for prediction")
    parser.add_argument("--saliency-per-class", type=int, default=10, help="lesions per class for saliency sanity")
    parser.add_argument("--run", type=Path, help="evaluate this trained run folder instead of training a new one")
    args = parser.parse_args()

    demo, evaluation = cohort(args.demo), cohort(args.eval, lesions_per_class=50, seed=1)
    config = load_config(args.config)
    args.runs.mkdir(parents=True, exist_ok=True)
    run_dir = args.run or args.runs / f"{config.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    if args.run is None:
        train(config, demo, run_dir, cache_dir=args.cache_dir)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    records = predict_dataset(run_dir, evaluation, batch_size=args.batch_size, workers=args.workers, progress=True)
    predicted = time.perf_counter() - started
    write_predictions_csv(records, run_dir.parent / f"{run_dir.name}-eval.csv")
    print(f"run: {run_dir}")
    if args.run is None:
        print(f"training wall time: {trained:.0f} s ({config.training.folds} folds × {config.training.epochs} epochs)")
    print(f"prediction wall time: {predicted:.0f} s for {len(records)} lesions (preprocessing included)")
    report(records)
    if args.saliency_per_class:
        saliency_sanity(run_dir, evaluation, args.saliency_per_class)


if __name__ == "__main__":
    main()
