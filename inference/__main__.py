"""Command line of the ``inference`` package: ``python -m inference COMMAND ...``.

Commands are subparsers, each added by an ``_add_<command>`` function here. A handler returns the exit status;
the errors it expects from bad input (a missing or malformed file, an unknown case) reach ``main``, which
prints them as ``error: …`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path


def _phantoms(args: argparse.Namespace) -> int:
    from inference.phantoms import make_cohort

    manifest = make_cohort(
        args.out_dir,
        lesions_per_class=args.lesions_per_class,
        seed=args.seed,
        test_fraction=args.test_fraction,
        atypical_fraction=args.atypical_fraction,
        matrix_scale=args.matrix_scale,
        progress=not args.quiet,
    )
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    splits = Counter(row["split"] for row in rows)
    size_mb = sum(p.stat().st_size for p in manifest.parent.rglob("*") if p.is_file()) / 1e6
    folder = manifest.parent
    print(
        f"Wrote {len({row['case'] for row in rows})} cases with {len(rows)} lesions ({splits['development']} "
        f"development, {splits['test']} test; {size_mb:.0f} MB) to {folder}; "
        f"import with: python manage.py import_dataset {folder}"
    )
    return 0


def _add_phantoms(commands) -> None:
    parser = commands.add_parser(
        "phantoms",
        help="write a synthetic cohort in the dataset import layout",
        description=(
            "Write a synthetic multisequence liver MRI cohort (seven sequences per case on their own grids, "
            "one mask per lesion per sequence, manifest.csv) in the layout the dataset importer reads. "
            "The default (20 lesions per class, 140 lesions) is the demo cohort; an evaluation cohort is "
            "--lesions-per-class 50 --seed 1. The same arguments always write the same bytes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("out_dir", type=Path, metavar="OUT_DIR", help="folder to create (absent or empty)")
    add("--lesions-per-class", type=int, default=20, help="lesions of each of the seven classes")
    add("--seed", type=int, default=0, help="random seed")
    add("--test-fraction", type=float, default=0.2, help="fraction of the lesions in the test split")
    add("--atypical-fraction", type=float, default=0.15, help="fraction that look like a neighbour class")
    add("--matrix-scale", type=float, default=1.0, help="matrix/slice-count scale (< 1: fast)")
    add("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_phantoms)


def _train(args: argparse.Namespace) -> int:
    from inference.config import load_config
    from inference.training import train

    run_dir = args.run_dir or Path("runs") / f"{args.config}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = load_config(args.config)
    train(config, args.data, run_dir, device=args.device, progress=not args.quiet)
    print(f"Trained {config.training.folds} fold models into {run_dir}")
    return 0


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="five-fold cross-validated training on a dataset's development split",
        description=(
            "Train the multitask network (one model per fold) on the development split of a dataset in the "
            "import layout. Running the same command again with the same --run-dir resumes an interrupted run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--config", default="cpu", help="a config name (cpu, paper) or a path to a config JSON")
    add("--data", type=Path, required=True, help="dataset folder with manifest.csv")
    add("--run-dir", type=Path, help="run folder (default: runs/<config>-<time>)")
    add("--device", help="cpu, cuda, cuda:1 … (default: CUDA when present, else CPU)")
    add("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_train)


def _predict(args: argparse.Namespace) -> int:
    from inference.prediction import predict_dataset, write_predictions_csv

    records = predict_dataset(
        args.run_dir,
        args.data,
        batch_size=args.batch_size,
        split=args.split,
        device=args.device,
        progress=not args.quiet,
    )
    out = write_predictions_csv(records, args.out)
    failed = sum(1 for record in records if record["error"])
    print(f"Predicted {len(records) - failed} lesion(s) into {out}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="ensemble prediction (five fold models averaged) for every lesion of a dataset",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("run_dir", type=Path, metavar="RUN_DIR", help="a finished training run")
    add("--data", type=Path, required=True, help="dataset folder with manifest.csv")
    add("--out", type=Path, default=Path("predictions.csv"), help="CSV to write")
    add("--split", choices=("development", "test"), help="only this split (default: all lesions)")
    add("--batch-size", type=int, default=8, help="lesions per forward pass")
    add("--device", help="cpu, cuda, … (default: CUDA when present, else CPU)")
    add("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_predict)


def _saliency(args: argparse.Namespace) -> int:
    from inference.dataset import load_case
    from inference.manifest import read_manifest
    from inference.prediction import Ensemble
    from inference.preprocess import preprocess_lesion
    from inference.saliency import compute_saliency, save_saliency

    ensemble = Ensemble.load(args.run_dir, args.device)
    entry = read_manifest(args.data).get(args.case)
    row = next((row for row in entry.lesions if row.name == args.lesion), None) if entry else None
    if row is None:
        raise ValueError(f"{args.data / 'manifest.csv'}: no lesion {args.case}/{args.lesion}")
    case = load_case(args.data / args.case, entry)
    masks = case.masks[args.lesion]
    patch = preprocess_lesion(case.volumes, masks, row.diameter_mm, size=ensemble.config.model.input_size)
    saliency = compute_saliency(ensemble.models, patch, case.volumes, masks, ensemble.config.saliency)
    paths = save_saliency(saliency, case.volumes, args.out)
    print(f"Saliency of {args.case}/{args.lesion} written to {args.out} (panel: {paths['panel']})")
    return 0


def _add_saliency(commands) -> None:
    parser = commands.add_parser(
        "saliency",
        help="heat maps (NIfTI, on each sequence's grid), sequence weights (JSON) and a PNG panel for one lesion",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("run_dir", type=Path, metavar="RUN_DIR", help="a finished training run")
    add("--data", type=Path, required=True, help="dataset folder with manifest.csv")
    add("--case", required=True, help="case folder name")
    add("--lesion", required=True, help="lesion name within the case")
    add("--out", type=Path, required=True, help="folder to write into")
    add("--device", help="cpu, cuda, … (default: CUDA when present, else CPU)")
    parser.set_defaults(handler=_saliency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_phantoms(commands)
    _add_train(commands)
    _add_predict(commands)
    _add_saliency(commands)
    args = parser.parse_args(argv)
    from inference.dataset import CaseRejected

    try:
        return args.handler(args)
    except (ValueError, OSError, CaseRejected) as exc:  # ManifestError and VolumeError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
