"""Shared fixtures: an isolated media folder, a small, valid dataset to break, and the tiny trained run with
the phantom cohort it was trained on."""

import csv
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connections

from inference.dataset import copy_first_cases
from inference.domain import CLASSES, SEQUENCES
from inference.manifest import COLUMNS
from inference.nifti import write_volume
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Lesion
from readerstudy.predictions.registry import activate, register_run
from readerstudy.studies.models import STUDY_ADMINS_GROUP


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """MEDIA_ROOT in a fresh folder; returns it."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in Path(media_root).rglob("*") if p.is_file()) if Path(media_root).exists() else []


def grid_affine(spacing=(1.5, 1.5, 5.0), origin=(-12.0, -12.0, -20.0)) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


class DatasetBuilder:
    """Writes a small dataset in the import layout: each sequence on its own grid,
    one spherical lesion per lesion row; tests then break one thing."""

    SHAPES = {"T2WI": (16, 16, 8), "DWI": (12, 12, 8), "ADC": (12, 12, 8)}
    DYNAMIC_SHAPE = (16, 16, 12)

    def __init__(self, root: Path):
        self.root = root
        self.rows: list[dict] = []
        root.mkdir(parents=True, exist_ok=True)

    def grid(self, sequence: str) -> tuple[tuple[int, int, int], np.ndarray]:
        shape = self.SHAPES.get(sequence, self.DYNAMIC_SHAPE)
        spacing = (2.0, 2.0, 40.0 / shape[2])
        return shape, grid_affine(spacing, origin=(-16.0, -16.0, -20.0))

    def add_case(self, case="C1", patient="P1", lesions=(("L1", "HCC"),), split="development", **fields):
        rng = np.random.default_rng(len(self.rows))
        (self.root / case).mkdir(parents=True, exist_ok=True)
        for sequence in SEQUENCES:
            shape, affine = self.grid(sequence)
            image = rng.normal(400, 20, shape).astype(np.int16)
            write_volume(self.root / case / f"{sequence}.nii.gz", image, affine)
            for lesion, _ in lesions:
                mask = np.zeros(shape, np.uint8)
                centre = np.array(shape) // 2
                mask[tuple(slice(c - 2, c + 2) for c in centre)] = 1
                (self.root / case / "masks" / lesion).mkdir(parents=True, exist_ok=True)
                write_volume(self.root / case / "masks" / lesion / f"{sequence}.nii.gz", mask, affine)
        for lesion, label in lesions:
            row = {
                "patient": patient,
                "age": 61,
                "sex": "F",
                "cirrhosis": "no",
                "fatty_liver": "yes",
                "scanner_vendor": "Siemens",
                "scanner_model": "Prisma",
                "field_strength_t": "3.0",
                "case": case,
                "lesion": lesion,
                "label": label,
                "diameter_mm": "21.5",
                "split": split,
            }
            row.update(fields)
            self.rows.append(row)
        return self

    def write_manifest(self, rows=None, columns=COLUMNS) -> Path:
        path = self.root / "manifest.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows if rows is None else rows)
        return path

    def path(self, case: str, sequence: str, lesion: str | None = None) -> Path:
        folder = self.root / case if lesion is None else self.root / case / "masks" / lesion
        return folder / f"{sequence}.nii.gz"


@pytest.fixture
def dataset(tmp_path) -> DatasetBuilder:
    """A builder for a small dataset under ``tmp_path/dataset``."""
    return DatasetBuilder(tmp_path / "dataset")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """The tiny run of ``test_training`` (trained once per session)."""
    from test_training import tiny_run

    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def phantom_cohort(trained_run, tmp_path_factory) -> Path:
    """The 14-lesion phantom cohort ``trained_run`` was trained on."""
    from test_training import tiny_cohort

    return tiny_cohort(tmp_path_factory)


@pytest.fixture(scope="module")
def phantom_subset(phantom_cohort, tmp_path_factory) -> Path:
    """The first three cases of ``phantom_cohort`` (a dataset of its own): fewer lesions to predict."""
    return copy_first_cases(phantom_cohort, 3, tmp_path_factory.mktemp("subset") / "data")


@pytest.fixture
def predicted(trained_run, phantom_subset, media):
    """The tiny phantom subset imported and predicted (with saliency) by the active tiny model."""
    import_dataset(phantom_subset, dataset="tiny")
    version = register_run(trained_run, name="tiny-secret-model")
    activate(version)
    return list(Lesion.objects.all())


@pytest.fixture
def study_admin(client):
    """A logged-in study admin (staff, in the study admins group with the cases and studies permissions)."""
    user = get_user_model().objects.create_user("admin1", password="x", is_staff=True)
    group = Group.objects.create(name=STUDY_ADMINS_GROUP)
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=["cases", "studies"]))
    user.groups.add(group)
    client.force_login(user)
    return user


@pytest.fixture
def eight_lesions(dataset, media):
    """Eight one-lesion cases (no model): enough lesions for orders to differ."""
    for n in range(8):
        dataset.add_case(f"C{n}", patient=f"P{n}", lesions=(("L1", CLASSES[n % 7]),), split="test")
    dataset.write_manifest()
    import_dataset(dataset.root, dataset="trial")
    return list(Lesion.objects.all())


@pytest.fixture
def browser(monkeypatch):
    """Debian's chromium, driven by playwright, for the browser tests."""
    from browser import CHROMIUM, LAUNCH_ARGS
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the test's ORM calls sit beside playwright's loop
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()
        connections.close_all()  # the test's ORM calls ran in playwright's context, on a connection of their own
