"""Readers and their groups (reader studies, assignments and reads join them later)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from inference.domain import READER_GROUP_TITLES, READER_GROUPS

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
