"""Synthetic multisequence liver MRI phantoms, written in the dataset import layout::

    OUT/manifest.csv                          one row per lesion
    OUT/<case>/<SEQ>.nii.gz                   int16, one per sequence (ADC in 1e-6 mm²/s)
    OUT/<case>/masks/<lesion>/<SEQ>.nii.gz    uint8 0/1, on that sequence's grid

Each case is one patient: a body, a liver (normal, fatty or cirrhotic) with hepatic
and portal veins, spleen, gallbladder and 1-3 lesions, defined in a patient frame
(RAS+ mm) and sampled on axial scanner grids: thick-slice T2WI and DWI/ADC, thin
dynamic T1 phases. Every acquisition has its own breath-hold (a rigid offset of a
few mm), so sequences are not co-registered and each mask is drawn where the lesion
is on that sequence. Tables: ``inference.phantom_appearance``. Same seed, same bytes.
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from inference import phantom_appearance as A
from inference.domain import CLASSES, SEQUENCES, SPLITS
from inference.manifest import COLUMNS, MANIFEST_NAME
from inference.nifti import write_volume

ACQUISITIONS = (("T2WI",), ("DWI", "ADC"), ("T1WI",), ("LAP",), ("PVP",), ("DP",))
"""One breath-hold each. DWI and ADC share grid and position (ADC is computed from DWI); the four
dynamic phases share one grid (one slab) but not the position."""
FAMILY = {"T2WI": "t2", "DWI": "dwi", "ADC": "dwi", "T1WI": "t1", "LAP": "t1", "PVP": "t1", "DP": "t1"}
MAX_SHIFT = np.array([2.5, 2.5, 5.0])
"""Largest breath-hold offset (mm, x y z): acquisitions differ by a few mm, mostly craniocaudally."""
SUBSLICE_MM = 3.5
"""Thick slices are rendered as sub-slices about this thick (mm) and averaged (partial volume)."""
INF = np.inf


def _ratios(look: A.Look) -> np.ndarray:
    """A look as seven ratios to liver, in SEQUENCES order (ADC as a ratio to LIVER_ADC)."""
    phases = [
        look.t1 / A.LIVER_GAIN[p] if v is None else v for p, v in zip(("LAP", "PVP", "DP"), look[3:6], strict=True)
    ]
    dwi = look.dwi
    if dwi is None:  # T2 shine-through times diffusion decay at b = 800 s/mm², relative to liver
        dwi = look.t2**0.6 * np.exp(-A.B_VALUE * (look.adc - A.LIVER_ADC) * 1e-6)
    return np.array([look.t2, dwi, look.adc / A.LIVER_ADC, look.t1, *phases], dtype=np.float32)


TISSUE = {name: _ratios(look) for name, look in A.TISSUES.items()}


def _ramp(x, width: float):
    """0 → 1 as x crosses 0 over ``width``: a soft edge for partial volume."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def _ell(x, y, ax, ay):
    """Approximate signed distance (mm) to an ellipse centred at 0 (negative inside)."""
    return (np.sqrt((x / ax) ** 2 + (y / ay) ** 2) - 1.0) * np.minimum(ax, ay)


def _ellipsoid(x, y, z, c, s):
    """Approximate signed distance (mm) to an axis-aligned ellipsoid, centre c, semi-axes s."""
    q = ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2
    return (np.sqrt(q) - 1) * min(s)


def _paint(img, weight, values) -> None:
    """Blend ``values`` (one per sequence: scalar or array) into ``img`` (sequence axis first), in place."""
    for k in range(img.shape[0]):
        img[k] += weight * (values[k] - img[k])


def _field(rng, shape, step: float) -> np.ndarray:
    """Smooth unit-variance random field with features about ``step`` voxels across (cubic, then
    linear upsampling of coarse noise: no full-size filtering)."""
    coarse = [max(2, int(np.ceil(n / step)) + 1) for n in shape]
    mid = [min(n, 2 * c) for n, c in zip(shape, coarse, strict=True)]
    f = ndi.zoom(rng.standard_normal(coarse).astype(np.float32), np.divide(mid, coarse), order=3)
    f = ndi.zoom(f, np.divide(shape, f.shape), order=1)
    return (f - f.mean()) / (f.std() + 1e-6)


