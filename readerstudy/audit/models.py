"""The audit trail: one append-only row per state change (who, when, what, before/after where it applies)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk ``update`` and ``delete`` refused too, so no code path of the app rewrites the trail."""

    def update(self, **kwargs):
        raise ValidationError("audit events are append-only")

    def delete(self):
        raise ValidationError("audit events are append-only")


class AuditEvent(models.Model):
    """An event; never changed or deleted through the app (``save`` refuses an update, ``delete`` refuses)."""

    class Action(models.TextChoices):
        CASE_IMPORTED = "case imported"
        CASE_REJECTED = "case rejected"
        STUDY_CREATED = "study created"
        STUDY_CHANGED = "study changed"
        READER_ASSIGNED = "reader assigned"
        READ_SUBMITTED = "read submitted"
        MODEL_ACTIVATED = "model activated"
        EXPORTED = "exported"
        OVERLAP_OVERRIDDEN = "overlap overridden"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: a command or a worker, not a person.",
    )
    action = models.CharField(max_length=20, choices=Action.choices, db_index=True)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=50, help_text="The object's opaque id (or primary key).")
    summary = models.CharField(max_length=300)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor or 'system'}: {self.summary}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("audit events are append-only")
