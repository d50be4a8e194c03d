"""Load benchmark: simulated readers against gunicorn + PostgreSQL; per-endpoint throughput and latency, errors,
and the clients' acknowledged reads reconciled with the database.

    .venv/bin/python bench/load_bench.py [--readers 50] [--think 5 20] [--duration 300]
                                         [--step 20] [--max-clients 32] [--workers 2] [--threads 4]

Setup: a fresh ``liverread_load`` database on the machine's PostgreSQL (dropped and recreated: the server a
deployment would use, already tuned and running; nothing here needs to break it, unlike tests/test_faults.py),
Redis db 13 as the broker, a scratch media store, the phantom cohort (``--lesions-per-class`` 5: 35 lesions in
29 cases of realistic size, generated once into var/bench/load/), one open unaided study over every lesion with
a 120 mm lesion-centred field of view, ``--readers`` readers for phase 1 and ``--pool`` more for phase 2. Every
lesion's served volumes are made once before the clock starts (as after each lesion's first reader). gunicorn
runs gthread workers (``--workers`` × ``--threads``; the app is loaded before forking).

Each simulated reader (tests/reader_client.py) logs in, then loops: next → descriptor → seven images and
seven masks → think → POST the read (10 % double-submitted at once), retrying a 503 or a lost connection.

- Phase 1, think time: ``--readers`` readers arriving (logging in) uniformly over the first ``--ramp`` s,
  think uniform in ``--think`` s, for ``--duration`` s. (A login hashes the password: PBKDF2, 1,000,000
  rounds, about 0.3 s of a core here; 50 arrivals within seconds would be a login storm of their own.)
- Phase 2, saturation: no think time; clients are added in steps (1, 2, 4, … ``--max-clients``), each step
  measured for ``--step`` s once its new clients have logged in; a reader who finishes the study hands over
  to a fresh account (a login). It stops at the first step whose reads/s is not 5 % above the best step's;
  the best step is the maximum sustained throughput.

Prints per phase and endpoint: requests, requests/s, p50/p95/p99 latency (ms) and errors (any answer but
200/201/302, or none); then the reconciliation of every acknowledged read with the database: lost and
duplicated must both be 0, else the exit status is 1. Writes bench/results/load.json. Ctrl-C stops the
readers and gunicorn and removes the database and the scratch folder.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.worker_bench import postgres  # noqa: E402
from tests.reader_client import Behaviour, Crowd, Log, Request, reconcile  # noqa: E402
from tests.services import Gunicorn  # noqa: E402

DATABASE = "liverread_load"
REDIS_URL = "redis://127.0.0.1:6379/13"
PASSWORD = "load-bench-password"
OK = {200, 201, 302}
ENDPOINTS = ("login", "page", "next", "lesion", "image", "mask", "read", "read-again")
TIMEOUT_S = 30.0
"""A request unanswered this long counts as an error (and is retried)."""
GROWTH = 1.05
"""A saturation step must beat the best step's reads/s by this factor for the ramp to go on."""


def endpoint_table(requests: list[Request], seconds: float) -> dict[str, dict]:
    """Per endpoint: count, requests/s over ``seconds``, p50/p95/p99 latency (ms), errors."""
    table = {}
    for endpoint in ENDPOINTS:
        rows = [r for r in requests if r.endpoint == endpoint]
        if not rows:
            continue
        p50, p95, p99 = np.percentile([1000 * r.latency_s for r in rows], [50, 95, 99])
        table[endpoint] = {
            "count": len(rows),
            "per_s": len(rows) / seconds,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "errors": sum(r.status not in OK for r in rows),
        }
    return table


