from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.response import TemplateResponse

from readerstudy.studies.models import (
    READER_GROUP_CHOICES,
    Assignment,
    Disclosure,
    Read,
    Reader,
    ReaderStudy,
)
from readerstudy.studies.workflow import progress


class AssignForm(forms.Form):
    study = forms.ModelChoiceField(ReaderStudy.objects.all())
    group = forms.ChoiceField(choices=[("", "Each reader's own group"), *READER_GROUP_CHOICES], required=False,
                              help_text="The group these readers belong to in this study.")  # fmt: skip


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ("user", "group", "years_of_experience")
    list_filter = ("group",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
    actions = ["assign_to_study"]

    @admin.action(description="Assign the selected readers to a study…", permissions=["change"])
    def assign_to_study(self, request, queryset):
        """Intermediate page: pick the study and the group; each reader gets their own random order."""
        form = AssignForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            study, group = form.cleaned_data["study"], form.cleaned_data["group"] or None
            try:
                with transaction.atomic():
                    for reader in queryset:
                        Assignment.assign(study, reader, group)
            except ValidationError as error:
                self.message_user(request, "; ".join(error.messages), messages.ERROR)
                return None
            self.message_user(request, f"{queryset.count()} reader(s) assigned to {study}.", messages.SUCCESS)
            return None
        context = {**self.admin_site.each_context(request), "title": "Assign readers to a study", "form": form,
                   "readers": queryset, "opts": self.model._meta, "action": "assign_to_study"}  # fmt: skip
        return TemplateResponse(request, "admin/studies/assign_readers.html", context)


def progress_text(assignment: Assignment) -> str:
    p = progress(assignment)
    return f"session {p.session}/{p.sessions}: {p.done} of {p.total}" + (" (washout)" if p.opens_at else "")


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    """Assignments are made from the readers list (orders are drawn there); here the group can be corrected."""

    list_display = ("reader", "study", "group", "aided_session", "assigned_at", "progress")
    list_filter = ("study", "group")
    readonly_fields = ("study", "reader", "aided_session", "assigned_at", "progress")
    fields = ("study", "reader", "group", "aided_session", "assigned_at", "progress")

    def has_add_permission(self, request):
        return False

    @admin.display(description="Progress")
    def progress(self, assignment):
        return progress_text(assignment)


class AssignmentInline(admin.TabularInline):
    model = Assignment
    fields = ("reader", "group", "aided_session", "assigned_at", "progress")
    readonly_fields = ("reader", "aided_session", "assigned_at", "progress")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # assign from the readers list: orders are drawn there

    @admin.display(description="Progress")
    def progress(self, assignment):
        return progress_text(assignment)


@admin.register(ReaderStudy)
class ReaderStudyAdmin(admin.ModelAdmin):
    list_display = ("name", "design", "feedback", "is_open", "model_version", "created")
    list_filter = ("design", "feedback", "is_open", "practice")
    filter_horizontal = ("lesions", "admins")
    inlines = [AssignmentInline]
    readonly_fields = ("public_id",)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        frozen = ("model_version",)  # the pin never changes once the study exists
        if obj.assignments.exists():  # orders are drawn: the lesions and the design are fixed
            frozen += ("lesions", "design")
        return self.readonly_fields + frozen

    def save_model(self, request, obj, form, change):
        if obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records nobody edits: reads and disclosures are an audit trail."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Read)
class ReadAdmin(ReadOnlyAdmin):
    list_display = ("assignment", "lesion", "phase", "session", "diagnosis", "confidence", "malignancy",
                    "submitted_at", "supersedes")  # fmt: skip
    list_filter = ("assignment__study", "phase", "assignment__group")
    list_select_related = ("assignment__reader__user", "assignment__study", "lesion__case", "supersedes")


@admin.register(Disclosure)
class DisclosureAdmin(ReadOnlyAdmin):
    list_display = ("assignment", "lesion", "purpose", "revealed", "prediction", "shown_at")
    list_filter = ("assignment__study", "purpose")
