"""Readers, reader studies, assignments with their fixed random orders, and reads.

What a reader may see and when lives in ``blinding``; what they read next in ``workflow``.
"""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from inference.domain import CLASS_TITLES, CLASSES, READER_GROUP_TITLES, READER_GROUPS
from readerstudy.cases.models import Lesion, new_public_id
from readerstudy.predictions.models import ModelVersion, Prediction

READER_GROUP_CHOICES = [(g, READER_GROUP_TITLES[g]) for g in READER_GROUPS]
DIAGNOSIS_CHOICES = [(i, CLASS_TITLES[c]) for i, c in enumerate(CLASSES)]

STUDY_ADMINS_GROUP = "Study admins"
"""The auth group whose members import cases, set up studies and export results."""


class Reader(models.Model):
    """A radiologist who reads lesions, in one experience group."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reader")
    group = models.CharField(max_length=10, choices=READER_GROUP_CHOICES)
    years_of_experience = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(group__in=READER_GROUPS), name="reader_known_group")]
        ordering = ["group", "user__username"]

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.get_group_display()})"


class Design(models.TextChoices):
    UNAIDED = "unaided", "Unaided"
    SEQUENTIAL = "sequential", "Sequential AI-assisted (unaided read, then aided read)"
    CROSSOVER = "crossover", "Crossover with washout (one unaided and one aided session)"


class Feedback(models.TextChoices):
    NONE = "none", "None"
    MODEL = "model", "Model output and saliency"
    REFERENCE = "reference", "Model output, saliency and the reference diagnosis (practice studies only)"


class ReaderStudy(models.Model):
    """A reader study. It pins the model version whose predictions it shows: the active version when the
    study is created, unless another is chosen. Activating a new version later never changes what it shows."""

    public_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=200, unique=True)
    instructions = models.TextField(blank=True, help_text="Shown to readers before they start.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="owned_studies"
    )
    admins = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="administered_studies",
        help_text="Study admins granted this study besides its owner.",
    )
    created = models.DateTimeField(auto_now_add=True)
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="studies",
        help_text="Pinned; empty = no model output.",
    )
    lesions = models.ManyToManyField(Lesion, related_name="studies", blank=True)
    design = models.CharField(max_length=10, choices=Design.choices, default=Design.UNAIDED)
    washout_days = models.PositiveSmallIntegerField(default=0, help_text="Crossover: days between the sessions.")
    feedback = models.CharField(
        max_length=9,
        choices=Feedback.choices,
        default=Feedback.NONE,
        help_text="What a reader sees once a read is locked.",
    )
    practice = models.BooleanField(default=False, help_text="A training study: may show the reference diagnosis.")
    allow_revisit = models.BooleanField(default=False, help_text="Readers may view lesions they have read.")
    allow_amend = models.BooleanField(default=False, help_text="Readers may amend a read (a new, linked read).")
    field_of_view_mm = models.FloatField(
        null=True, blank=True, help_text="Lesion-centred cube served to readers (mm); empty = whole volumes."
    )
    is_open = models.BooleanField(default=True, help_text="Readers can read only in an open study.")

    class Meta:
        verbose_name_plural = "reader studies"
        constraints = [
            models.CheckConstraint(
                condition=~Q(feedback="reference") | Q(practice=True), name="reference_feedback_only_in_practice"
            ),
            models.CheckConstraint(
                condition=~Q(design="crossover") | Q(washout_days__gte=1), name="crossover_has_washout"
            ),
            models.CheckConstraint(
                condition=~Q(allow_amend=True) | Q(allow_revisit=True), name="amending_needs_revisiting"
            ),
            models.CheckConstraint(
                condition=Q(field_of_view_mm__isnull=True) | Q(field_of_view_mm__gte=16),
                name="field_of_view_at_least_16mm",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if self._state.adding and self.model_version_id is None:
            self.model_version = ModelVersion.objects.filter(is_active=True).first()
        super().save(*args, **kwargs)

    def clean(self):
        shows_model = self.design != Design.UNAIDED or self.feedback != Feedback.NONE
        if shows_model and self.model_version_id is None and not self._state.adding:
            raise ValidationError({"model_version": "this design shows model output: pin a model version"})

    def prediction_for(self, lesion) -> Prediction | None:
        """The pinned version's prediction for ``lesion`` (any status), or None."""
        if self.model_version_id is None:
            return None
        return Prediction.objects.filter(model_version_id=self.model_version_id, lesion=lesion).first()


