import csv

from django.contrib import admin
from django.http import HttpResponse

from readerstudy.audit.models import AuditEvent
from readerstudy.studies.admin import ReadOnlyAdmin

CSV_COLUMNS = ("at", "actor", "action", "object_type", "object_id", "summary", "before", "after")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: audit events are never added, changed or deleted here; they can be filtered and exported."""

    list_display = ("at", "actor", "action", "object_type", "object_id", "summary")
    list_filter = ("action", "object_type", "at", "actor")
    search_fields = ("summary", "object_id", "actor__username")
    actions = ["export_csv"]

    @admin.action(description="Export the selected events as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for event in queryset.select_related("actor").order_by("at", "id"):
            writer.writerow([event.at.isoformat(), event.actor or "", event.action, event.object_type,
                             event.object_id, event.summary, event.before or "", event.after or ""])  # fmt: skip
        return response
