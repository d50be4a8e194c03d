"""Admin pages for readers, studies, assignments, reads and disclosures. A study admin sees the studies they
administer (``blinding.administered_studies``) and the rows of those studies only; a superuser sees all."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.response import TemplateResponse

from readerstudy.studies.blinding import administered_studies
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
    study = forms.ModelChoiceField(ReaderStudy.objects.none(), help_text="One of the studies you administer.")
    group = forms.ChoiceField(choices=[("", "Each reader's own group"), *READER_GROUP_CHOICES], required=False,
                              help_text="The group these readers belong to in this study.")  # fmt: skip

    def __init__(self, data, studies):
        super().__init__(data)
        self.fields["study"].queryset = studies


class StudyScopedAdmin(admin.ModelAdmin):
    """Rows of the studies the user administers only: another study's rows are not listed, and their pages
    answer as for no such object."""

    study_lookup = "study"  # from a row to its ReaderStudy

    def get_queryset(self, request):
        studies = administered_studies(request.user)
        return super().get_queryset(request).filter(**{f"{self.study_lookup}__in": studies})


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ("user", "group", "years_of_experience")
    list_filter = ("group",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
    actions = ["assign_to_study"]

    @admin.action(description="Assign the selected readers to a study…", permissions=["change"])
    def assign_to_study(self, request, queryset):
        """Intermediate page: pick the study and the group; each reader gets their own random order."""
        form = AssignForm(request.POST if "apply" in request.POST else None, administered_studies(request.user))
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
class AssignmentAdmin(StudyScopedAdmin):
    """Assignments are made from the readers list (orders are drawn there); here the group can be corrected."""

    list_display = ("reader", "study", "group", "aided_session", "assigned_at", "progress")
    list_filter = (("study", admin.RelatedOnlyFieldListFilter), "group")
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
class ReaderStudyAdmin(StudyScopedAdmin):
    list_display = ("name", "design", "feedback", "is_open", "model_version", "created")
    list_filter = ("design", "feedback", "is_open", "practice")
    filter_horizontal = ("lesions", "admins")
    inlines = [AssignmentInline]
    readonly_fields = ("public_id",)
    study_lookup = "pk"

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
class ReadAdmin(StudyScopedAdmin, ReadOnlyAdmin):
    list_display = ("assignment", "lesion", "phase", "session", "diagnosis", "confidence", "malignancy",
                    "submitted_at", "supersedes")  # fmt: skip
    list_filter = (("assignment__study", admin.RelatedOnlyFieldListFilter), "phase", "assignment__group")
    list_select_related = ("assignment__reader__user", "assignment__study", "lesion__case", "supersedes")
    study_lookup = "assignment__study"


@admin.register(Disclosure)
class DisclosureAdmin(StudyScopedAdmin, ReadOnlyAdmin):
    list_display = ("assignment", "lesion", "purpose", "revealed", "prediction", "shown_at")
    list_filter = (("assignment__study", admin.RelatedOnlyFieldListFilter), "purpose")
    study_lookup = "assignment__study"
