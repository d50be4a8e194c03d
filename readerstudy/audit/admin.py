"""The audit trail in the admin: read-only, filterable, exported as CSV. A superuser sees every event; a study
admin the events about the studies they administer (the study's changes, assignments, exports and reads) and
nothing else: imports and model activations concern every study, and the whole trail names every reader."""

import csv

from django.contrib import admin
from django.db.models import Q
from django.http import HttpResponse

from readerstudy.audit.models import AuditEvent
from readerstudy.studies.admin import ReadOnlyAdmin
from readerstudy.studies.blinding import administered_studies
from readerstudy.studies.models import Read, ReaderStudy

CSV_COLUMNS = ("at", "actor", "action", "object_type", "object_id", "summary", "before", "after")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: audit events are never added, changed or deleted here; they can be filtered and exported."""

    list_display = ("at", "actor", "action", "object_type", "object_id", "summary")
    list_filter = ("action", "object_type", "at", ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("summary", "object_id", "actor__username")
    actions = ["export_csv"]

    def get_queryset(self, request):
        events = super().get_queryset(request)
        if request.user.is_superuser:
            return events
        studies = list(administered_studies(request.user).values_list("public_id", flat=True))
        return events.filter(
            Q(object_type=ReaderStudy.__name__, object_id__in=studies)
            | Q(object_type=Read.__name__, after__study__in=studies)
        )

    @admin.action(description="Export the selected events as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for event in queryset.select_related("actor").order_by("at", "id"):
            writer.writerow(
                [
                    event.at.isoformat(),
                    event.actor or "",
                    event.action,
                    event.object_type,
                    event.object_id,
                    event.summary,
                    event.before or "",
                    event.after or "",
                ]
            )
        return response
