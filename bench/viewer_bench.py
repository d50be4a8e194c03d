"""Viewer benchmark: cold page load, "next" to all seven viewports drawn, and bytes sent per lesion.

    .venv/bin/python bench/viewer_bench.py [--var var] [--reads 5] [--fov 120]

Needs ``make run``'s state in ``--var`` (the demo cohort imported and predicted) and the built bundle. The
demo database is copied to a scratch folder (the demo's own is never written); the media store is shared.
A bench reader and a feedback study over the demo test split are made there, runserver serves it, and
Debian's chromium (headless, software GL, flags of docs/machines.md) is driven by playwright:

- cold: from navigating to the reading page to all seven viewports drawn (fresh browser, empty cache);
- next: from the Enter key after a read's feedback to all seven viewports of the next lesion drawn, timed
  inside the page (median of ``--reads``);
- bytes: per lesion, the bodies of the served ``.nii.gz`` files (images, masks and, after the read, heat
  maps; the browser's resource timing) against the gzip size of the lesion's imported volumes and masks;
- a screenshot of the feedback view in ``bench/results/``.
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.browser import CHROMIUM, LAUNCH_ARGS, all_ready  # noqa: E402

PORT = 8765
SCREENSHOT = ROOT / "bench" / "results" / "viewer_feedback.png"
RESOURCES = """performance.getEntriesByType('resource').filter((e) => e.name.endsWith('.nii.gz'))
    .map((e) => [e.name, e.encodedBodySize])"""
SETUP = """
import json
from django.contrib.auth import get_user_model
from readerstudy.cases.models import Lesion
from readerstudy.studies.models import Assignment, Reader, ReaderStudy
user = get_user_model().objects.create_user("bench-reader", password="bench-password")
reader = Reader.objects.create(user=user, group="academic", years_of_experience=10)
study = ReaderStudy.objects.create(name="Bench: viewer", feedback="model", field_of_view_mm={fov})
lesions = Lesion.objects.filter(split="test", case__dataset="demo")
study.lesions.set(lesions)
Assignment.assign(study, reader)
imported = {{l.public_id: sum(v.file.size for v in l.case.volumes.all()) + sum(m.file.size for m in l.masks.all())
            for l in lesions}}
print(json.dumps({{"study": study.public_id, "imported": imported}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, default=ROOT / "var")
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--fov", type=float, default=120.0, help="field of view in mm (0: whole volumes)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    with sqlite3.connect(args.var / "db.sqlite3") as source, sqlite3.connect(scratch / "db.sqlite3") as copy:
        source.backup(copy)
    env = {**os.environ, "LIVERREAD_VAR": str(scratch), "MEDIA_ROOT": str(args.var / "media")}
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):  # the copy may be older
        subprocess.run([*manage, *command], env=env, check=True)
    setup = subprocess.run(
        [*manage, "shell", "-c", SETUP.format(fov=args.fov or None)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    world = json.loads(setup.stdout.strip().splitlines()[-1])
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{PORT}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_server()
        run(world, args.reads)
    finally:
        server.terminate()
        server.wait()


def wait_for_server() -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("runserver did not start")


def run(world: dict, reads: int) -> None:
    base = f"http://127.0.0.1:{PORT}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"{base}/accounts/login/")
        page.fill("[name=username]", "bench-reader")
        page.fill("[name=password]", "bench-password")
        page.click("button[type=submit]")
        started = time.perf_counter()
        page.goto(f"{base}/studies/{world['study']}/read/")
        page.wait_for_function(all_ready, timeout=60_000)
        cold = time.perf_counter() - started
        times = []
        for _ in range(reads + 1):
            shown = page.evaluate("liverread.shownLesion")
            page.keyboard.press("3")
            page.keyboard.press("4")
            page.keyboard.type("40")
            page.keyboard.press("Enter")
            page.wait_for_selector("#next:not([hidden])")
            page.evaluate(
                "document.addEventListener('keydown', () => { window.nextPressed = performance.now() }, "
                "{ once: true, capture: true })"
            )
            page.keyboard.press("Enter")
            page.wait_for_function(f"() => liverread.mode === 'reading' && liverread.shownLesion !== '{shown}'")
            times.append(page.evaluate("liverread.readyAt - window.nextPressed") / 1000)
        page.keyboard.press("2")
        page.keyboard.press("3")
        page.keyboard.type("20")
        page.keyboard.press("Enter")
        page.wait_for_selector("#next:not([hidden])")
        page.wait_for_function("() => document.getElementById('status').dataset.kind === 'ready'")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOT)
        sent: dict[str, int] = {}
        for url, size in page.evaluate(RESOURCES):
            lesion = url.split("/lesions/")[1].split("/")[0]
            sent[lesion] = sent.get(lesion, 0) + size
        browser.close()
    bundle = (ROOT / "static" / "dist" / "viewer.js").stat().st_size
    print(f"bundle: {bundle / 1e6:.2f} MB")
    print(f"cold page load to seven viewports drawn: {cold:.2f} s")
    print(
        f"next lesion to seven viewports drawn: median {statistics.median(times[1:]):.2f} s "
        f"over {reads} (min {min(times[1:]):.2f}, max {max(times[1:]):.2f}; the first, not counted: "
        f"{times[0]:.2f} s)"
    )
    for lesion, size in sent.items():
        imported = world["imported"][lesion]
        print(
            f"lesion {lesion}: {size / 1e6:.2f} MB sent, {imported / 1e6:.2f} MB imported "
            f"({100 * size / imported:.0f} %)"
        )


if __name__ == "__main__":
    main()
