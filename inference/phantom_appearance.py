"""Data tables for the synthetic phantoms (``inference.phantoms``): scanners and
protocols, patient demographics, lesion diameters, and how every tissue and lesion
class looks on the seven sequences.

Intensities are ratios to normal liver parenchyma on the same sequence and phase
(liver = 1), so "hyperenhancing in LAP" is ``lap > 1`` and "washout" is ``pvp < 1``;
ADC is absolute, in 1e-6 mm²/s. DWI (b = 800 s/mm²) is derived from T2 and ADC
unless given. Built from docs/paper.md ("Classes", "Sequences", "Interpretability").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

B_VALUE = 800.0
"""DWI b-value, s/mm²."""
LIVER_ADC = 1200.0
"""ADC of normal liver, 1e-6 mm²/s."""
LIVER_GAIN = {"T1WI": 1.0, "LAP": 1.2, "PVP": 1.6, "DP": 1.45}
"""Liver signal in each T1 phase relative to pre-contrast (its own enhancement)."""


class Look(NamedTuple):
    """A tissue on the seven sequences: ratios to liver (``adc`` in 1e-6 mm²/s).
    ``lap``/``pvp``/``dp`` left None mean no enhancement (signal stays at ``t1``
    while the liver enhances); ``dwi`` left None is derived from ``t2`` and ``adc``."""

    t2: float
    adc: float
    t1: float
    lap: float | None = None
    pvp: float | None = None
    dp: float | None = None
    dwi: float | None = None


TISSUES: dict[str, Look] = {
    "liver": Look(1.0, LIVER_ADC, 1.0, 1.0, 1.0, 1.0),
    "fat": Look(0.45, 500, 0.3, dwi=0.15),  # fat-suppressed T2, dynamic T1 and DWI
    "muscle": Look(0.55, 1450, 0.75, 0.7, 0.55, 0.6),
    "viscera": Look(1.4, 1600, 0.75, 0.95, 0.85, 0.8),
    "bone": Look(0.5, 450, 0.55, 0.5, 0.45, 0.5, dwi=0.3),
    "aorta": Look(0.25, 2600, 0.45, 2.6, 1.3, 1.0),
    "ivc": Look(0.4, 2600, 0.5, 0.6, 1.25, 1.0),
    "portal": Look(0.35, 2600, 0.5, 1.3, 1.45, 1.05),
    "hepatic": Look(0.35, 2600, 0.5, 0.45, 1.3, 1.05),
    "spleen": Look(1.9, 850, 0.85, 1.3, 1.0, 0.95),
    "lung": Look(0.06, 800, 0.06, 0.05, 0.04, 0.04, dwi=0.05),
    "heart": Look(0.6, 2200, 0.7, 2.0, 1.3, 1.0),
    "fluid": Look(4.0, 3000, 0.35),  # gallbladder, ascites
    "septa": Look(1.5, 1100, 0.8, 0.9, 1.0, 1.25),  # cirrhotic fibrosis: enhances late
}

FATTY_GAIN = {"T2WI": 1.25, "DWI": 0.9, "ADC": 0.88, "T1WI": 1.3, "LAP": 1.1, "PVP": 1.1, "DP": 1.1}
"""Fatty liver parenchyma relative to normal liver (brighter on T2WI/T1WI)."""
CIRRHOTIC_GAIN = {"T2WI": 1.05, "DWI": 1.1, "ADC": 0.85, "T1WI": 0.95, "LAP": 1.0, "PVP": 0.95, "DP": 0.95}


@dataclass(frozen=True)
class LesionClass:
    """Shape and appearance of one class. ``layers`` are painted in order over the
    lesion: (profile, look, probability). Profiles: all, centre (ρ < core), inner,
    outer (ρ ≶ 0.5), rim (outer ``rim`` fraction of the radius, ≥ 3 mm), capsule
    (outer 1.5 mm), nodules (discontinuous peripheral blobs), scar (central
    stellate), septa (thin radial septa inside the centre). ``halo`` multiplies
    the liver around the lesion (oedema) over ``halo_mm``."""

    layers: tuple[tuple[str, Look, float], ...]
    lobes: float  # amplitude of boundary lobulation (fraction of radius)
    het: float  # internal heterogeneity (fraction)
    aspect: float  # smallest axis / longest axis, lower bound
    rim: float = 0.25
    core: tuple[float, float] = (0.5, 0.6)
    halo: Look | None = None
    halo_mm: float = 0.0


LESIONS: dict[str, LesionClass] = {
    "cyst": LesionClass(layers=(("all", Look(4.2, 3000, 0.35), 1.0),), lobes=0.02, het=0.01, aspect=0.85),
    "haemangioma": LesionClass(
        layers=(
            ("all", Look(3.2, 1700, 0.55, pvp=0.5, dp=1.0), 1.0),  # centre fills last
            ("outer", Look(3.2, 1700, 0.55, pvp=1.3, dp=1.15), 1.0),
            ("nodules", Look(3.0, 1700, 0.55, 2.2, 1.5, 1.2), 1.0),
        ),
        lobes=0.06,
        het=0.05,
        aspect=0.7,
    ),
    "FNH": LesionClass(
        layers=(
            ("all", Look(1.1, 1250, 0.95, 1.9, 1.08, 1.02), 1.0),
            ("scar", Look(2.3, 1700, 0.7, 0.6, 0.85, 1.35), 0.8),
        ),
        lobes=0.07,
        het=0.03,
        aspect=0.75,
    ),
    "abscess": LesionClass(
        layers=(
            ("all", Look(1.6, 1100, 0.8, 1.5, 1.45, 1.3), 1.0),  # wall
            ("centre", Look(3.0, 620, 0.55), 1.0),  # pus: restricted, non-enhancing
            ("septa", Look(1.6, 1100, 0.8, 1.5, 1.45, 1.3), 0.4),
        ),
        lobes=0.1,
        het=0.08,
        aspect=0.7,
        core=(0.62, 0.75),
        halo=Look(1.35, 1450, 0.95, 1.3, 1.0, 1.0),
        halo_mm=10.0,
    ),
    "HCC": LesionClass(
        layers=(
            ("all", Look(1.35, 950, 0.85, 1.6, 0.65, 0.6), 1.0),  # washout: darker than liver after LAP
            ("centre", Look(2.2, 1500, 0.6), 0.2),  # necrosis
            ("capsule", Look(1.1, 1200, 0.9, 0.95, 1.0, 1.4), 0.85),  # enhancing capsule in DP
        ),
        lobes=0.1,
        het=0.1,
        aspect=0.75,
        core=(0.3, 0.45),
    ),
    "ICC": LesionClass(
        layers=(
            ("all", Look(1.5, 1000, 0.75, 0.75, 0.9, 1.25), 1.0),  # fibrous centre, enhances late
            ("rim", Look(1.75, 850, 0.8, 1.5, 1.15, 1.05), 1.0),
        ),
        lobes=0.16,
        het=0.1,
        aspect=0.65,
        rim=0.3,
    ),
    "metastasis": LesionClass(
        layers=(
            ("all", Look(1.7, 1000, 0.7, 0.8, 0.75, 0.75), 1.0),
            ("centre", Look(2.6, 1350, 0.6), 0.7),  # necrotic centre: target-like T2
            ("rim", Look(1.35, 800, 0.75, 1.45, 1.1, 0.9), 1.0),
        ),
        lobes=0.13,
        het=0.1,
        aspect=0.7,
        rim=0.3,
        core=(0.35, 0.5),
        halo=Look(1.12, 1250, 1.0, 1.12, 1.0, 1.0),
        halo_mm=5.0,
    ),
}

PARTNERS = {
    "abscess": "metastasis",
    "metastasis": "abscess",
    "FNH": "HCC",
    "HCC": "FNH",
    "cyst": "haemangioma",
    "haemangioma": "cyst",
    "ICC": "metastasis",
}
"""Atypical lesions mix in the appearance of this neighbouring class."""

DIAMETERS: dict[str, tuple[str, float, float, float]] = {
    "cyst": ("median", 12.8, 8.7, 22.5),
    "haemangioma": ("median", 19.7, 15.3, 32.6),
    "FNH": ("mean", 34.1, 12.9, 0.0),
    "abscess": ("mean", 63.0, 31.3, 0.0),
    "HCC": ("median", 28.9, 23.2, 45.9),
    "ICC": ("median", 52.5, 30.7, 69.5),
    "metastasis": ("median", 28.6, 20.2, 38.3),
}
"""docs/paper.md diameters (mm): ("median", median, q1, q3) → lognormal fit; ("mean", mean, sd, _) →
truncated normal."""
DIAMETER_RANGE = (5.0, 150.0)

PATIENTS: dict[str, tuple[float, float, float, float]] = {
    "cyst": (58, 12, 0.4, 0.08),
    "haemangioma": (47, 11, 0.35, 0.06),
    "FNH": (36, 10, 0.15, 0.03),
    "abscess": (58, 13, 0.6, 0.08),
    "HCC": (58, 10, 0.82, 0.8),
    "ICC": (62, 10, 0.55, 0.15),
    "metastasis": (60, 11, 0.5, 0.05),
}
"""Per class of a patient's main lesion: age mean, age SD (years), P(male), P(cirrhosis)."""
AGE_RANGE = (20, 88)
MULTIPLE = ("cyst", "haemangioma", "metastasis", "HCC", "abscess")
"""Classes that are often multiple in one liver."""


