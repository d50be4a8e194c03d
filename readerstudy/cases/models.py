"""Patients, MRI exams (cases), their seven sequence volumes, lesions and masks.

Imported data is immutable in spirit: the importer creates it whole; nothing in
the app rewrites a volume. Original names from the dataset (``source_name``)
are kept for the study admin only and never reach a reader.
"""

import secrets

from django.db import models
from django.db.models import Q

from inference.domain import CLASS_TITLES, CLASSES, SEQUENCES, SEXES, SPLITS

SEQUENCE_CHOICES = [(s, s) for s in SEQUENCES]
CLASS_CHOICES = [(i, CLASS_TITLES[c]) for i, c in enumerate(CLASSES)]
SPLIT_CHOICES = [(s, s.capitalize()) for s in SPLITS]
SEX_CHOICES = [(s, s) for s in SEXES]


def new_public_id() -> str:
    """An opaque random identifier (16 hex digits) that says nothing about content. It begins with one of
    the letters a-f, so that no spreadsheet or CSV reader tries it as a number ("12e45…" read as 1.2e+50,
    "0042…" losing its zeros, and pandas 2.3.3 crashing on "2e0691…327a")."""
    return letter_first(secrets.token_hex(8))


def letter_first(hex_digits: str) -> str:
    """``hex_digits`` with its first digit mapped onto a-f (value mod 6): 6 × 16^(n−1) of the 16^n values."""
    return "abcdef"[int(hex_digits[0], 16) % 6] + hex_digits[1:]


class Patient(models.Model):
    """A pseudonymous patient: ``key`` is a keyed hash of the original patient id."""

    key = models.CharField(max_length=32, unique=True)
    age = models.PositiveSmallIntegerField(help_text="Age in years at the exam.")
    sex = models.CharField(max_length=1, choices=SEX_CHOICES)
    cirrhosis = models.BooleanField()
    fatty_liver = models.BooleanField()

    def __str__(self) -> str:
        return f"Patient {self.key}"


class Case(models.Model):
    """One MRI exam of one patient: seven sequence volumes and one or more lesions.

    The scanner belongs to the exam rather than the patient: a patient scanned
    twice may have been scanned on two machines.
    """

    public_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    dataset = models.CharField(max_length=100, help_text="Name of the imported dataset.")
    source_name = models.CharField(max_length=200, help_text="Case folder name in the dataset (admin only).")
    source_sha256 = models.CharField(max_length=64, help_text="Digest of the imported input files.")
    scanner_vendor = models.CharField(max_length=50)
    scanner_model = models.CharField(max_length=100)
    field_strength_t = models.DecimalField(max_digits=3, decimal_places=1, help_text="Tesla.")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "source_name"], name="case_unique_source"),
            models.CheckConstraint(condition=Q(field_strength_t__gt=0), name="case_field_strength_positive"),
        ]
        ordering = ["dataset", "source_name"]

    def __str__(self) -> str:
        return f"{self.dataset}/{self.source_name}"


class SequenceVolume(models.Model):
    """One of the seven sequences of a case as a NIfTI file, with its grid.

    ``shape`` is (i, j, k) voxels, ``spacing`` mm per axis, ``affine`` the 4×4
    voxel-to-world matrix (mm, RAS+).
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="volumes")
    sequence = models.CharField(max_length=4, choices=SEQUENCE_CHOICES)
    file = models.FileField(upload_to="cases", max_length=200)
    shape = models.JSONField()
    spacing = models.JSONField()
    affine = models.JSONField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "sequence"], name="volume_one_per_sequence"),
            models.CheckConstraint(condition=Q(sequence__in=SEQUENCES), name="volume_known_sequence"),
        ]

    def __str__(self) -> str:
        return f"{self.case} {self.sequence}"


class Lesion(models.Model):
    """A focal liver lesion with its reference label (index into CLASSES).

    ``public_id`` is random: it never encodes the label, the case or the order.
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="lesions")
    public_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    source_name = models.CharField(max_length=100, help_text="Lesion id in the dataset (admin only).")
    label = models.PositiveSmallIntegerField(choices=CLASS_CHOICES)
    diameter_mm = models.FloatField(help_text="Largest diameter in mm.")
    split = models.CharField(max_length=11, choices=SPLIT_CHOICES)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "source_name"], name="lesion_unique_source"),
            models.CheckConstraint(condition=Q(label__lt=len(CLASSES)), name="lesion_known_label"),
            models.CheckConstraint(condition=Q(diameter_mm__gt=0), name="lesion_diameter_positive"),
            models.CheckConstraint(condition=Q(split__in=SPLITS), name="lesion_known_split"),
        ]

    def __str__(self) -> str:
        return f"{self.case}/{self.source_name}"


class LesionMask(models.Model):
    """The lesion's outline on one sequence's own grid (the sequences are not
    co-registered). ``centroid_mm`` is the mask's centre in world mm (RAS+)."""

    lesion = models.ForeignKey(Lesion, on_delete=models.CASCADE, related_name="masks")
    sequence = models.CharField(max_length=4, choices=SEQUENCE_CHOICES)
    file = models.FileField(upload_to="cases", max_length=200)
    sha256 = models.CharField(max_length=64)
    voxel_count = models.PositiveIntegerField()
    centroid_mm = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lesion", "sequence"], name="mask_one_per_sequence"),
            models.CheckConstraint(condition=Q(sequence__in=SEQUENCES), name="mask_known_sequence"),
            models.CheckConstraint(condition=Q(voxel_count__gt=0), name="mask_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.lesion} {self.sequence} mask"
