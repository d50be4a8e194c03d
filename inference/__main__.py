"""Command line of the ``inference`` package: ``python -m inference COMMAND ...``.

Commands are subparsers; each module adds its own with an ``_add_<command>`` function here.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path


def _phantoms(args: argparse.Namespace) -> int:
    from inference.phantoms import make_cohort

    try:
        manifest = make_cohort(
            args.out_dir,
            lesions_per_class=args.lesions_per_class,
            seed=args.seed,
            test_fraction=args.test_fraction,
            atypical_fraction=args.atypical_fraction,
            matrix_scale=args.matrix_scale,
            progress=not args.quiet,
        )
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_phantoms(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
