from django.contrib import admin

from readerstudy.studies.models import Reader, ReaderStudy


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ("user", "group", "years_of_experience")
    list_filter = ("group",)
    search_fields = ("user__username", "user__first_name", "user__last_name")


@admin.register(ReaderStudy)
class ReaderStudyAdmin(admin.ModelAdmin):
    list_display = ("name", "model_version", "created")

    def get_readonly_fields(self, request, obj=None):
        return ("model_version",) if obj is not None else ()  # the pin never changes once the study exists
