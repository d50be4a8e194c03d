"""A finished training run's folder and its manifest, without torch: what the web process needs to register
a run (the worker loads its weights through ``inference.prediction``).

``manifest.json`` lists every file of the run with its SHA-256; ``verify_run`` checks them all.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.dataset import sha256_file

RUN_MANIFEST = "manifest.json"


def verify_run(run_dir: Path) -> dict[str, str]:
    """Check every file listed in ``run_dir/manifest.json`` against its SHA-256; returns {name: sha256}.

    ValueError names the first missing, unlisted-but-required or altered file.
    """
    run_dir = Path(run_dir)
    try:
        listed = json.loads((run_dir / RUN_MANIFEST).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        raise ValueError(f"{run_dir / RUN_MANIFEST}: missing (an unfinished run, or not a run folder)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{run_dir / RUN_MANIFEST}: not a run manifest") from None
    for name, digest in sorted(listed.items()):
        path = run_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{run_dir / RUN_MANIFEST}: file name {name!r} leaves the run folder")
        if not path.is_file():
            raise ValueError(f"{path}: listed in {RUN_MANIFEST} but missing")
        if sha256_file(path) != digest:
            raise ValueError(f"{path}: SHA-256 differs from {RUN_MANIFEST} (file altered or corrupted)")
    for name in ("config.json", "metrics.json"):
        if name not in listed:
            raise ValueError(f"{run_dir / name}: not listed in {RUN_MANIFEST}")
    return listed
