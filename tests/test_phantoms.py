"""Synthetic phantom cohorts (``inference.phantoms``): the import layout, per-sequence grids and
breath-hold offsets, per-class contrasts, diameters, split, determinism and the CLI. No Django."""

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from inference import phantom_appearance as appearance
from inference import phantoms
from inference.__main__ import main
from inference.dataset import load_case
from inference.domain import CLASSES, SEQUENCES, SPLITS
from inference.manifest import COLUMNS, read_manifest
from inference.nifti import load_volume
from inference.phantoms import make_cohort

DYNAMIC = ("T1WI", "LAP", "PVP", "DP")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Two lesions per class, tiny matrices."""
    out = tmp_path_factory.mktemp("small") / "cohort"
    make_cohort(out, lesions_per_class=2, seed=7, matrix_scale=0.25)
    return out


@pytest.fixture(scope="module")
def typical(tmp_path_factory) -> Path:
    """Three typical (not atypical) lesions per class at half resolution, for contrasts and offsets."""
    out = tmp_path_factory.mktemp("typical") / "cohort"
    make_cohort(out, lesions_per_class=3, seed=11, matrix_scale=0.5, atypical_fraction=0.0)
    return out


def rows(root: Path) -> list[dict]:
    with (root / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def centroid_mm(mask) -> np.ndarray:
    return (mask.affine @ np.append(np.argwhere(mask.data).mean(axis=0), 1))[:3]


def contrast(root: Path, row: dict, sequence: str) -> tuple[float, float]:
    """Mean inside the lesion mask and median of a ring of tissue 1 voxel to ~12 mm around it (in-plane)."""
    image = load_volume(root / row["case"] / f"{sequence}.nii.gz")
    mask = load_volume(root / row["case"] / "masks" / row["lesion"] / f"{sequence}.nii.gz").data > 0
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = True
    reach = max(2, round(12 / min(image.spacing[:2])))
    ring = ndi.binary_dilation(mask, plane, reach) & ~ndi.binary_dilation(mask, plane, 1)
    return float(image.data[mask].mean()), float(np.median(image.data[ring]))


def test_layout_manifest_and_masks(small):
    text = (small / "manifest.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert text.splitlines()[0] == (
        "patient,age,sex,cirrhosis,fatty_liver,scanner_vendor,scanner_model,field_strength_t,"
        "case,lesion,label,diameter_mm,split"
    )
    table = rows(small)
    assert len(table) == 2 * len(CLASSES)
    assert Counter(r["label"] for r in table) == dict.fromkeys(CLASSES, 2)
    for r in table:
        assert 20 <= int(r["age"]) <= 88 and r["sex"] in ("F", "M")
        assert r["cirrhosis"] in ("yes", "no") and r["fatty_liver"] in ("yes", "no")
        assert (r["scanner_vendor"], r["scanner_model"], r["field_strength_t"]) in {
            (s.vendor, s.model, s.field_t) for s in appearance.SCANNERS
        }
        assert re.fullmatch(r"\d+\.\d", r["diameter_mm"]) and 5 <= float(r["diameter_mm"]) <= 150
    entries = read_manifest(small)
    assert sorted(entries) == sorted(p.name for p in small.iterdir() if p.is_dir())
    for name, entry in entries.items():
        assert not entry.problems
        case = small / name
        expected = sorted([*(f"{s}.nii.gz" for s in SEQUENCES), "masks"])
        assert sorted(p.name for p in case.iterdir()) == expected
        assert sorted(p.name for p in (case / "masks").iterdir()) == sorted(les.name for les in entry.lesions)
        loaded = load_case(case, entry)  # the project's own reader accepts it
        for lesion in entry.lesions:
            assert sorted(p.name for p in (case / "masks" / lesion.name).iterdir()) == sorted(
                f"{s}.nii.gz" for s in SEQUENCES
            )
            for sequence in SEQUENCES:
                image, mask = loaded.volumes[sequence], loaded.masks[lesion.name][sequence]
                assert image.data.dtype == np.int16 and mask.data.dtype == np.uint8
                assert mask.same_grid(image) and mask.shape == image.shape
                assert np.array_equal(mask.affine, image.affine)
                assert set(np.unique(mask.data)) == {0, 1}


def test_ids_and_file_names_do_not_reveal_labels(small):
    for r in rows(small):
        assert re.fullmatch(r"S\d+-P\d{4}", r["patient"]) and re.fullmatch(r"C\d{4}", r["case"])
        assert re.fullmatch(r"L[1-3]", r["lesion"])
    names = {part.lower() for p in small.rglob("*") for part in p.relative_to(small).parts}
    for label in CLASSES:
        assert not any(label.lower() in name for name in names)


def test_split_is_by_patient_and_has_every_class(small):
    table = rows(small)
    assert {r["split"] for r in table} == set(SPLITS)
    for split in SPLITS:
        assert {r["label"] for r in table if r["split"] == split} == set(CLASSES)
    by_patient = {}
    for r in table:
        by_patient.setdefault(r["patient"], set()).add((r["split"], r["case"]))
    assert all(len(v) == 1 for v in by_patient.values())  # one exam, one split per patient


def test_cohort_statistics():
    """Planning only (no images): split fraction, lesions per exam, background liver, scanners, atypia."""
    cases = phantoms._plan(np.random.default_rng(3), 40, 0.2, 0.15)
    lesions = [(les, c) for c in cases for les in c.lesions]
    assert len(lesions) == 40 * len(CLASSES)
    assert 1.15 <= len(lesions) / len(cases) <= 1.4
    assert 1 < max(len(c.lesions) for c in cases) <= 3
    test = Counter(les.label for les, c in lesions if c.split == "test")
    assert all(6 <= test[label] <= 10 for label in CLASSES)  # 20 % of 40, stratified
    assert sum(les.partner is not None for les, _ in lesions) == round(0.15 * len(lesions))
    assert all(les.partner in (None, appearance.PARTNERS[les.label]) for les, _ in lesions)
    assert 0.12 <= np.mean([c.cirrhosis for c in cases]) <= 0.32
    assert 0.1 <= np.mean([c.fatty for c in cases]) <= 0.3
    hcc = [c.cirrhosis for c in cases if c.lesions[0].label == "HCC" or "HCC" in {x.label for x in c.lesions}]
    others = [c.cirrhosis for c in cases if "HCC" not in {x.label for x in c.lesions}]
    assert np.mean(hcc) > 0.5 > np.mean(others)
    scanners = Counter(appearance.SCANNERS[c.scanner].model for c in cases)
    assert scanners.most_common(1)[0][0] in ("TrioTim", "Signa") and len(scanners) == 5


def test_diameters_follow_the_paper():
    cases = phantoms._plan(np.random.default_rng(5), 1000, 0.2, 0.0)
    sizes = {label: [] for label in CLASSES}
    for case in cases:
        for les in case.lesions:
            sizes[les.label].append(les.diameter)
    for label, (kind, a, b, c) in appearance.DIAMETERS.items():
        if kind == "median":  # median (IQR)
            q1, q2, q3 = np.percentile(sizes[label], [25, 50, 75])
            assert abs(q2 - a) < 0.1 * a and abs(q1 - b) < 0.15 * b and abs(q3 - c) < 0.15 * c, label
        else:  # mean ± SD
            assert abs(np.mean(sizes[label]) - a) < 0.1 * a and abs(np.std(sizes[label]) - b) < 0.2 * b, label
        assert min(sizes[label]) >= 5 and max(sizes[label]) <= 150
    assert np.mean(sizes["abscess"]) > 2 * np.mean(sizes["cyst"])


def test_grids_like_the_paper():
    """Full-scale protocols: T2WI and DWI/ADC thick slices, thin dynamic phases, FOV about 400 mm."""
    cases = phantoms._plan(np.random.default_rng(1), 1, 0.0, 0.0)
    for n, scanner in enumerate(appearance.SCANNERS):
        case = cases[n]
        case.scanner = n
        rng = np.random.default_rng(n)
        anatomy = phantoms._anatomy(rng, case, 1.0)
        grids, poses = phantoms._protocol(rng, case, anatomy, 1.0)
        t2, dwi, t1 = grids["t2"], grids["dwi"], grids["t1"]
        assert 280 <= t2.shape[0] <= 320 and 220 <= t2.shape[1] <= 240 and 6 <= t2.spacing[2] <= 8
        assert dwi.shape[:2] == (128, 128) and 6 <= dwi.spacing[2] <= 8
        assert 288 <= t1.shape[0] <= 320 and 172 <= t1.shape[1] <= 216 and 3 <= t1.spacing[2] <= 4
        for grid in (t2, dwi, t1):
            fov = np.array(grid.shape) * grid.spacing
            assert 380 <= fov[0] <= 420 and 300 <= fov[1] <= 420 and 100 <= fov[2] <= 220, scanner.model
        assert len(poses) == 6 and len({tuple(p.shift) for p in poses}) == 6


def test_each_sequence_has_its_own_grid_and_position(typical):
    table = rows(typical)
    case = typical / table[0]["case"]
    vol = {s: load_volume(case / f"{s}.nii.gz") for s in SEQUENCES}
    assert vol["DWI"].same_grid(vol["ADC"])  # ADC is computed from DWI
    assert all(vol[s].same_grid(vol["T1WI"]) for s in DYNAMIC)  # one dynamic slab
    assert not vol["T2WI"].same_grid(vol["T1WI"]) and not vol["T2WI"].same_grid(vol["DWI"])
    for s in ("T2WI", "DWI", "ADC"):
        assert vol[s].spacing[2] > vol["T1WI"].spacing[2]
    assert vol["DWI"].shape[0] * vol["DWI"].shape[1] < vol["T2WI"].shape[0] * vol["T2WI"].shape[1]
    for s in SEQUENCES:
        assert 380 <= vol[s].shape[0] * vol[s].spacing[0] <= 420

    moved = distinct = 0
    for r in table:
        folder = typical / r["case"] / "masks" / r["lesion"]
        masks = {s: load_volume(folder / f"{s}.nii.gz") for s in SEQUENCES}
        centres = np.array([centroid_mm(masks[s]) for s in SEQUENCES])
        spread = np.linalg.norm(centres[:, None] - centres[None], axis=2).max()
        assert spread < 18, r  # a few mm apart (plus slice quantisation), never far
        if float(r["diameter_mm"]) >= 20:
            moved += spread > 1.0
            assert spread < 15, r
        distinct += len({masks[s].data.tobytes() for s in DYNAMIC}) > 1
    assert moved >= 0.9 * sum(float(r["diameter_mm"]) >= 20 for r in table)
    assert distinct >= 0.8 * len(table)  # breath-holds differ between dynamic phases


def enhancement(root: Path, row: dict, phase: str) -> float | None:
    """Signal gain from pre-contrast to ``phase`` inside the lesion, relative to that of the tissue around
    it; on the lesion's core in both phases (same grid, different breath-holds), None if it has no core."""
    case = root / row["case"]
    paths = [(case / f"{s}.nii.gz", case / "masks" / row["lesion"] / f"{s}.nii.gz") for s in ("T1WI", phase)]
    images = [load_volume(image).data.astype(float) for image, _ in paths]
    masks = [load_volume(mask).data > 0 for _, mask in paths]
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = True
    both = masks[0] & masks[1]
    core = ndi.binary_erosion(both, plane)  # away from partial volume with the liver: eroded, middle slice
    core[..., np.arange(core.shape[2]) != np.argmax(both.sum(axis=(0, 1)))] = False
    either = masks[0] | masks[1]
    ring = ndi.binary_dilation(either, plane, 4) & ~ndi.binary_dilation(either, plane, 1)
    if not core.any():
        return None
    lesion = images[1][core].mean() / images[0][core].mean()
    return lesion / (np.median(images[1][ring]) / np.median(images[0][ring]))


