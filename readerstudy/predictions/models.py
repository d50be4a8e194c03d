"""Trained models, their predictions for lesions and the saliency maps behind them.

A ModelVersion is a registered run folder copied into the media store, with the SHA-256 of every file. A
Prediction is one (model version, lesion) pair: created queued, claimed by a worker, then done or failed.
Once done it never changes: it carries the checkpoint hashes it was computed with, so a read can point at
exactly what a reader was shown.
"""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from inference.domain import CLASSES, SEQUENCES
from readerstudy.cases.models import CLASS_CHOICES, SEQUENCE_CHOICES, Lesion, new_public_id


class JobStatus(models.TextChoices):
    """Life of a prediction or a training run: queued → running → done or failed."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ModelVersion(models.Model):
    """A verified, registered training run; at most one is active (used for new predictions)."""

    name = models.CharField(max_length=100, unique=True)
    config = models.JSONField(help_text="The run's config.json.")
    run_path = models.CharField(max_length=300, help_text="Run folder, relative to MEDIA_ROOT.")
    files_sha256 = models.JSONField(help_text="{file name: SHA-256} of every file of the run (its manifest).")
    metrics = models.JSONField(help_text="The run's metrics.json (per-fold and cross-validated).")
    created = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active")]
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name}{' (active)' if self.is_active else ''}"

    @property
    def folder(self) -> Path:
        """The run folder in the media store."""
        return Path(settings.MEDIA_ROOT) / self.run_path

    @property
    def checkpoints_sha256(self) -> dict[str, str]:
        """{fold-K.pt: SHA-256} of the fold checkpoints."""
        return {name: digest for name, digest in sorted(self.files_sha256.items()) if name.endswith(".pt")}


class TrainingRun(models.Model):
    """Training of a config on a dataset folder, as a worker task; registers a ModelVersion on success."""

    Status = JobStatus

    config_name = models.CharField(max_length=300, help_text="Config name (cpu, paper) or path to a config JSON.")
    data_dir = models.CharField(max_length=500, help_text="Dataset folder in the import layout.")
    run_dir = models.CharField(max_length=500, help_text="Where the run folder is written while training.")
    activate = models.BooleanField(default=False, help_text="Activate the model version once registered.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    epochs_done = models.PositiveIntegerField(default=0)
    epochs_total = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, help_text="Last progress line, or the error.")
    heartbeat = models.DateTimeField(null=True, blank=True, help_text="Last progress report of the worker.")
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    model_version = models.OneToOneField(ModelVersion, on_delete=models.PROTECT, null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"training {self.config_name} ({self.status}, {self.epochs_done}/{self.epochs_total} epochs)"


class Prediction(models.Model):
    """The ensemble's output for one lesion under one model version (unique per pair)."""

    Status = JobStatus

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="predictions")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True, help_text="Why it failed, or why it is still waiting.")
    storage_key = models.CharField(
        max_length=16,
        default=new_public_id,
        editable=False,
        help_text="Folder of its saliency files under saliency/ (random).",
    )
    probabilities = models.JSONField(null=True, blank=True, help_text="Seven-way probabilities, CLASSES order.")
    malignant_probability = models.FloatField(null=True, blank=True, help_text="Binary head, P(malignant).")
    predicted_class = models.PositiveSmallIntegerField(choices=CLASS_CHOICES, null=True, blank=True)
    predicted_malignant = models.BooleanField(null=True, blank=True)
    checkpoints_sha256 = models.JSONField(null=True, blank=True, help_text="Fold checkpoints it was computed with.")
    panel = models.FileField(upload_to="saliency", max_length=200, blank=True, help_text="PNG of the seven maps.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker claimed it.")
    queued_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last time its message reached the broker.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    preprocess_seconds = models.FloatField(null=True, blank=True)
    model_seconds = models.FloatField(null=True, blank=True, help_text="Ensemble forward + saliency.")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid (device) of the last claim.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "lesion"], name="one_prediction_per_model_lesion"),
            models.CheckConstraint(
                condition=~Q(status="done")
                | Q(probabilities__isnull=False, malignant_probability__isnull=False, predicted_class__isnull=False),
                name="done_prediction_has_output",
            ),
            models.CheckConstraint(condition=Q(predicted_class__lt=len(CLASSES)), name="prediction_known_class"),
        ]
        ordering = ["lesion_id", "model_version_id"]

    def __str__(self) -> str:
        return f"{self.model_version.name} · lesion {self.lesion.public_id} ({self.status})"

    def save(self, *args, **kwargs):
        """A done prediction is immutable: saving one that is already done in the database is refused."""
        if self.pk and Prediction.objects.filter(pk=self.pk, status=self.Status.DONE).exists():
            raise ValidationError(f"prediction {self.pk} is done and cannot change")
        super().save(*args, **kwargs)


class Saliency(models.Model):
    """One sequence's heat map of a prediction, on that sequence's original voxel grid."""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="saliencies")
    sequence = models.CharField(max_length=4, choices=SEQUENCE_CHOICES)
    heatmap = models.FileField(upload_to="saliency", max_length=200, help_text="NIfTI, float32 in [0, 1].")
    weight = models.FloatField(help_text="Importance of the sequence for the predicted class; the seven sum to 1.")
    max_area_slice = models.PositiveIntegerField(help_text="k index of the largest lesion cross-section.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prediction", "sequence"], name="saliency_one_per_sequence"),
            models.CheckConstraint(condition=Q(sequence__in=SEQUENCES), name="saliency_known_sequence"),
            models.CheckConstraint(condition=Q(weight__gte=0, weight__lte=1), name="saliency_weight_in_unit"),
        ]
        ordering = ["prediction_id", "id"]

    def __str__(self) -> str:
        return f"{self.prediction} {self.sequence} saliency"
