"""Constants that define the domain, defined once for the whole project.

The Django apps import them from here; nothing here imports Django.
"""

SEQUENCES: tuple[str, ...] = ("T2WI", "DWI", "ADC", "T1WI", "LAP", "PVP", "DP")
"""The seven MRI sequences, in the fixed order used everywhere (arrays, UI, model)."""

SEQUENCE_TITLES: dict[str, str] = {
    "T2WI": "T2-weighted",
    "DWI": "Diffusion-weighted (b = 800 s/mm²)",
    "ADC": "Apparent diffusion coefficient",
    "T1WI": "T1-weighted pre-contrast",
    "LAP": "Late arterial phase",
    "PVP": "Portal venous phase",
    "DP": "Delayed phase",
}

CLASSES: tuple[str, ...] = ("cyst", "FNH", "haemangioma", "abscess", "HCC", "ICC", "metastasis")
"""The seven lesion classes; a label is an index into this tuple."""

CLASS_TITLES: dict[str, str] = {
    "cyst": "Cyst",
    "FNH": "Focal nodular hyperplasia",
    "haemangioma": "Haemangioma",
    "abscess": "Abscess",
    "HCC": "Hepatocellular carcinoma",
    "ICC": "Intrahepatic cholangiocarcinoma",
    "metastasis": "Metastasis",
}

MALIGNANT_CLASSES: frozenset[str] = frozenset({"HCC", "ICC", "metastasis"})
"""Classes 4-6 are malignant, 0-3 benign."""


def is_malignant(label: int) -> bool:
    """Two-way task: True for a malignant class index."""
    return CLASSES[label] in MALIGNANT_CLASSES


READER_GROUPS: tuple[str, ...] = ("resident", "general", "academic")
"""Reader groups, from least to most experienced."""

READER_GROUP_TITLES: dict[str, str] = {
    "resident": "Resident",
    "general": "General radiologist",
    "academic": "Academic radiologist",
}

SMALL_LESION_MM = 16.0
"""Lesions with a diameter (mm) below this are small: the paper's size classes (and its 32 mm crop cube)."""
MEDIUM_LESION_MM = 32.0
"""Diameters from SMALL_LESION_MM up to and including this (mm) are medium (the 64 mm cube); above, large."""

SPLITS: tuple[str, ...] = ("development", "test")
"""Patient-level data splits: the model is developed on one and compared on the other."""

SEXES: tuple[str, ...] = ("F", "M")


def class_index(name: str) -> int:
    """Index of a class name, case-insensitive; ValueError names the unknown label."""
    lowered = {c.lower(): i for i, c in enumerate(CLASSES)}
    try:
        return lowered[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown label {name!r}; expected one of {', '.join(CLASSES)}") from None