def test_class_contrasts(typical):
    """Lesion mean / surrounding-tissue median per sequence, the median over each class's lesions."""
    table = rows(typical)
    ratio = {}
    for r in sorted(table, key=lambda r: float(r["diameter_mm"]) < 10):  # lesions under 10 mm only if alone
        if float(r["diameter_mm"]) < 10 and r["label"] in ratio:
            continue
        values = {s: contrast(typical, r, s) for s in SEQUENCES}
        ratio.setdefault(r["label"], []).append({s: v[0] / v[1] for s, v in values.items()})
    med = {c: {s: float(np.median([x[s] for x in v])) for s in SEQUENCES} for c, v in ratio.items()}
    cyst, hem, fnh, abscess = med["cyst"], med["haemangioma"], med["FNH"], med["abscess"]
    hcc, icc, met = med["HCC"], med["ICC"], med["metastasis"]
    # thresholds leave room for partial volume: half-resolution voxels, small lesions
    assert cyst["T2WI"] > 2 and cyst["T1WI"] < 0.7 and cyst["ADC"] > 1.3 and cyst["PVP"] < 0.7
    gains = [g for r in table if r["label"] == "cyst" and (g := enhancement(typical, r, "PVP")) is not None]
    assert gains and np.median(gains) < 0.8  # no enhancement, while the liver's signal rises 1.6-fold
    assert hem["T2WI"] > 1.5 and hem["LAP"] < hem["PVP"] and hem["LAP"] < hem["DP"]  # centripetal fill-in
    assert fnh["LAP"] > 1.4 and 0.85 < fnh["PVP"] < 1.2 and 0.85 < fnh["T2WI"] < 1.3
    assert abscess["ADC"] < 0.95 and abscess["DWI"] > 1.4 and abscess["T2WI"] > 1.3
    assert hcc["LAP"] > 1.2 and hcc["PVP"] < 0.95 and hcc["DP"] < 0.95 and hcc["T2WI"] > 1.05
    assert icc["DP"] > icc["PVP"] and icc["LAP"] > 1.05 and icc["ADC"] < 0.95
    assert met["DWI"] > 1.3 and met["ADC"] < 0.95 and met["LAP"] > 1.0 and met["T2WI"] > 1.2
    liver_adc = np.median([contrast(typical, r, "ADC")[1] for r in table])
    assert 1000 <= liver_adc <= 1400  # 1e-6 mm²/s


