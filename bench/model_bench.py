"""Model benchmark: per-lesion latency of preprocessing, ensemble forward and saliency, training step time
and peak memory, for the ``cpu`` and ``paper`` configs, naive against optimised in the same run.

    .venv/bin/python bench/model_bench.py [--configs cpu paper] [--lesions 2] [--no-naive] [--device cuda]
                                          [--out FILE.json]

Each (config, measurement) runs in its own process so that its peak resident memory (ru_maxrss) is its
own. Weights are untrained: latency does not depend on their values. The lesions come from a full-size
phantom cohort (one lesion per class, seed 0), so volumes have realistic grids. With ``--device cuda`` the
models and batches live on the GPU (timings synchronise it; peak GPU memory is torch's max allocated) while
preprocessing and the mapping of heat maps back to the original grids stay on the CPU.

- naive: five separate forwards at batch 1, then MONAI ``GradCAM`` called once per branch for each of the
  five fold models (35 calls);
- one pass: ``compute_saliency`` with Grad-CAM over the five models: one hooked forward + backward per fold
  serves all seven branches and yields the ensemble probabilities too;
- the config's method (``saliency.method``: what the worker runs): for ``occlusion``, (S/b)³ forwards per fold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.config import SaliencyConfig, load_config  # noqa: E402
from inference.dataset import load_case  # noqa: E402
from inference.manifest import read_manifest  # noqa: E402
from inference.model import LiverLesionNet, SevenWayLogits, multitask_loss  # noqa: E402
from inference.phantoms import make_cohort  # noqa: E402
from inference.prediction import Ensemble  # noqa: E402
from inference.preprocess import preprocess_lesion  # noqa: E402
from inference.saliency import compute_saliency, grad_cam_layer  # noqa: E402

FOLDS = 5
COHORT = ROOT / "var" / "bench" / "model_cohort"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def lesions(count: int):
    """(volumes, masks, diameter) of the first ``count`` lesions of the benchmark cohort."""
    if not (COHORT / "manifest.csv").exists():
        make_cohort(COHORT, lesions_per_class=1, seed=0)
    found = []
    for name, entry in sorted(read_manifest(COHORT).items()):
        case = load_case(COHORT / name, entry)
        for row in entry.lesions:
            found.append((case.volumes, case.masks[row.name], row.diameter_mm))
            if len(found) == count:
                return found
    return found


def timed(function, repeat: int = 1) -> float:
    """Median wall seconds of ``repeat`` calls (the GPU, if any, synchronised before the clock stops)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_inference(config_name: str, count: int, with_naive: bool, device: torch.device) -> dict:
    from monai.visualize import GradCAM

    config = load_config(config_name)
    size = config.model.input_size
    torch.manual_seed(0)
    models = [LiverLesionNet(config.model).to(device).eval() for _ in range(FOLDS)]
    ensemble = Ensemble(config, models, device)
    cases = lesions(count)
    patches = []
    prep = []
    for volumes, masks, diameter in cases:
        prep.append(timed(lambda v=volumes, m=masks, d=diameter: patches.append(preprocess_lesion(v, m, d, size=size))))
    layer = grad_cam_layer(models[0], size)

    def naive(patch):
        x = torch.from_numpy(patch.array[None]).to(device)
        with torch.inference_mode():
            for model in models:
                model(x)
        flat = x.reshape(1, 14, size, size, size)
        for model in models:
            for branch in range(7):
                GradCAM(SevenWayLogits(model), f"model.branches.{branch}.{layer}", postprocessing=lambda t: t)(flat)

    def explained(patch, volumes, masks, settings):
        compute_saliency(models, patch, volumes, masks, settings)

    def median_over_lesions(settings) -> float:
        return statistics.median(
            timed(lambda p=p, c=c: explained(p, c[0], c[1], settings)) for p, c in zip(patches, cases, strict=True)
        )

    ensemble.predict(torch.from_numpy(patches[0].array[None]))  # warm-up
    forward = [timed(lambda p=p: ensemble.predict(torch.from_numpy(p.array[None]))) for p in patches]
    both = torch.from_numpy(np.stack([p.array for p in patches]))
    batched = timed(lambda: ensemble.predict(both)) / len(patches)
    grad_cam = SaliencyConfig("grad-cam", config.saliency.occlusion_block)
    one_pass_s = median_over_lesions(grad_cam)
    configured_s = one_pass_s if config.saliency == grad_cam else median_over_lesions(config.saliency)
    optimised_peak = peak_mb()  # ru_maxrss only grows: this is the peak before the naive path ran
    naive_s = [timed(lambda p=p: naive(p)) for p in patches[:1]] if with_naive else [float("nan")]
    return {
        "config": config_name,
        "device": device.type,
        "grad_cam_layer": layer,
        "lesions": len(patches),
        "saliency_method": config.saliency.method,
        "occlusion_block": config.saliency.occlusion_block,
        "preprocess_s": statistics.median(prep),
        "ensemble_forward_s_batch1": statistics.median(forward),
        "ensemble_forward_s_per_lesion_batched": batched,
        "prediction_and_saliency_s": configured_s,
        "total_s": statistics.median(prep) + configured_s,
        "grad_cam_one_pass_prediction_and_saliency_s": one_pass_s,
        "naive_prediction_and_saliency_s": statistics.median(naive_s),
        "speedup_naive_over_one_pass": statistics.median(naive_s) / one_pass_s,
        "peak_rss_mb_optimised": optimised_peak,
        "peak_rss_mb_with_naive": peak_mb() if with_naive else None,
        "peak_gpu_mb": peak_gpu_mb(device),
    }


