"""Worker benchmark: throughput of one CPU Celery worker, latency from import to a visible prediction, and the
worker's resident memory over many predictions — against the real PostgreSQL and Redis on 127.0.0.1.

    .venv/bin/python bench/worker_bench.py --run RUN_DIR [--data DIR] [--predictions 500] [--latency 5]
    .venv/bin/python bench/worker_bench.py --untrained paper [--predictions 16] [--latency 0]

A fresh ``liverread_bench`` database and a scratch media store are made, DIR (default: the phantom_quality
demo cohort) is imported, the run is registered, one worker (``celery worker -Q inference -c 1``, prefork) is
started and the version is activated: predictions are made in rounds over every lesion (the rows are
deleted between rounds, a benchmark-only step) until ``--predictions`` are done. ``--untrained paper`` makes a
run folder of randomly initialised fold models instead (latency does not depend on the weights).

Prints lesions per minute (first prediction dispatched → last one done, model loading included, and again
for the later rounds), the pool process's resident memory (VmRSS) every 50 predictions, and for
``--latency`` single-case imports the time from the import's start to its prediction being done.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "liverread_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"


def postgres(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def untrained_run(config_name: str, folder: Path) -> Path:
    """A run folder with randomly initialised fold models, config, metrics and a manifest."""
    import torch

    from inference.config import load_config
    from inference.dataset import sha256_file
    from inference.model import LiverLesionNet

    config = load_config(config_name)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "metrics.json").write_text(json.dumps({"folds": [], "note": "untrained, for benchmarks"}))
    for fold in range(1, config.training.folds + 1):
        torch.manual_seed(fold)
        torch.save(LiverLesionNet(config.model).state_dict(), folder / f"fold-{fold}.pt")
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())}
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return folder


def pool_pid(main_pid: int) -> int:
    """The prefork pool process of the worker (its only child)."""
    children = Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split()
    return int(children[0]) if children else main_pid


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="trained run folder")
    parser.add_argument("--untrained", help="config name: benchmark randomly initialised fold models")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench" / "phantom_quality" / "demo")
    parser.add_argument("--predictions", type=int, default=500)
    parser.add_argument("--latency", type=int, default=5, help="single-case imports to time")
    parser.add_argument("--cases", type=int, help="use only the first N cases of --data")
    args = parser.parse_args()
    if (args.run is None) == (args.untrained is None):
        parser.error("give --run or --untrained")

    scratch = Path(tempfile.mkdtemp(prefix="liverread-worker-bench-", dir=ROOT / "var"))
    postgres(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    postgres(f"CREATE DATABASE {DATABASE}")
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        CELERY_BROKER_URL=REDIS_URL,
        MEDIA_ROOT=str(scratch / "media"),
        LIVERREAD_VAR=str(scratch),
        DJANGO_SETTINGS_MODULE="readerstudy.settings",
    )
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from inference.dataset import copy_first_cases
    from readerstudy.cases.importer import import_dataset
    from readerstudy.cases.models import Lesion
    from readerstudy.predictions.dispatch import enqueue_predictions
    from readerstudy.predictions.models import Prediction, Saliency
    from readerstudy.predictions.registry import activate, register_run

    redis.Redis.from_url(REDIS_URL).flushdb()
    call_command("migrate", verbosity=0)
    if args.cases:
        args.data = copy_first_cases(args.data, args.cases, scratch / "data")
    started = time.perf_counter()
    import_dataset(args.data, dataset="bench")
    print(f"imported {Lesion.objects.count()} lesions in {time.perf_counter() - started:.0f} s")
    run_dir = args.run or untrained_run(args.untrained, scratch / f"untrained-{args.untrained}")
    version = register_run(run_dir, name="bench")

    log = (scratch / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "readerstudy",
            "worker",
            "-Q",
            "inference",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=os.environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2):
            samples.append(
                (
                    time.perf_counter(),
                    Prediction.objects.filter(status="done").count() + base[0],
                    rss_mb(pool_pid(worker.pid)),
                )
            )

    base = [0]  # predictions done in rounds whose rows were deleted
    try:
        time.sleep(5)
        threading.Thread(target=sample, daemon=True).start()
        lesions, rounds = Lesion.objects.count(), []
        while len(rounds) * lesions < args.predictions:
            started = time.perf_counter()
            if not rounds:
                activate(version)
            else:
                enqueue_predictions(version)
            while Prediction.objects.exclude(status__in=["done", "failed"]).exists():
                time.sleep(0.5)
            rounds.append((lesions, time.perf_counter() - started))
            failed = Prediction.objects.filter(status="failed").count()
            print(
                f"round {len(rounds)}: {lesions} predictions ({failed} failed) in {rounds[-1][1]:.0f} s "
                f"= {60 * lesions / rounds[-1][1]:.1f} lesions/min",
                flush=True,
            )
            if len(rounds) * lesions < args.predictions:
                Saliency.objects.all().delete()  # benchmark only: make room for the next round
                Prediction.objects.all().delete()
                base[0] += lesions
                shutil.rmtree(scratch / "media" / "saliency", ignore_errors=True)
        first = rounds[0]
        print(f"throughput, first round (model loading included): {60 * first[0] / first[1]:.1f} lesions/min")
        if len(rounds) > 1:
            later = sum(n for n, _ in rounds[1:]), sum(s for _, s in rounds[1:])
            print(f"throughput, later rounds: {60 * later[0] / later[1]:.1f} lesions/min")
        latencies = []
        for i in range(args.latency):
            single = copy_first_cases(args.data, 1, scratch / f"latency-{i}")
            started = time.perf_counter()
            import_dataset(single, dataset=f"latency-{i}")
            imported = time.perf_counter() - started
            waiting = Prediction.objects.filter(lesion__case__dataset=f"latency-{i}")
            while waiting.exclude(status="done").exists() or not waiting.exists():
                time.sleep(0.05)
            latencies.append((imported, time.perf_counter() - started))
        if latencies:
            print(
                f"import → prediction visible (median of {len(latencies)}): "
                f"{statistics.median(t for _, t in latencies):.2f} s "
                f"(of which the import: {statistics.median(i for i, _ in latencies):.2f} s)"
            )
    finally:
        stop.set()
        worker.terminate()
        worker.wait(timeout=60)
    print("pool process resident memory (MB) by predictions done:")
    shown = -50
    for _, count, rss in samples:
        if count >= shown + 50:
            print(f"  {count:5d}  {rss:7.0f}")
            shown = count
    rss = [r for _, c, r in samples if c >= 50]
    if rss:
        print(f"RSS after the first 50 predictions: min {min(rss):.0f} MB, max {max(rss):.0f} MB")
    shutil.rmtree(scratch, ignore_errors=True)
    postgres(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
