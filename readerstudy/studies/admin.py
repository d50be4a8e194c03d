"""Admin pages for readers, studies, assignments, reads and disclosures. A study admin sees the studies they
administer (``blinding.administered_studies``) and the rows of those studies only; a superuser sees all.
Assigning readers and changing a study go through the blinding-overlap guard (``overlap``)."""

import copy

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from readerstudy.studies import overlap
from readerstudy.studies.blinding import administered_studies
from readerstudy.studies.models import (
    READER_GROUP_CHOICES,
    Assignment,
    Disclosure,
    Feedback,
    Read,
    Reader,
    ReaderStudy,
)
from readerstudy.studies.workflow import progress


def override_field() -> forms.CharField:
    return forms.CharField(
        label="Override blinding overlap — reason",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only to proceed although readers would meet lesions whose model output or reference they "
        "were shown elsewhere, or that an open study reveals: why. Recorded in the audit trail.",
    )


class AssignForm(forms.Form):
    study = forms.ModelChoiceField(ReaderStudy.objects.none(), help_text="One of the studies you administer.")
    group = forms.ChoiceField(
        choices=[("", "Each reader's own group"), *READER_GROUP_CHOICES],
        required=False,
        help_text="The group these readers belong to in this study.",
    )
    override_reason = override_field()

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
        """Intermediate page: pick the study and the group; each reader gets their own random order. Refused,
        listing the conflicts on the page, when it leaves a blinding overlap and no override reason is given."""
        form = AssignForm(request.POST if "apply" in request.POST else None, administered_studies(request.user))
        if form.is_valid():
            study, group = form.cleaned_data["study"], form.cleaned_data["group"] or None
            try:
                assigned = overlap.assign_readers(study, queryset, group, form.cleaned_data["override_reason"])
            except overlap.OverlapRefused as refused:
                form.add_error(None, refused)
            except ValidationError as error:
                self.message_user(request, "; ".join(error.messages), messages.ERROR)
                return None
            else:
                self.message_user(request, f"{len(assigned)} reader(s) assigned to {study}.", messages.SUCCESS)
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Assign readers to a study",
            "form": form,
            "readers": queryset,
            "opts": self.model._meta,
            "action": "assign_to_study",
        }
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


class ReaderStudyForm(forms.ModelForm):
    """The study's fields and an override reason; a change that adds lesions, opens the study, turns on
    feedback or changes the design is refused while it leaves a blinding overlap and no reason is given."""

    override_reason = override_field()

    def guarded_change(self) -> str:
        """What of the guarded changes this form makes to a saved study ("" when none)."""
        old, new = self.instance, self.cleaned_data
        if old.pk is None:
            return ""
        lesions = new.get("lesions")
        added = lesions is not None and bool(
            {lesion.pk for lesion in lesions} - set(old.lesions.values_list("pk", flat=True))
        )
        changes = {
            "lesions added": added,
            "opened": new.get("is_open", old.is_open) and not old.is_open,
            "feedback turned on": new.get("feedback", old.feedback) not in (old.feedback, Feedback.NONE),
            "design changed": new.get("design", old.design) != old.design,
        }
        return ", ".join(name for name, made in changes.items() if made)

    def clean(self):
        cleaned = super().clean()
        self.conflicts, self.change = [], self.guarded_change()
        if self.change and not self.errors:
            prospective = copy.copy(self.instance)
            for field in ("design", "feedback", "is_open"):
                setattr(prospective, field, cleaned.get(field, getattr(prospective, field)))
            # OverlapRefused is a ValidationError: the form lists the conflicts
            reason = cleaned.get("override_reason", "")
            self.conflicts = overlap.check(prospective, reason, lesions=cleaned.get("lesions"))
        return cleaned


@admin.register(ReaderStudy)
class ReaderStudyAdmin(StudyScopedAdmin):
    form = ReaderStudyForm
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
        return (*self.readonly_fields, *frozen, "blinding_overlaps")

    @admin.display(description="Blinding overlaps now")
    def blinding_overlaps(self, study):
        """The study's conflicts as saved (``overlap.conflicts``): reader — lesion — reason, or none."""
        found = overlap.conflicts(study)
        if not found:
            return "none"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((str(c),) for c in found)))

    def save_model(self, request, obj, form, change):
        if obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
        if form.conflicts:
            overlap.record_override(obj, form.change, form.cleaned_data["override_reason"], form.conflicts)


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
    list_display = (
        "assignment",
        "lesion",
        "phase",
        "session",
        "diagnosis",
        "confidence",
        "malignancy",
        "submitted_at",
        "supersedes",
    )
    list_filter = (("assignment__study", admin.RelatedOnlyFieldListFilter), "phase", "assignment__group")
    list_select_related = ("assignment__reader__user", "assignment__study", "lesion__case", "supersedes")
    study_lookup = "assignment__study"


@admin.register(Disclosure)
class DisclosureAdmin(StudyScopedAdmin, ReadOnlyAdmin):
    list_display = ("assignment", "lesion", "purpose", "revealed", "prediction", "shown_at")
    list_filter = (("assignment__study", admin.RelatedOnlyFieldListFilter), "purpose")
    study_lookup = "assignment__study"