@dataclass(frozen=True)
class Scanner:
    """Vendor, model, field (T), patients in docs/paper.md, and protocol: per sequence
    family (in-plane matrix, slice thickness mm, phase FOV fraction); intensity
    scale (liver signal) and SNR of pre-contrast liver."""

    vendor: str
    model: str
    field_t: str
    patients: int
    t2: tuple[int, int, float, float]
    dwi: tuple[int, int, float, float]
    t1: tuple[int, int, float, float]
    scale: float
    snr: float


SCANNERS: tuple[Scanner, ...] = (
    Scanner("GE", "Signa", "1.5", 126, (288, 224, 7.0, 0.85), (128, 128, 7.0, 1.0), (288, 172, 4.0, 0.8), 110, 30),
    Scanner(
        "GE", "Discovery MR750w", "3.0", 62, (288, 224, 6.0, 0.85), (128, 128, 6.0, 1.0), (320, 192, 3.6, 0.8), 140, 45
    ),
    Scanner(
        "Philips", "Ingenia", "3.0", 58, (300, 232, 7.0, 0.85), (128, 128, 7.0, 1.0), (300, 200, 3.5, 0.8), 150, 48
    ),
    Scanner("Siemens", "Prisma", "3.0", 50, (320, 224, 6.0, 0.8), (128, 128, 6.0, 1.0), (320, 216, 3.0, 0.8), 140, 50),
    Scanner(
        "Siemens", "TrioTim", "3.0", 149, (288, 224, 8.0, 0.85), (128, 128, 8.0, 1.0), (288, 180, 3.5, 0.8), 120, 42
    ),
)
SNR_FACTOR = {"t2": 0.8, "dwi": 0.35, "t1": 1.0}
FAMILY_LEVEL = {"t2": 0.9, "dwi": 0.35, "t1": 1.0}
"""Liver signal of each sequence family relative to the scanner's scale (pre-contrast T1 = 1)."""
"""SNR of each sequence family relative to the scanner's pre-contrast T1 SNR."""
