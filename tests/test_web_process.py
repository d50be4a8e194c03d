"""The web process never imports torch or MONAI: only the worker's task bodies and the ``inference`` commands
do. Checked in a fresh interpreter (this one has torch loaded by other tests)."""

import ast
import subprocess
import sys
import textwrap

from django.conf import settings

WORKER_ONLY = {"readerstudy.predictions.runner", "readerstudy.predictions.training_job"}
"""The modules the Celery tasks import inside their bodies, in the worker process only."""

IMPORT_EVERYTHING_ELSE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import django
    django.setup()
    import readerstudy
    from django.core.wsgi import get_wsgi_application
    get_wsgi_application()
    skip = set(sys.argv[1:])
    names = [m.name for m in pkgutil.walk_packages(readerstudy.__path__, "readerstudy.")]
    for name in names:
        if name not in skip and ".migrations." not in name:
            importlib.import_module(name)
    print(len(names), sorted(m for m in ("torch", "monai") if m in sys.modules))
    """
)


def heavy_modules_after_importing(tmp_path, skip) -> tuple[int, list[str]]:
    """How many project modules there are, and which of torch and MONAI a fresh interpreter holds after
    importing all of them but ``skip``."""
    env = {"DJANGO_SETTINGS_MODULE": "readerstudy.settings", "LIVERREAD_VAR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", IMPORT_EVERYTHING_ELSE, *skip]
    done = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(maxsplit=1)
    return int(count), ast.literal_eval(loaded)


def test_no_web_module_imports_torch_or_monai(tmp_path):
    count, loaded = heavy_modules_after_importing(tmp_path, WORKER_ONLY)
    assert count > 60  # every module of the project was imported
    assert loaded == [], f"the web process imported {loaded}"


def test_the_check_sees_torch_in_a_worker_module(tmp_path):
    """The control: importing a worker module brings torch in, and the check says so."""
    assert "torch" in heavy_modules_after_importing(tmp_path, WORKER_ONLY - {"readerstudy.predictions.runner"})[1]
