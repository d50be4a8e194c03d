from django.contrib import admin

from readerstudy.studies.models import Reader


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ("user", "group", "years_of_experience")
    list_filter = ("group",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
