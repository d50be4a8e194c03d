"""Import throughput: time ``manage.py import_dataset`` on a phantom cohort into a fresh database.

    .venv/bin/python bench/import_throughput.py [--dataset DIR] [--postgres]

Without ``--dataset`` the default demo cohort (20 lesions per class, seed 0) is
generated into ``var/bench/demo_dataset`` once and reused. The database is a new
SQLite file, or with ``--postgres`` a freshly created ``liverread_bench`` database
on 127.0.0.1 (dropped afterwards). Prints cases/s, lesions/s and input MB/s.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.phantoms import make_cohort  # noqa: E402

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/liverread_bench"


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def postgres(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    dataset = args.dataset or ROOT / "var" / "bench" / "demo_dataset"
    if not (dataset / "manifest.csv").exists():
        started = time.perf_counter()
        make_cohort(dataset, progress=True)
        print(f"generated the demo cohort in {time.perf_counter() - started:.1f} s")
    size_mb = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file()) / 1e6
    lesions = sum(1 for _ in (dataset / "manifest.csv").open()) - 1
    cases = sum(1 for p in dataset.iterdir() if p.is_dir())

    with tempfile.TemporaryDirectory(prefix="liverread-bench-") as scratch:
        env = {**os.environ, "LIVERREAD_VAR": scratch}
        if args.postgres:
            postgres("DROP DATABASE IF EXISTS liverread_bench")
            postgres("CREATE DATABASE liverread_bench")
            env["DATABASE_URL"] = POSTGRES_URL
        try:
            manage("migrate", "--noinput", "--verbosity", "0", env=env)
            started = time.perf_counter()
            manage("import_dataset", str(dataset), "--no-progress", env=env)
            seconds = time.perf_counter() - started
            stored_mb = sum(p.stat().st_size for p in Path(scratch, "media").rglob("*") if p.is_file()) / 1e6
        finally:
            if args.postgres:
                postgres("DROP DATABASE IF EXISTS liverread_bench")
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{database}: {cases} cases, {lesions} lesions, {size_mb:.0f} MB in, {stored_mb:.0f} MB stored, "
        f"{seconds:.1f} s → {cases / seconds:.2f} cases/s, {lesions / seconds:.2f} lesions/s, "
        f"{size_mb / seconds:.1f} MB/s"
    )


if __name__ == "__main__":
    main()