def measure_training(config_name: str, batch_size: int | None, device: torch.device) -> dict:
    config = load_config(config_name)
    size, batch = config.model.input_size, batch_size or config.training.batch_size
    torch.manual_seed(0)
    model = LiverLesionNet(config.model).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.training.learning_rate)
    x = torch.rand(batch, 7, 2, size, size, size, device=device)
    labels = torch.arange(batch, device=device) % 7

    def step():
        optimiser.zero_grad()
        binary, seven = model(x)
        multitask_loss(binary, seven, labels, config.training.binary_loss_weight).backward()
        optimiser.step()

    step()  # warm-up
    seconds = timed(step, repeat=3)
    return {
        "config": config_name,
        "device": device.type,
        "batch_size": batch,
        "train_step_s": seconds,
        "train_s_per_sample": seconds / batch,
        "peak_rss_mb": peak_mb(),
        "peak_gpu_mb": peak_gpu_mb(device),
    }


def run_child(args: list[str], no_naive: bool, device: str) -> dict:
    flags = (["--no-naive"] if no_naive else []) + ["--device", device]
    output = subprocess.run(
        [sys.executable, __file__, *flags, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--lesions", type=int, default=2)
    parser.add_argument(
        "--paper-train-batch", type=int, default=2, help="batch of the paper training step (0: config's)"
    )
    parser.add_argument("--device", default="cpu", help="torch device of the models: cpu or cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model.json")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive path (minutes at full width)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, config, value = args.child
        device = torch.device(args.device)
        if kind == "inference":
            result = measure_inference(config, int(value), with_naive=not args.no_naive, device=device)
        else:
            result = measure_training(config, int(value), device=device)
        print(json.dumps(result))
        return
    lesions(args.lesions)  # make the cohort once, outside the measured children
    results = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
        "inference": [],
        "training": [],
    }
    for config in args.configs:
        results["inference"].append(run_child(["inference", config, str(args.lesions)], args.no_naive, args.device))
        batch = args.paper_train_batch if config == "paper" else 0
        results["training"].append(run_child(["training", config, str(batch)], args.no_naive, args.device))
        print(json.dumps(results["inference"][-1]), json.dumps(results["training"][-1]), sep="\n", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
