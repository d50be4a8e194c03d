"""What of a DICOM exam's headers may be stored, and in which form: an allow-list after DICOM PS3.15 Annex E.

Nothing of a DICOM file is stored as such: the importer stores NIfTI files holding only voxels and the
affine (``inference.nifti.write_volume``), and the database gets the values below, nothing else.

- PatientID (0010,0020; basic profile Z, replace) → ``Patient.key``: HMAC-SHA256 with PSEUDONYM_KEY
  (``patient_key``).
- StudyInstanceUID (0020,000D; U, replace UID) → the case name ``dicom-`` + 16 hex digits of the same keyed hash.
- PatientAge (0010,1010; X), else PatientBirthDate (Z) and StudyDate (Z) → age in whole years, 90 and over
  stored as 90 (Retain Patient Characteristics Option).
- PatientSex (0010,0040; Z) → F or M (Retain Patient Characteristics Option).
- Manufacturer (0008,0070), ManufacturerModelName (0008,1090), MagneticFieldStrength (0018,0087) (not in the
  profile's table: kept) → scanner vendor (normalised), model, field strength in tesla.
- Pixel data, ImagePositionPatient, ImageOrientationPatient, PixelSpacing (kept) → the NIfTI voxels and
  affine; a series with BurnedInAnnotation YES is refused.

Read but never stored: SeriesDescription, ProtocolName and SequenceName (X or C: used only to map the series),
acquisition dates and times (D/X: only the intervals between series are used, in memory), b-values, ImageType.
Removed by not being carried: patient name, other ids, accession number, institution, physicians, station,
device serial, all other dates, UIDs, descriptions and private tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from pydicom.dataset import Dataset

from readerstudy.cases.anonymise import patient_key

OLDEST_AGE = 90
"""Ages from this on are stored as this value (HIPAA Safe Harbor aggregates ages over 89)."""
VENDORS = {
    "GE": "GE",
    "SIEMENS": "Siemens",
    "PHILIPS": "Philips",
    "CANON": "Canon",
    "TOSHIBA": "Canon",
    "HITACHI": "Hitachi",
    "FUJIFILM": "Fujifilm",
    "UNITED IMAGING": "United Imaging",
}
"""Manufacturer (upper case) starts with → the vendor name stored (the demo cohort's spelling)."""


@dataclass(frozen=True)
class ExamFacts:
    """The storable facts of one exam, each None where the headers lack it (``labels.csv`` may give it)."""

    case_name: str
    age: int | None
    sex: str | None
    scanner_vendor: str | None
    scanner_model: str | None
    field_strength_t: Decimal | None


def case_name(study_uid: str) -> str:
    """The exam's case name: a keyed hash of its StudyInstanceUID (the same exam always gets the same name,
    which makes re-imports idempotent; the UID cannot be recovered from it)."""
    return "dicom-" + patient_key(f"StudyInstanceUID {study_uid}")[:16]


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip()


def age_years(ds: Dataset) -> int | None:
    """PatientAge (``061Y``, ``005M``, ``010W``, ``020D``) in whole years, else from PatientBirthDate and
    StudyDate (or SeriesDate/AcquisitionDate); capped at OLDEST_AGE."""
    age = _text(ds, "PatientAge").upper()
    years = None
    if len(age) == 4 and age[:3].isdigit() and age[3] in "YMWD":
        years = int(age[:3]) // {"Y": 1, "M": 12, "W": 52, "D": 365}[age[3]]
    else:
        born, seen = _date(_text(ds, "PatientBirthDate")), None
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate"):
            seen = seen or _date(_text(ds, keyword))
        if born and seen and seen >= born:
            years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return None if years is None else min(years, OLDEST_AGE)


def _date(value: str) -> date | None:
    try:
        return date(int(value[0:4]), int(value[4:6]), int(value[6:8])) if len(value) >= 8 else None
    except ValueError:
        return None


def vendor(manufacturer: str) -> str | None:
    upper = manufacturer.strip().upper()
    if not upper:
        return None
    return next((name for prefix, name in VENDORS.items() if upper.startswith(prefix)), manufacturer.strip())


def field_strength(ds: Dataset) -> Decimal | None:
    """MagneticFieldStrength in tesla to one decimal (values over 100 are taken as gauss, as some old
    Philips files write them)."""
    try:
        tesla = Decimal(_text(ds, "MagneticFieldStrength"))
    except InvalidOperation:
        return None
    if tesla > 100:
        tesla /= 10000
    return tesla.quantize(Decimal("0.1")) if tesla > 0 else None


def exam_facts(study_uid: str, ds: Dataset) -> ExamFacts:
    """The storable facts of the exam whose first image header is ``ds``."""
    sex = _text(ds, "PatientSex").upper()
    return ExamFacts(
        case_name=case_name(study_uid),
        age=age_years(ds),
        sex=sex if sex in ("F", "M") else None,
        scanner_vendor=vendor(_text(ds, "Manufacturer")),
        scanner_model=_text(ds, "ManufacturerModelName") or None,
        field_strength_t=field_strength(ds),
    )


def patient_id(ds: Dataset) -> str:
    """The original PatientID, handed only to the importer, which stores its keyed hash (``patient_key``)."""
    return _text(ds, "PatientID")