class Assignment(models.Model):
    """A reader in a study, in a reader group, with per-session lesion orders drawn at random when assigned.

    ``orders`` holds lesion primary keys (never sent to a browser): one list, or two in a crossover study,
    each an independent random permutation. ``aided_session`` is 1 or 2 in a crossover study (the session
    read with AI), else 0.
    """

    study = models.ForeignKey(ReaderStudy, on_delete=models.CASCADE, related_name="assignments")
    reader = models.ForeignKey(Reader, on_delete=models.PROTECT, related_name="assignments")
    group = models.CharField(max_length=10, choices=READER_GROUP_CHOICES, help_text="The reader's group here.")
    orders = models.JSONField(editable=False)
    aided_session = models.PositiveSmallIntegerField(default=0, editable=False)
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "reader"], name="one_assignment_per_reader"),
            models.CheckConstraint(condition=Q(group__in=READER_GROUPS), name="assignment_known_group"),
        ]
        ordering = ["study_id", "group", "reader__user__username"]

    def __str__(self) -> str:
        return f"{self.reader} in {self.study}"

    @classmethod
    def assign(cls, study: ReaderStudy, reader: Reader, group: str | None = None) -> "Assignment":
        """Assign ``reader`` (idempotent: an existing assignment and its order are kept). Orders come from
        the operating system's random source; crossover readers alternate which session is aided."""
        existing = cls.objects.filter(study=study, reader=reader).first()
        if existing:
            return existing
        lesions = list(study.lesions.values_list("pk", flat=True))
        if not lesions:
            raise ValidationError(f"study {study.name!r} has no lesions to assign")
        rng = secrets.SystemRandom()
        sessions = 2 if study.design == Design.CROSSOVER else 1
        orders = [rng.sample(lesions, len(lesions)) for _ in range(sessions)]
        aided = 1 + cls.objects.filter(study=study).count() % 2 if sessions == 2 else 0
        return cls.objects.create(
            study=study, reader=reader, group=group or reader.group, orders=orders, aided_session=aided
        )


class Phase(models.TextChoices):
    UNAIDED = "unaided", "Unaided"
    AIDED = "aided", "Aided"


class Presentation(models.Model):
    """When a lesion was first shown to a reader for a phase: the start of the read's time."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="presentations")
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="+")
    phase = models.CharField(max_length=7, choices=Phase.choices)
    shown_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["assignment", "lesion", "phase"], name="one_presentation_per_phase")
        ]

    def __str__(self) -> str:
        return f"{self.assignment.reader} · {self.lesion.public_id} · {self.phase} shown {self.shown_at:%Y-%m-%d %H:%M}"


class Disclosure(models.Model):
    """One time model output (and maybe the reference) was shown to a reader: what, of which prediction, when.

    ``purpose`` is "assist" (before an aided read) or "feedback" (after a locked read)."""

    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="disclosures")
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="+")
    prediction = models.ForeignKey(
        Prediction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when the model output was not ready or the study has none.",
    )
    purpose = models.CharField(max_length=8, choices=[("assist", "Before an aided read"), ("feedback", "Feedback")])
    revealed = models.JSONField(help_text="What was shown: any of model, saliency, reference.")
    shown_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["shown_at"]

    def __str__(self) -> str:
        return f"{self.purpose} to {self.assignment.reader} · {self.lesion.public_id} · {self.shown_at:%Y-%m-%d %H:%M}"


class Read(models.Model):
    """A reader's diagnosis of one lesion in one phase. Immutable once saved; an amendment is a new Read
    that ``supersedes`` the one it replaces. The first read of a (study, reader, lesion, phase) is unique."""

    public_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="reads")
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="reads")
    phase = models.CharField(max_length=7, choices=Phase.choices)
    session = models.PositiveSmallIntegerField(default=1)
    diagnosis = models.PositiveSmallIntegerField(choices=DIAGNOSIS_CHOICES)
    confidence = models.PositiveSmallIntegerField(help_text="1 (guess) to 5 (certain).")
    malignancy = models.PositiveSmallIntegerField(help_text="Likelihood of malignancy, 0-100.")
    shown_at = models.DateTimeField(help_text="First time the lesion was shown for this phase.")
    submitted_at = models.DateTimeField(auto_now_add=True)
    prediction_shown = models.ForeignKey(
        Prediction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The model output shown before this read.",
    )
    disclosure = models.ForeignKey(Disclosure, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    supersedes = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="amended_by"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "lesion", "phase"],
                condition=Q(supersedes__isnull=True),
                name="one_first_read_per_phase",
            ),
            models.CheckConstraint(condition=Q(diagnosis__lt=len(CLASSES)), name="read_known_diagnosis"),
            models.CheckConstraint(condition=Q(confidence__gte=1, confidence__lte=5), name="read_confidence_1_5"),
            models.CheckConstraint(condition=Q(malignancy__lte=100), name="read_malignancy_0_100"),
            models.CheckConstraint(condition=Q(submitted_at__gte=F("shown_at")), name="read_submitted_after_shown"),
        ]
        ordering = ["submitted_at", "id"]

    def __str__(self) -> str:
        return f"{self.assignment.reader} · {self.lesion.public_id} · {self.phase}"

    def save(self, *args, **kwargs):
        """A read is immutable: saving one that exists is refused."""
        if self.pk is not None:
            raise ValidationError(f"read {self.public_id} is locked and cannot change; amend it instead")
        super().save(*args, **kwargs)
