"""Readers and their groups, and reader studies (assignments and reads join them later)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from inference.domain import READER_GROUP_TITLES, READER_GROUPS
from readerstudy.predictions.models import ModelVersion, Prediction

READER_GROUP_CHOICES = [(g, READER_GROUP_TITLES[g]) for g in READER_GROUPS]

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


class ReaderStudy(models.Model):
    """A reader study. It pins the model version whose predictions it shows: the active version when the
    study is created, unless another is chosen. Activating a new version later never changes what it shows."""

    name = models.CharField(max_length=200, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="studies", help_text="Pinned; empty = no model output.")  # fmt: skip

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if self._state.adding and self.model_version_id is None:
            self.model_version = ModelVersion.objects.filter(is_active=True).first()
        super().save(*args, **kwargs)

    def prediction_for(self, lesion) -> Prediction | None:
        """The finished prediction of the pinned version for ``lesion``, or None."""
        if self.model_version_id is None:
            return None
        return Prediction.objects.filter(model_version_id=self.model_version_id, lesion=lesion,
                                         status=Prediction.Status.DONE).first()  # fmt: skip
