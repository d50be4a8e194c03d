"""Analysis benchmark: a study's full results recomputed from its tidy tables (``summarise``: per-reader and
group accuracy, model metrics and AUCs, confusion matrices, every kappa pair, McNemar per reader, the AI
effect, operating points and both OR MRMC analyses), on synthetic reads of both phases.

    .venv/bin/python bench/analysis_bench.py [--readers 6 --lesions 113] [--readers 100 --lesions 10000]
    .venv/bin/python bench/analysis_bench.py --var var

Prints the wall time and the process's peak resident memory (ru_maxrss). Goals: 6 × 113 × 2 phases ≤ 1 s;
100 × 10 000 × 2 ≤ 30 s and ≤ 2 GB. With ``--var`` (``make run``'s state) it times the app's own path instead,
from the database: a copy of the demo database gets a sequential study over every demo lesion with the six
demo readers' simulated reads, and ``study_results`` is timed cold (tables, model, Table 2, every statistic)
and again cached.
"""

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inference.domain import CLASSES, MALIGNANT_CLASSES, READER_GROUPS  # noqa: E402
from readerstudy.analysis.results import summarise  # noqa: E402

MALIGNANT = np.array([c in MALIGNANT_CLASSES for c in CLASSES])


def synthetic(readers: int, lesions: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads (readers × lesions × unaided/aided; right with probability 0.75) and a model table."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, lesions)
    scanners = np.array(["Prisma", "Skyra", "Discovery"])
    lesion_data = {
        "diameter_mm": rng.gamma(3, 8, lesions),
        "cirrhosis": rng.random(lesions) < 0.3,
        "fatty_liver": rng.random(lesions) < 0.2,
        "scanner_model": scanners[rng.integers(0, 3, lesions)],
    }
    frames = []
    for phase in ("unaided", "aided"):
        truth = np.tile(labels, readers)
        wrong = rng.random(truth.size) > 0.75
        diagnosis = np.where(wrong, (truth + rng.integers(1, 7, truth.size)) % 7, truth)
        likelihood = np.clip(50 + 30 * (2 * MALIGNANT[truth] - 1) + rng.normal(0, 25, truth.size), 0, 100)
        reader = np.repeat(np.arange(readers), lesions)
        frames.append(
            pd.DataFrame(
                {
                    "reader": np.char.add("reader", reader.astype(str)),
                    "group": np.array(READER_GROUPS)[reader % 3],
                    "lesion": np.char.add("L", np.tile(np.arange(lesions), readers).astype(str)),
                    "phase": phase,
                    "label_index": truth,
                    "diagnosis_index": diagnosis,
                    "label_malignant": MALIGNANT[truth],
                    "diagnosis_malignant": MALIGNANT[diagnosis],
                    "correct": diagnosis == truth,
                    "correct_malignant": MALIGNANT[diagnosis] == MALIGNANT[truth],
                    "malignancy": likelihood.round(),
                    **{k: np.tile(v, readers) for k, v in lesion_data.items()},
                }
            )
        )
    p = rng.dirichlet(np.ones(7), lesions)
    model = pd.DataFrame(
        {
            "lesion": np.char.add("L", np.arange(lesions).astype(str)),
            "label_index": labels,
            "model_class": np.array(CLASSES)[p.argmax(1)],
            "model_p_malignant": p[:, MALIGNANT].sum(1),
            **{f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)},
        }
    )
    model["model_malignant"] = model["model_p_malignant"] > 0.5
    model["model_correct"] = p.argmax(1) == labels
    model["model_correct_malignant"] = model["model_malignant"] == MALIGNANT[labels]
    reads = pd.concat(frames, ignore_index=True)
    return reads.merge(model[["lesion", "model_correct"]], on="lesion"), model


def from_database(var: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="analysis-bench-"))
    with sqlite3.connect(var / "db.sqlite3") as source, sqlite3.connect(scratch / "db.sqlite3") as copy:
        source.backup(copy)
    os.environ.update(
        LIVERREAD_VAR=str(scratch), MEDIA_ROOT=str(var / "media"), DJANGO_SETTINGS_MODULE="readerstudy.settings"
    )
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)  # the copy may be older than the code

    from readerstudy.analysis.summary import study_results
    from readerstudy.cases.models import Lesion
    from readerstudy.studies.models import Assignment, Reader, ReaderStudy
    from readerstudy.studies.simulation import simulate_reads

    study = ReaderStudy.objects.create(name="Bench: analysis", design="sequential", is_open=False)
    study.lesions.set(Lesion.objects.filter(case__dataset="demo"))
    for reader in Reader.objects.all():
        Assignment.assign(study, reader)
    reads = simulate_reads(study)
    cache.clear()
    started = time.perf_counter()
    study_results(study)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    study_results(study)
    warm = time.perf_counter() - started
    print(
        f"from the database: {study.assignments.count()} readers × {study.lesions.count()} lesions × 2 phases "
        f"({reads} reads): {cold:.2f} s cold, {warm:.3f} s cached"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=6)
    parser.add_argument("--lesions", type=int, default=113)
    parser.add_argument("--var", type=Path, help="time the app's path from a copy of this make run state")
    args = parser.parse_args()
    if args.var:
        return from_database(args.var)
    reads, model = synthetic(args.readers, args.lesions)
    started = time.perf_counter()
    results = summarise(reads, model)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.readers} readers × {args.lesions} lesions × 2 phases ({len(reads)} reads): {seconds:.2f} s, "
        f"peak RSS {peak:.0f} MB; {len(results['kappa'])} kappa pairs, MRMC: {sorted(results['mrmc'])}"
    )


if __name__ == "__main__":
    main()