def print_table(title: str, table: dict[str, dict]) -> None:
    print(f"\n{title}\n{'endpoint':<11}{'count':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for endpoint, row in table.items():
        print(
            f"{endpoint:<11}{row['count']:>8}{row['per_s']:>9.2f}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}"
            f"{row['p99_ms']:>9.1f}{row['errors']:>8}"
        )


def reads_done(requests: list[Request]) -> int:
    return sum(r.endpoint == "read" and r.status in (200, 201) for r in requests)


def think_phase(server: Gunicorn, study: str, accounts: list[str], args) -> dict:
    log = Log()
    behaviour = Behaviour(think_s=tuple(args.think), timeout_s=TIMEOUT_S)
    crowd = Crowd(server.base_url, study, [(a, PASSWORD) for a in accounts], behaviour, log, seed=1)
    started, cpu = time.monotonic(), server.cpu_seconds()
    try:
        crowd.add(len(accounts), stagger_s=args.ramp)
        time.sleep(args.duration)
    finally:
        crowd.stop()
    seconds, cpu = time.monotonic() - started, server.cpu_seconds() - cpu
    table = endpoint_table(log.requests, seconds)
    print_table(
        f"phase 1: {len(accounts)} readers, think {args.think[0]:g}-{args.think[1]:g} s, {seconds:.0f} s", table
    )
    reads = reads_done(log.requests)
    print(
        f"reads: {reads} ({reads / seconds:.2f}/s); gunicorn CPU {cpu:.1f} s ({100 * cpu / seconds:.0f} % of a "
        f"core, {1000 * cpu / max(reads, 1):.0f} ms per read with its requests); "
        f"failures: {len(log.failures)}"
    )
    return {"seconds": seconds, "endpoints": table, "reads": reads, "gunicorn_cpu_s": cpu, "log": log}


def saturation_phase(server: Gunicorn, study: str, accounts: list[str], args) -> dict:
    log = Log()
    behaviour = Behaviour(think_s=(0.0, 0.0), timeout_s=TIMEOUT_S)
    crowd = Crowd(server.base_url, study, [(a, PASSWORD) for a in accounts], behaviour, log, seed=2)
    steps, clients = [], 0
    print(f"\nphase 2: saturation, no think time, steps of {args.step:g} s")
    print(f"{'clients':>8}{'reads/s':>9}{'req/s':>9}{'read p95 ms':>13}{'errors':>8}{'CPU ms/read':>13}")
    try:
        while clients < args.max_clients:
            added = min(max(1, clients), args.max_clients - clients)  # 1, 2, 4, 8, ...
            crowd.add(added)
            clients += added
            crowd.wait_logged_in(120)
            start, cpu = time.monotonic(), server.cpu_seconds()
            time.sleep(args.step)
            end, cpu = time.monotonic(), server.cpu_seconds() - cpu
            window = [r for r in list(log.requests) if start <= r.started_s and r.started_s + r.latency_s <= end]
            table = endpoint_table(window, end - start)
            step = {
                "clients": clients,
                "reads_per_s": reads_done(window) / (end - start),
                "requests_per_s": len(window) / (end - start),
                "endpoints": table,
                "errors": sum(r.status not in OK for r in window),
                "gunicorn_cpu_ms_per_read": 1000 * cpu / max(reads_done(window), 1),
            }
            steps.append(step)
            read_p95 = table.get("read", {}).get("p95_ms", float("nan"))
            print(
                f"{clients:>8}{step['reads_per_s']:>9.2f}{step['requests_per_s']:>9.1f}{read_p95:>13.1f}"
                f"{step['errors']:>8}{step['gunicorn_cpu_ms_per_read']:>13.0f}",
                flush=True,
            )
            if len(steps) > 1 and step["reads_per_s"] < GROWTH * max(s["reads_per_s"] for s in steps[:-1]):
                break
    finally:
        crowd.stop()
    best = max(steps, key=lambda s: s["reads_per_s"]) if steps else None
    if best:
        print_table(
            f"best step: {best['clients']} clients, {best['reads_per_s']:.2f} reads/s "
            f"({best['requests_per_s']:.1f} requests/s)",
            best["endpoints"],
        )
    print(f"failures: {len(log.failures)}; accounts left in the pool: {crowd.accounts.qsize()}")
    return {"steps": steps, "best": best, "log": log}


def cohort(folder: Path, lesions_per_class: int) -> Path:
    """The phantom cohort, generated once (into a temporary folder renamed when complete)."""
    from inference.phantoms import make_cohort

    if not folder.exists():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        make_cohort(partial, lesions_per_class=lesions_per_class, progress=True)
        partial.rename(folder)
    return folder


def fresh_state() -> Path:
    """An empty ``DATABASE`` and a scratch folder (media, var), named in the environment this process and
    gunicorn share; returns the folder."""
    for statement in ("DROP DATABASE IF EXISTS {} WITH (FORCE)", "CREATE DATABASE {}"):
        postgres(statement.format(DATABASE))
    scratch = Path(tempfile.mkdtemp(prefix="liverread-load-bench-", dir=ROOT / "var"))
    os.environ |= {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "CELERY_BROKER_URL": REDIS_URL,
        "MEDIA_ROOT": str(scratch / "media"),
        "LIVERREAD_VAR": str(scratch),
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
    }
    return scratch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--think", type=float, nargs=2, default=[5.0, 20.0], metavar=("MIN", "MAX"))
    parser.add_argument("--duration", type=float, default=300.0, help="phase 1 length, seconds (0: no phase 1)")
    parser.add_argument("--ramp", type=float, default=60.0, help="phase 1 readers arrive over this many seconds")
    parser.add_argument("--step", type=float, default=20.0, help="saturation step length, seconds (0: no phase 2)")
    parser.add_argument("--max-clients", type=int, default=32)
    parser.add_argument("--pool", type=int, default=300, help="accounts for phase 2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--lesions-per-class", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()

    data = cohort(ROOT / "var" / "bench" / "load" / f"phantoms-{args.lesions_per_class}", args.lesions_per_class)
    scratch = fresh_state()
    server = None
    try:
        import django

        django.setup()
        from readerstudy.studies.models import ReaderStudy
        from readerstudy.studies.viewing import descriptor
        from tests.load_study import prepare, stored_reads

        started = time.perf_counter()
        world = prepare(data, args.readers + args.pool, PASSWORD)
        study = ReaderStudy.objects.get(public_id=world["study"])
        print(
            f"imported {study.lesions.count()} lesions, {len(world['accounts'])} readers assigned in "
            f"{time.perf_counter() - started:.0f} s"
        )
        started = time.perf_counter()
        for lesion in study.lesions.all():
            descriptor(study, lesion)  # makes and caches the lesion's served images and masks
        print(f"served volumes made in {time.perf_counter() - started:.0f} s")
        connections.close_all()

        server = Gunicorn(dict(os.environ), scratch / "gunicorn.log", workers=args.workers, threads=args.threads)
        server.wait_ready()
        print(f"gunicorn: {args.workers} workers × {args.threads} threads (gthread) on {os.cpu_count()} cores")
        accounts = world["accounts"]
        think = think_phase(server, world["study"], accounts[: args.readers], args) if args.duration else None
        saturation = saturation_phase(server, world["study"], accounts[args.readers :], args) if args.step else None
        logs = [phase["log"] for phase in (think, saturation) if phase]

        acknowledged = [read for log in logs for read in log.acknowledged]
        result = reconcile(acknowledged, stored_reads(world["study"]))
        print(
            f"\nreconciliation: {len(acknowledged)} acknowledged reads ({len(set(a.read for a in acknowledged))} "
            f"distinct); lost {len(result['lost'])}, duplicated {len(result['duplicated'])}; stored but never "
            f"acknowledged (a request given up or cut by the end): {len(result['unacknowledged'])}"
        )
        failures = [failure for log in logs for failure in log.failures]
        for failure in failures[:10]:
            print(f"  failure: {failure}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
                    | {"cores": os.cpu_count(), "lesions": study.lesions.count()},
                    "think": {k: v for k, v in think.items() if k != "log"} if think else None,
                    "saturation": {k: v for k, v in saturation.items() if k != "log"} if saturation else None,
                    "reconciliation": {k: len(v) for k, v in result.items()},
                    "failures": failures,
                },
                indent=2,
            )
        )
        print(f"written {args.out.relative_to(ROOT)}")
        return 1 if result["lost"] or result["duplicated"] else 0
    finally:
        if server is not None:
            server.stop()
        connections.close_all()
        postgres(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted; the readers and gunicorn were stopped, the database and scratch folder removed")