def _unit(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rot_z(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _lobulation(u, directions, kappa, amplitudes):
    """Relative boundary radius minus 1 along unit vectors ``u`` (3 arrays): zero-mean von Mises lobes."""
    lobes = [
        np.exp(k * (u[0] * v[0] + u[1] * v[1] + u[2] * v[2] - 1)) - (1 - np.exp(-2 * k)) / (2 * k)
        for v, k in zip(directions, kappa, strict=True)
    ]
    return sum(a * lobe for a, lobe in zip(amplitudes, lobes, strict=True))


_PROBES = _unit(np.random.default_rng(0), 4000)
"""Directions on which a lesion's outermost boundary is found."""


@dataclass
class _Grid:
    """An axial scanner grid: shape, world position (mm) of voxel (0, 0, 0) and voxel size (mm)."""

    shape: tuple[int, int, int]
    origin: np.ndarray
    spacing: np.ndarray

    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff


@dataclass
class _Pose:
    """The patient in one breath-hold: world = Rz(theta) · patient + shift (mm)."""

    theta: float
    shift: np.ndarray


@dataclass
class _Lesion:
    centre: np.ndarray  # mm, patient frame
    rot: np.ndarray
    axes: np.ndarray  # semi-axes, mm
    lobes: tuple  # boundary lobulation: (directions, sharpness, amplitudes)
    reach: float  # outermost boundary point, in units of the semi-axes
    apps: list  # per mixed-in class: (weight, [(profile, ratios)], core, rim)
    het: float
    blobs: np.ndarray  # internal texture: blob centres (unit-sphere coordinates) and signs
    nodules: np.ndarray  # directions of peripheral nodules
    spokes: np.ndarray  # directions of scar / septa spokes
    halo: np.ndarray | None
    halo_mm: float

    @property
    def radius(self) -> float:
        return float(np.prod(self.axes) ** (1 / 3))


@dataclass
class _Anatomy:
    body: dict
    lo: np.ndarray  # patient-frame corner (mm) of the liver maps
    h: float  # their voxel size, mm
    F: np.ndarray  # signed distance to the liver surface, mm (negative inside)
    T: np.ndarray  # parenchymal texture, unit variance
    het: float
    cirrhosis: bool
    ascites_mm: float
    V: np.ndarray | None = None  # vessel fraction: > 0 portal, < 0 hepatic
    liver: np.ndarray | None = None  # liver ratios per sequence (fatty/cirrhotic)
    organs: list = field(default_factory=list)  # (tissue, centre, semi-axes)
    lesions: list = field(default_factory=list)

    def diaphragm(self, x, y):
        """Height (mm) of the diaphragm above (x, y)."""
        return self.body["dome"] - 0.0035 * (np.abs(x) - 0.4 * self.body["bx"]) ** 2 + 0.15 * y

    def wall(self, x, y):
        """Signed distance (mm) to the inner abdominal wall (flatter at the back)."""
        return _ell(x, y, self.body["bx"], np.where(y < 0, 0.9, 1.0) * self.body["by"])


def _anatomy(rng, case, scale: float) -> _Anatomy:
    """Body, liver (a smooth union of two lobes), organs, vessels and lesions of one patient (mm)."""
    u = rng.uniform
    bx, by = u(125, 150), u(85, 110)
    body = dict(
        bx=bx,
        by=by,
        muscle=u(8, 14),
        fat=u(8, 22) + 12 * case.fatty,
        spine=(0.0, -by + 26, 20.0),
        aorta=(-16.0, -by + 62, 11.0),
        ivc=(24.0, -by + 66, 12.0),
    )
    gut = (int(bx / 2 + 20), int(by / 2 + 20))  # bowel texture, 4 mm pixels centred on 0
    body["gut"] = (0.8 * _field(rng, gut, 8) + 0.6 * _field(rng, gut, 3)).astype(np.float32)
    s1 = np.array([0.55 * bx, 0.85 * by, u(65, 78)]) * u(0.92, 1.08)  # right lobe
    c1 = np.array([0.42 * bx, -0.05 * by, 0])
    s2 = np.array([0.5 * bx, 0.42 * by, 0.55 * s1[2]]) * u(0.85, 1.1)  # left lobe
    c2 = np.array([-0.12 * bx, 0.32 * by, 0.25 * s1[2]])
    if case.cirrhosis:  # right lobe atrophy, left lobe hypertrophy
        s1, s2 = s1 * 0.85, s2 * [1.1, 1.05, 1.0]
    body["dome"] = c1[2] + 0.8 * s1[2]
    spleen = (
        np.array([-0.7 * bx + 5, -0.25 * by, body["dome"] - 45]),
        np.array([0.22 * bx, 0.45 * by, 48]) * u(0.9, 1.1),
    )
    h = float(np.clip(2.0 / scale, 2.0, 4.0))
    lo, hi = np.minimum(c1 - s1, c2 - s2) - 8, np.maximum(c1 + s1, c2 + s2) + 8
    hi[2] = body["dome"] + 8
    shape = tuple(int(n) for n in np.ceil((hi - lo) / h) + 1)
    X, Y, Z = (
        lo[a] + h * np.arange(n, dtype=np.float32).reshape([-1 if b == a else 1 for b in range(3)])
        for a, n in enumerate(shape)
    )

    # Texture: smooth; fatty: coarser and stronger; cirrhosis: a band-passed field whose zero
    # crossings are the fibrous septa and whose lobules are regenerative nodules.
    if case.cirrhosis:
        noise = rng.standard_normal(shape).astype(np.float32)
        T, het = ndi.gaussian_filter(noise, 2.5 / h) - ndi.gaussian_filter(noise, 5.0 / h), 0.05
        T /= T.std()
    elif case.fatty:
        T, het = 0.7 * _field(rng, shape, 25 / h) + 0.7 * _field(rng, shape, 8 / h), 0.09
    else:
        T, het = _field(rng, shape, 12 / h), 0.025
    ascites = u(4, 12) if case.cirrhosis and rng.random() < 0.35 else 0.0
    an = _Anatomy(body, lo, h, None, T.astype(np.float32), het, case.cirrhosis, ascites)

    g1, g2, k = _ellipsoid(X, Y, Z, c1, s1), _ellipsoid(X, Y, Z, c2, s2), 20.0
    m = np.clip(0.5 + 0.5 * (g2 - g1) / k, 0, 1)
    F = g2 * (1 - m) + g1 * m - k * m * (1 - m) + 6 * _field(rng, shape, 40 / h)  # smooth union
    F += 2.5 * an.T if case.cirrhosis else 0  # nodular surface
    F = np.maximum(np.maximum(F, an.wall(X, Y) + 3), Z - an.diaphragm(X, Y) + 2)
    F = np.maximum(F, 2 - _ellipsoid(X, Y, Z, *spleen))
    for x0, y0, r in (body["spine"], body["aorta"], body["ivc"]):
        F = np.maximum(F, r + 2 - np.hypot(X - x0, Y - y0))
    an.F = F.astype(np.float32)
    an.organs.append(("spleen", *spleen))

    inside = np.flatnonzero(an.F.ravel() < -6)[::3]
    pts = lo + h * np.stack(np.unravel_index(inside, shape), axis=1)
    depth = -an.F.ravel()[inside]

    def pick(near=None, box=(-INF, INF, -INF, INF), below=INF, ring=None, min_depth=8.0):
        """A liver point at least ``min_depth`` deep: nearest to ``near``, else a random one in the
        x/y ``box``, below height ``below`` and at a distance within ``ring`` = (centre, lo, hi)."""
        ok = depth >= min_depth
        cond = (pts[:, 0] > box[0]) & (pts[:, 0] < box[1]) & (pts[:, 1] > box[2]) & (pts[:, 1] < box[3])
        cond &= pts[:, 2] < below
        if ring is not None:
            dist = np.linalg.norm(pts - ring[0], axis=1)
            cond &= (dist > ring[1]) & (dist < ring[2])
        ok = ok & cond if np.any(ok & cond) else ok
        idx = np.flatnonzero(ok)
        if near is not None:
            return pts[idx[np.argmin(np.linalg.norm(pts[idx] - near, axis=1))]]
        return pts[idx[rng.integers(len(idx))]]

    # Hepatic veins from the IVC below the diaphragm, portal veins from the hilum: three trunks
    # each (right, middle/anterior, left), each trunk with two side branches.
    x_ivc, y_ivc, _ = body["ivc"]
    trees = (
        (
            np.array([x_ivc, y_ivc + 4, an.diaphragm(x_ivc, y_ivc) - 18]),
            -1,
            5.5,
            ((c1[0], INF, -INF, c1[1]), (0.1 * bx - 25, 0.1 * bx + 25, 0, INF), (-INF, -0.1 * bx, -INF, INF)),
        ),
        (
            pick(near=np.array([0.2 * bx, 0.0, c1[2] - 0.3 * s1[2]]), min_depth=10),
            1,
            6.5,
            ((c1[0], INF, c1[1], INF), (c1[0], INF, -INF, c1[1] - 0.2 * s1[1]), (-INF, -0.05 * bx, -INF, INF)),
        ),
    )
    vessels = {1: np.zeros(shape, np.float32), -1: np.zeros(shape, np.float32)}
    for root, kind, r0, boxes in trees:
        for box in boxes:
            end = pick(box=box, below=root[2] - 15 * (kind < 0), ring=(root, 50, INF))
            segments = [(root, end, r0, 0.45 * r0)]
            for t in (0.35, 0.65):
                start = root + t * (end - root)
                segments.append((start, pick(ring=(start, 25, 55)), 0.5 * r0, 0.25 * r0))
            for p0, p1, r0_, r1 in segments:  # rasterise the tapered tube in its bounding box
                a = np.clip(np.floor((np.minimum(p0, p1) - r0_ - lo) / h).astype(int), 0, shape)
                b = np.clip(np.ceil((np.maximum(p0, p1) + r0_ - lo) / h).astype(int) + 1, 0, shape)
                sl = tuple(slice(i, j) for i, j in zip(a, b, strict=True))
                d = p1 - p0
                q = (X[sl[0]] - p0[0], Y[:, sl[1]] - p0[1], Z[..., sl[2]] - p0[2])
                t = np.clip((q[0] * d[0] + q[1] * d[1] + q[2] * d[2]) / (d @ d), 0, 1)
                dist = np.sqrt((q[0] - t * d[0]) ** 2 + (q[1] - t * d[1]) ** 2 + (q[2] - t * d[2]) ** 2)
                vessels[kind][sl] = np.maximum(vessels[kind][sl], _ramp(r0_ + (r1 - r0_) * t - dist, h))
    an.V = np.where(vessels[1] >= vessels[-1], vessels[1], -vessels[-1])

    gains = A.CIRRHOTIC_GAIN if case.cirrhosis else A.FATTY_GAIN if case.fatty else {}
    an.liver = TISSUE["liver"] * np.array([gains.get(s, 1.0) for s in SEQUENCES], dtype=np.float32)
    taken = []  # (centre, radius) of what lesions must not overlap
    if rng.random() < 0.85:
        gb = pick(near=np.array([0.18 * bx, 0.45 * by, c1[2] - 0.55 * s1[2]]))
        an.organs.append(("fluid", gb, np.array([14, 30, 14]) * u(0.8, 1.2)))
        taken.append((gb, 32.0))
    an.lesions = [_lesion(rng, les, pts, depth, taken) for les in case.lesions]
    return an


def _lesion(rng, spec, pts, depth, taken) -> _Lesion:
    """Shape, place and look of one lesion, inside the liver (``pts`` lie ``depth`` mm deep)."""
    cls = A.LESIONS[spec.label]
    axes = spec.diameter / 2 * np.array([1.0, rng.uniform(cls.aspect, 1), rng.uniform(cls.aspect, 1)])
    lobes = cls.lobes if spec.partner is None else max(cls.lobes, A.LESIONS[spec.partner].lobes)
    lobulation = (_unit(rng, 10), rng.uniform(4, 25, 10), lobes * 0.6 * rng.standard_normal(10))
    reach = 1.02 + max(0.0, float(_lobulation(_PROBES.T, *lobulation).max()))  # outermost boundary / axes
    free = np.ones(len(pts), bool)
    for c, r in taken:
        free &= np.linalg.norm(pts - c, axis=1) > r + axes.max() * reach + 3
    ok = np.flatnonzero(free & (depth >= axes.max() * reach + 3))
    if not ok.size:  # too big for the free liver: shrink to fit the deepest free point
        ok = np.flatnonzero(free) if free.any() else np.arange(len(pts))
        ok = ok[depth[ok] >= depth[ok].max() - 2]
        axes *= max(2.5 / axes.max(), min(1.0, 0.95 * (depth[ok].max() - 3) / (axes.max() * reach)))
    centre = pts[rng.choice(ok)]
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    radius = float(np.prod(axes) ** (1 / 3))
    apps, halo, halo_mm = [], np.zeros(7, np.float32), 0.0
    mixes = [(1 - spec.mix, spec.label)] + ([(spec.mix, spec.partner)] if spec.partner else [])
    for weight, name in mixes:
        c = A.LESIONS[name]
        layers = [(prof, _ratios(_jitter(rng, look))) for prof, look, p in c.layers if rng.random() < p]
        apps.append((weight, layers, rng.uniform(*c.core), float(np.clip(max(c.rim, 3 / radius), 0, 0.45))))
        if c.halo is not None:
            halo += weight * (_ratios(c.halo) - 1)
            halo_mm = max(halo_mm, c.halo_mm)
    taken.append((centre, axes.max() * reach + halo_mm))
    blobs = np.hstack([_unit(rng, 6) * rng.uniform(0, 0.8, (6, 1)), rng.choice([-1.0, 1.0], (6, 1))])
    return _Lesion(
        centre,
        q * np.sign(np.diag(r)),
        axes,
        lobulation,
        reach,
        apps,
        sum(w * A.LESIONS[n].het for w, n in mixes),
        blobs,
        _unit(rng, 8),
        _unit(rng, 7),
        1 + halo if halo_mm else None,
        halo_mm,
    )


def _jitter(rng, look: A.Look) -> A.Look:
    """Per-lesion variation: each contrast against liver scaled by 0.75-1.25."""
    refs, gains = (1, A.LIVER_ADC, 1, 1, 1, 1), rng.uniform(0.75, 1.25, 6)
    values = [
        None if v is None else max(0.05, 1 + (v / ref - 1) * g) * ref
        for v, g, ref in zip(look[:6], gains, refs, strict=True)
    ]
    return A.Look(*values, dwi=look.dwi)


def _coords(grid: _Grid, pose: _Pose, lo=None, hi=None):
    """Index box of ``grid`` covering the patient-frame box [lo, hi] (None: the whole grid) and the
    patient coordinates of its voxels: x, y of shape (ni, nj, 1), z of shape (1, 1, nk); None if empty."""
    a, b = np.zeros(3, int), np.array(grid.shape)
    if lo is not None:
        corners = np.array(list(itertools.product(*zip(lo, hi, strict=True))))
        world = corners @ _rot_z(pose.theta).T + pose.shift
        idx = (world - grid.origin) / grid.spacing
        a = np.clip(np.floor(idx.min(0)).astype(int), 0, b)
        b = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, b)
        if np.any(b <= a):
            return None
    w = [grid.origin[n] + grid.spacing[n] * np.arange(a[n], b[n]) - pose.shift[n] for n in range(3)]
    c, s = np.cos(pose.theta), np.sin(pose.theta)
    x = (c * w[0][:, None] + s * w[1][None, :])[..., None].astype(np.float32)
    y = (-s * w[0][:, None] + c * w[1][None, :])[..., None].astype(np.float32)
    return tuple(slice(i, j) for i, j in zip(a, b, strict=True)), x, y, w[2].astype(np.float32)[None, None, :]


def _render(an: _Anatomy, grid: _Grid, pose: _Pose, seqs, sub: int):
    """Noise-free images of ``seqs`` (ratios to liver, sequence axis first) on ``grid`` with the patient
    at ``pose``, and each lesion's partial-volume fraction; each slice averages ``sub`` sub-slices."""
    nx, ny, nz = grid.shape
    dz = grid.spacing[2] / sub
    fine = _Grid((nx, ny, nz * sub), grid.origin - [0, 0, (sub - 1) * dz / 2], grid.spacing / [1, 1, sub])
    idx = [SEQUENCES.index(q) for q in seqs]
    tv = {name: v[idx] for name, v in TISSUE.items()}
    b = an.body
    _, x, y, z = _coords(fine, pose)
    img = np.zeros((len(seqs), nx, ny, 1), np.float32)  # body cross-section, then repeated along z
    back = np.where(y < 0, 0.9, 1.0)  # flatter at the back
    for tissue, extra in (("fat", b["muscle"] + b["fat"]), ("muscle", b["muscle"])):
        _paint(img, _ramp(-_ell(x, y, b["bx"] + extra, (b["by"] + extra) * back), 1), tv[tissue])
    inside = _ramp(-an.wall(x, y), 1)
    gut = b["gut"]
    tex = ndi.map_coordinates(gut, [x[..., 0] / 4 + len(gut) / 2, y[..., 0] / 4 + gut.shape[1] / 2], order=1)
    _paint(img, inside, tv["viscera"][:, None, None, None] * (1 + 0.3 * np.tanh(tex[..., None])))
    _paint(img, inside * _ramp(tex[..., None] - 1.8, 0.3), tv["lung"] * 0.5)  # bowel gas
    solid = np.zeros_like(x)  # structures that run through the whole slab
    for side in (-1, 1):  # paraspinal muscles
        w = _ramp(-_ell(x - side * 38, y - b["spine"][1] + 4, 26, 22), 1)
        _paint(img, w, tv["muscle"])
        solid = np.maximum(solid, w)
    for name in ("spine", "aorta", "ivc"):
        x0, y0, r = b[name]
        w = _ramp(r - np.hypot(x - x0, y - y0), 1)
        _paint(img, w, tv["bone" if name == "spine" else name])
        solid = np.maximum(solid, w)
    img = np.repeat(img, nz * sub, axis=3)
    zd = an.diaphragm(x, y)
    top = int(np.searchsorted(z[0, 0], zd.min()))
    if top < nz * sub:  # lungs and heart above the diaphragm
        heart = _ramp(-_ell(x + 10, y - 0.25 * b["by"], 0.45 * b["bx"], 0.5 * b["by"]), 1)
        above = [tv["lung"][k] + heart * (tv["heart"][k] - tv["lung"][k]) for k in range(len(seqs))]
        _paint(img[..., top:], _ramp(z[..., top:] - zd - 3, 2) * (inside * (1 - solid)), above)
    for tissue, c, s in an.organs:  # spleen, gallbladder
        box = _coords(fine, pose, c - s - 2, c + s + 2)
        if box:
            sl, ox, oy, oz = box
            d = np.maximum(_ellipsoid(ox, oy, oz, c, s), an.wall(ox, oy) + 2)
            d = np.maximum(d, oz - an.diaphragm(ox, oy))
            _paint(img[(slice(None), *sl)], _ramp(-d, 1), tv[tissue])

    box = _coords(fine, pose, an.lo, an.lo + an.h * (np.array(an.F.shape) - 1))
    if box:  # liver: sample its maps (trilinear) where this grid sees them
        sl, lx, ly, lz = box
        pts = np.stack(np.broadcast_arrays(*((v - an.lo[n]) / an.h for n, v in enumerate((lx, ly, lz)))))
        dist = ndi.map_coordinates(an.F, pts, order=1, mode="nearest")
        near = dist < an.ascites_mm + 1
        T, V = np.zeros_like(dist), np.zeros_like(dist)
        T[near] = ndi.map_coordinates(an.T, pts[:, near], order=1, mode="nearest")
        V[near] = ndi.map_coordinates(an.V, pts[:, near], order=1, mode="constant")
        frac, part, liver = _ramp(-dist, 1), img[(slice(None), *sl)], an.liver[idx]
        _paint(part, frac, [v * (1 + an.het * T) for v in liver])
        if an.cirrhosis:
            _paint(part, frac * 0.45 * np.exp(-((T / 0.25) ** 2)), tv["septa"] * liver / TISSUE["liver"][idx])
        if an.ascites_mm:
            fluid = _ramp(dist, 1) * _ramp(an.ascites_mm - dist, 1) * _ramp(-an.wall(lx, ly) - 2, 1)
            for x0, y0, r in (b["spine"], b["aorta"], b["ivc"]):  # not around what the liver wraps
                fluid = fluid * _ramp(np.hypot(lx - x0, ly - y0) - r - an.ascites_mm - 3, 2)
            _paint(part, fluid, tv["fluid"])
        _paint(part, np.clip(V, 0, 1) * frac, tv["portal"])
        _paint(part, np.clip(-V, 0, 1) * frac, tv["hepatic"])

    fractions = []
    for les in an.lesions:
        frac = np.zeros(fine.shape, np.float32)
        _paint_lesion(img, frac, les, fine, pose, idx)
        fractions.append(frac.reshape(nx, ny, nz, sub).mean(axis=3))
    return img.reshape(len(seqs), nx, ny, nz, sub).mean(axis=4), fractions


def _paint_lesion(img, frac, les: _Lesion, grid: _Grid, pose: _Pose, idx) -> None:
    """Paint one lesion (and its halo) into ``img``; write its partial-volume fraction into ``frac``.
    ρ is the radius normalised to the lobulated boundary (0 centre, 1 edge); u the direction."""
    ext = les.axes.max() * les.reach + les.halo_mm + 3
    box = _coords(grid, pose, les.centre - ext, les.centre + ext)
    if box is None:
        return
    sl, x, y, z = box
    d = (x - les.centre[0], y - les.centre[1], z - les.centre[2])
    e = [(d[0] * les.rot[0, j] + d[1] * les.rot[1, j] + d[2] * les.rot[2, j]) / les.axes[j] for j in range(3)]
    r = np.sqrt(e[0] ** 2 + e[1] ** 2 + e[2] ** 2) + 1e-6
    u = [c / r for c in e]

    def bumps(directions, kappa):
        return sum(np.exp(kappa * (u[0] * v[0] + u[1] * v[1] + u[2] * v[2] - 1)) for v in directions)

    rho, R = r / (1 + _lobulation(u, *les.lobes)), les.radius
    weight = _ramp((1 - rho) * R, 1.0)
    part = img[(slice(None), *sl)]
    if les.halo is not None:  # perilesional oedema / hyperaemia: scales the liver around
        halo = np.clip(1 - np.maximum(rho - 1, 0) * R / les.halo_mm, 0, 1)
        for k, i in enumerate(idx):
            part[k] *= 1 + halo * (les.halo[i] - 1)
    spokes = bumps(les.spokes, 80) if any(p == "scar" for app in les.apps for p, _ in app[1]) else 0
    profiles = {  # app = (weight, layers, core, rim)
        "centre": lambda app: _ramp(app[2] - rho, 0.08),
        "outer": lambda app: _ramp(rho - 0.5, 0.1),
        "rim": lambda app: _ramp(rho - (1 - app[3]), 0.08),
        "capsule": lambda app: _ramp(rho - (1 - 1.5 / R), 0.6 / R),
        "nodules": lambda app: _ramp(rho - 0.72, 0.1) * np.clip(1.6 * bumps(les.nodules, 25), 0, 1),
        "scar": lambda app: np.maximum(_ramp(0.12 - rho, 0.06), spokes * _ramp(0.7 - rho, 0.1)),
        "septa": lambda app: np.clip(bumps(les.spokes, 150), 0, 1) * _ramp(app[2] - rho, 0.1),
    }
    value = [0.0] * len(idx)
    for app in les.apps:
        own = [np.full(rho.shape, app[1][0][1][i], np.float32) for i in idx]  # first layer: "all"
        for prof, ratios in app[1][1:]:
            w = profiles[prof](app)
            for k, i in enumerate(idx):
                own[k] += w * (ratios[i] - own[k])
        value = [v + app[0] * o for v, o in zip(value, own, strict=True)]
    tex = sum(
        bl[3] * np.exp(-((e[0] - bl[0]) ** 2 + (e[1] - bl[1]) ** 2 + (e[2] - bl[2]) ** 2) / 0.12) for bl in les.blobs
    )
    _paint(part, weight, [v * (1 + les.het * tex) for v in value])
    frac[sl] = np.maximum(frac[sl], weight)


def _protocol(rng, case, an: _Anatomy, scale: float):
    """Grids (one per sequence family, slab over the liver) and poses (one per acquisition)."""
    scanner = A.SCANNERS[case.scanner]
    fov = rng.uniform(380, 420)
    z_lo, z_hi = an.lo[2] + 8, an.body["dome"]
    grids = {}
    for fam in ("t2", "dwi", "t1"):
        mx, my, thick, phase_fov = getattr(scanner, fam)
        n = np.array([max(8, round(mx * scale)), max(8, round(my * scale)), 0])
        spacing = np.array([fov / n[0], fov * phase_fov / n[1], thick / min(scale, 1.0)])
        n[2] = max(4, int(np.ceil((z_hi - z_lo + 2 * rng.uniform(4, 8)) / spacing[2])))
        centre = np.array([rng.uniform(-5, 5), rng.uniform(-8, 8), (z_lo + z_hi) / 2 + rng.uniform(-3, 3)])
        grids[fam] = _Grid(tuple(int(v) for v in n), centre - spacing * (n - 1) / 2, spacing)
    while True:  # breath-holds at least 1.5 mm apart
        shifts = np.clip(rng.normal(0, MAX_SHIFT / 2, (len(ACQUISITIONS), 3)), -MAX_SHIFT, MAX_SHIFT)
        if (np.linalg.norm(shifts[:, None] - shifts[None], axis=2) + 99 * np.eye(len(shifts))).min() >= 1.5:
            break
    thetas = np.deg2rad(np.clip(rng.normal(0, 0.5, len(ACQUISITIONS)), -1, 1))
    return grids, [_Pose(t, s) for t, s in zip(thetas, shifts, strict=True)]


def _write_case(case, out_dir: Path, scale: float) -> list[float]:
    """Generate and write one case; returns its lesions' diameters (mm, longest axis)."""
    rng = np.random.default_rng(case.seed)
    an = _anatomy(rng, case, scale)
    grids, poses = _protocol(rng, case, an, scale)
    scanner = A.SCANNERS[case.scanner]
    gain = {f: scanner.scale * level * rng.uniform(0.85, 1.15) for f, level in A.FAMILY_LEVEL.items()}
    adc_gain = A.LIVER_ADC * rng.uniform(0.92, 1.08)
    folder = out_dir / case.case
    bias = {}
    for n in range(len(an.lesions)):
        (folder / "masks" / f"L{n + 1}").mkdir(parents=True)
    for seqs, pose in zip(ACQUISITIONS, poses, strict=True):
        fam = FAMILY[seqs[0]]
        grid = grids[fam]
        images, fractions = _render(an, grid, pose, seqs, max(1, round(grid.spacing[2] / SUBSLICE_MM)))
        affine = grid.affine()
        if fam not in bias:  # coil sensitivity: smooth, brighter front and back; one per grid
            nx, ny, nz = grid.shape
            front_back = 1 + 0.15 * np.linspace(-1, 1, ny) ** 2
            coil = np.exp(0.12 * _field(rng, (nx, ny), max(nx, ny) / 2.5)) * front_back
            bias[fam] = coil[..., None] * np.exp(0.05 * rng.normal() * np.linspace(-1, 1, nz))
        for seq, img in zip(seqs, images, strict=True):
            noise = rng.standard_normal((2, *grid.shape), dtype=np.float32)
            if seq == "ADC":  # a computed map: no bias field, Gaussian noise, 0 where there is no signal
                noise[0] *= 0.07 * A.LIVER_ADC
                noise[0] += img * adc_gain
                noise[0][images[0] < 0.1] = 0
            else:  # a magnitude image: bias field and Rician noise
                noise *= gain[fam] / (scanner.snr * A.SNR_FACTOR[fam])
                img *= bias[fam]
                noise[0] += img * (gain[fam] * A.LIVER_GAIN.get(seq, 1.0))
                np.hypot(noise[0], noise[1], out=noise[0])
            data = np.clip(np.rint(noise[0], out=noise[0]), 0, 32767).astype(np.int16)
            write_volume(folder / f"{seq}.nii.gz", data, affine)
        for n, frac in enumerate(fractions):
            mask = frac >= min(0.5, 0.5 * frac.max())
            if not frac.max():  # thinner than the sampling: mark the voxel at its centre
                mask = np.zeros(grid.shape, bool)
                ijk = (_rot_z(pose.theta) @ an.lesions[n].centre + pose.shift - grid.origin) / grid.spacing
                mask[tuple(np.clip(np.rint(ijk).astype(int), 0, np.array(grid.shape) - 1))] = True
            for seq in seqs:
                write_volume(folder / "masks" / f"L{n + 1}" / f"{seq}.nii.gz", mask.astype(np.uint8), affine)
    return [round(2 * float(les.axes.max()), 1) for les in an.lesions]


@dataclass
class _LesionSpec:
    label: str
    diameter: float  # mm, before fitting into the liver
    partner: str | None = None  # atypical: the class whose look is mixed in
    mix: float = 0.0


@dataclass
class _CaseSpec:
    case: str
    patient: str
    age: int
    sex: str
    cirrhosis: bool
    fatty: bool
    scanner: int
    lesions: list[_LesionSpec]
    split: str
    seed: np.random.SeedSequence | None = None


def _diameter(rng, label: str) -> float:
    """A diameter (mm) from the seed study's distribution for the class (docs/paper.md), redrawn until within
    DIAMETER_RANGE.
    Median (IQR): a lognormal with separate spreads below and above the median, so that both quartiles
    match (the paper's are skewed even in log scale); mean ± SD: a normal."""
    kind, a, b, c = A.DIAMETERS[label]
    while True:
        z = rng.standard_normal()
        d = a * (b / a if z < 0 else c / a) ** (abs(z) / 0.6745) if kind == "median" else a + b * z
        if A.DIAMETER_RANGE[0] <= d <= A.DIAMETER_RANGE[1]:
            return float(d)


def _split(groups: list[list[str]], rng, test_fraction: float) -> np.ndarray:
    """Patient-level split stratified by class (True: test). With test_fraction > 0, every class with
    two or more lesions has at least one in each split."""
    counts = np.array([[g.count(c) for c in CLASSES] for g in groups])
    total = counts.sum(axis=0)
    target = np.round(test_fraction * total)
    if test_fraction > 0:
        target = np.where(total >= 2, np.clip(target, 1, total - 1), target)
    keep = (total >= 2).astype(int)  # lesions of each class that must stay in development
    test = np.zeros(len(groups), bool)
    for i in rng.permutation(len(groups)):
        have = counts[test].sum(axis=0)
        if np.all(have + counts[i] <= target) and counts[i] @ (target - have) > 0:
            test[i] = True
    for c in np.argsort(total):  # top up classes still short, keeping one of each in development
        while counts[test, c].sum() < target[c]:
            dev = counts[~test].sum(axis=0)
            movable = [i for i in np.flatnonzero(~test) if counts[i, c] and np.all(dev - counts[i] >= keep)]
            if not movable:
                break
            test[min(movable, key=lambda i: counts[i].sum())] = True
    return test


def _plan(rng, lesions_per_class: int, test_fraction: float, atypical_fraction: float) -> list[_CaseSpec]:
    """Group lesions into patients (about 1.25 per exam), draw demographics, scanners and the split."""
    left = dict.fromkeys(CLASSES, lesions_per_class)
    groups = []
    while any(left.values()):
        names = [c for c in CLASSES if left[c]]
        main = names[rng.choice(len(names), p=np.array([left[c] for c in names]) / sum(left.values()))]
        group = [main]
        left[main] -= 1

        def spare(c: str) -> bool:  # a class always spans two or more exams, so both splits can have it
            return left[c] >= 2 or (left[c] >= 1 and any(c in g for g in groups))

        for _ in range(rng.choice(3, p=(0.8, 0.15, 0.05))):
            if main in A.MULTIPLE and spare(main) and rng.random() < 0.7:
                extra = main
            else:  # an incidental benign lesion
                incidental = [c for c in ("cyst", "haemangioma") if spare(c) and c not in group]
                if not incidental:
                    break
                extra = incidental[rng.integers(len(incidental))]
            group.append(extra)
            left[extra] -= 1
        groups.append(group)
    lesions = [[_LesionSpec(label, _diameter(rng, label)) for label in g] for g in groups]
    flat = [les for g in lesions for les in g]
    for i in rng.choice(len(flat), round(atypical_fraction * len(flat)), replace=False):
        flat[i].partner, flat[i].mix = A.PARTNERS[flat[i].label], rng.uniform(0.3, 0.55)
    test = _split(groups, rng, test_fraction)
    weights = np.array([s.patients for s in A.SCANNERS], float)
    width = max(4, len(str(len(groups))))
    cases = []
    for n, g in enumerate(rng.permutation(len(groups)), start=1):  # ids say nothing of label or split
        age_mean, age_sd, p_male, p_cirrhosis = A.PATIENTS[groups[g][0]]
        cirrhosis = bool(rng.random() < p_cirrhosis)
        cases.append(
            _CaseSpec(
                case=f"C{n:0{width}d}",
                patient=f"P{n:0{width}d}",
                age=int(np.clip(round(rng.normal(age_mean, age_sd)), *A.AGE_RANGE)),
                sex="M" if rng.random() < p_male else "F",
                cirrhosis=cirrhosis,
                fatty=bool(rng.random() < (0.1 if cirrhosis else 0.22)),
                scanner=int(rng.choice(len(weights), p=weights / weights.sum())),
                lesions=[lesions[g][i] for i in rng.permutation(len(groups[g]))],
                split=SPLITS[1] if test[g] else SPLITS[0],
            )
        )
    return cases


def make_cohort(
    out_dir: Path,
    *,
    lesions_per_class: int = 20,
    seed: int = 0,
    test_fraction: float = 0.2,
    atypical_fraction: float = 0.15,
    matrix_scale: float = 1.0,
    progress: bool = False,
) -> Path:
    """Writes the cohort to out_dir (created; must be empty or absent) and returns the manifest path.

    ``lesions_per_class`` lesions of each of the seven classes, grouped into patients with one exam
    each; ``test_fraction`` of the lesions (stratified by class, split by patient) form the test set;
    ``atypical_fraction`` of them mix in the look of a neighbouring class; ``matrix_scale`` < 1 shrinks
    matrices and slice counts (same field of view, larger voxels) for fast tests. Deterministic in
    ``seed``: the same arguments write the same bytes. Cases are generated in parallel processes
    (not inside a daemon process such as a Celery worker)."""
    out_dir = Path(out_dir)
    if lesions_per_class < 1 or not 0 <= test_fraction < 1 or not 0 <= atypical_fraction <= 1:
        raise ValueError("need lesions_per_class >= 1, 0 <= test_fraction < 1, 0 <= atypical_fraction <= 1")
    if matrix_scale <= 0:
        raise ValueError("matrix_scale must be positive")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_seed, case_seeds = np.random.SeedSequence(seed).spawn(2)
    cases = _plan(np.random.default_rng(plan_seed), lesions_per_class, test_fraction, atypical_fraction)
    for case, case_seed in zip(cases, case_seeds.spawn(len(cases)), strict=True):
        case.seed = case_seed
        case.patient = f"S{seed}-{case.patient}"  # cohorts of other seeds are other patients
    workers = min(os.cpu_count() or 1, 4) if len(cases) >= 8 else 1
    workers = 1 if multiprocessing.current_process().daemon else workers
    args = (cases, itertools.repeat(out_dir), itertools.repeat(matrix_scale))
    pool = ProcessPoolExecutor(workers) if workers > 1 else _Serial()
    with pool, tqdm(total=len(cases), unit="case", desc="phantoms", disable=not progress) as bar:
        diameters = []
        for sizes in pool.map(_write_case, *args):
            diameters.append(sizes)
            bar.update()
    manifest = out_dir / MANIFEST_NAME
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for case, sizes in zip(cases, diameters, strict=True):
            s = A.SCANNERS[case.scanner]
            for n, (les, d) in enumerate(zip(case.lesions, sizes, strict=True), start=1):
                writer.writerow(
                    [
                        case.patient,
                        case.age,
                        case.sex,
                        "yes" if case.cirrhosis else "no",
                        "yes" if case.fatty else "no",
                        s.vendor,
                        s.model,
                        s.field_t,
                        case.case,
                        f"L{n}",
                        les.label,
                        f"{d:.1f}",
                        case.split,
                    ]
                )
    return manifest


class _Serial:
    """In-process stand-in for a process pool."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    map = staticmethod(map)