def test_same_seed_same_bytes_and_other_seed_differs(small, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    make_cohort(again, lesions_per_class=2, seed=7, matrix_scale=0.25)
    assert files(again) == files(small)
    make_cohort(other, lesions_per_class=2, seed=8, matrix_scale=0.25)
    first, second = files(other), files(small)
    assert first["manifest.csv"] != second["manifest.csv"]
    assert all(first[k] != second[k] for k in set(first) & set(second) if k.endswith("T2WI.nii.gz"))


def test_out_dir_must_be_empty_and_arguments_valid(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(FileExistsError):
        make_cohort(tmp_path / "busy", lesions_per_class=1, matrix_scale=0.25)
    with pytest.raises(ValueError):
        make_cohort(tmp_path / "new", lesions_per_class=0)
    with pytest.raises(ValueError):
        make_cohort(tmp_path / "new", test_fraction=1.0)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["phantoms", str(out), "--lesions-per-class", "1", "--matrix-scale", "0.2", "--seed", "4"]
    assert main(args) == 0  # with a progress bar (on stderr)
    summary = capsys.readouterr().out.strip()
    assert len(summary.splitlines()) == 1 and "7 lesions" in summary and str(out) in summary
    assert len(rows(out)) == 7 and {r["split"] for r in rows(out)} == {"development"}
    assert main(args) == 2  # not empty any more
    assert "not an empty folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["phantoms", "--help"])
    assert "--lesions-per-class 50 --seed 1" in " ".join(capsys.readouterr().out.split())


def test_cohorts_of_different_seeds_are_different_patients(tmp_path):
    first = make_cohort(tmp_path / "a", lesions_per_class=1, seed=0, matrix_scale=0.25)
    second = make_cohort(tmp_path / "b", lesions_per_class=1, seed=1, matrix_scale=0.25)
    assert not {r["patient"] for r in rows(first.parent)} & {r["patient"] for r in rows(second.parent)}
