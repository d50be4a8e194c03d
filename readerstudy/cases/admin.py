"""Admin pages for imported data: browsable and filterable; imported files and
their geometry are read-only (a new version of a case is a new import)."""

from django.contrib import admin

from readerstudy.cases.dicom.admin_views import DicomImportAdminMixin
from readerstudy.cases.models import Case, Lesion, LesionMask, Patient, SequenceVolume
from readerstudy.studies.blinding import reads_in_an_open_study

BLINDED = "liverread_blinded"
"""The request attribute holding ``reads_in_an_open_study(request.user)`` once asked."""


def blinded(request) -> bool:
    """``reads_in_an_open_study(request.user)``, queried once per request: the admin asks every permission of every
    model on each page (the sidebar lists them all)."""
    if not hasattr(request, BLINDED):
        setattr(request, BLINDED, reads_in_an_open_study(request.user))
    return getattr(request, BLINDED)


class BlindedAdminMixin:
    """Pages that show reference labels or model output: closed to a user while they read in an open study
    (``blinding.reads_in_an_open_study``), superusers included."""

    def has_module_permission(self, request):
        return not blinded(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return not blinded(request) and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not blinded(request) and super().has_change_permission(request, obj)


class ImportedDataAdmin(admin.ModelAdmin):
    """Cases come in through the importer only."""

    def has_add_permission(self, request):
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never edited, added or deleted there."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class SequenceVolumeInline(ReadOnlyInline):
    model = SequenceVolume
    fields = ("sequence", "shape", "spacing", "sha256")


class LesionInline(admin.TabularInline):
    model = Lesion
    fields = ("public_id", "source_name", "label", "diameter_mm", "split")
    readonly_fields = ("public_id", "source_name")
    extra = 0
    can_delete = False


@admin.register(Patient)
class PatientAdmin(ImportedDataAdmin):
    list_display = ("key", "age", "sex", "cirrhosis", "fatty_liver")
    list_filter = ("sex", "cirrhosis", "fatty_liver")
    search_fields = ("key",)
    readonly_fields = ("key",)


@admin.register(Case)
class CaseAdmin(BlindedAdminMixin, DicomImportAdminMixin, ImportedDataAdmin):
    """Cases; "Import DICOM" in the list's tools (``DicomImportAdminMixin``)."""

    list_display = (
        "source_name",
        "dataset",
        "public_id",
        "patient",
        "scanner_vendor",
        "scanner_model",
        "field_strength_t",
        "imported_at",
    )
    list_filter = (
        "dataset",
        "scanner_vendor",
        "scanner_model",
        "field_strength_t",
        "patient__cirrhosis",
        "patient__fatty_liver",
    )
    search_fields = ("source_name", "public_id", "patient__key")
    readonly_fields = ("public_id", "patient", "dataset", "source_name", "source_sha256", "imported_at")
    inlines = [SequenceVolumeInline, LesionInline]


@admin.register(SequenceVolume)
class SequenceVolumeAdmin(ImportedDataAdmin):
    list_display = ("case", "sequence", "shape", "spacing")
    list_filter = ("sequence", "case__dataset", "case__scanner_vendor")
    search_fields = ("case__source_name", "case__public_id")
    readonly_fields = ("case", "sequence", "file", "shape", "spacing", "affine", "sha256")


class LesionMaskInline(ReadOnlyInline):
    model = LesionMask
    fields = ("sequence", "voxel_count", "centroid_mm", "sha256")


@admin.register(Lesion)
class LesionAdmin(BlindedAdminMixin, ImportedDataAdmin):
    list_display = ("__str__", "public_id", "label", "diameter_mm", "split")
    list_filter = (
        "label",
        "split",
        "case__dataset",
        "case__scanner_vendor",
        "case__patient__cirrhosis",
        "case__patient__fatty_liver",
    )
    search_fields = ("public_id", "source_name", "case__source_name")
    readonly_fields = ("case", "public_id", "source_name")
    inlines = [LesionMaskInline]


@admin.register(LesionMask)
class LesionMaskAdmin(ImportedDataAdmin):
    list_display = ("lesion", "sequence", "voxel_count")
    list_filter = ("sequence", "lesion__case__dataset")
    search_fields = ("lesion__public_id", "lesion__case__source_name")
    readonly_fields = ("lesion", "sequence", "file", "sha256", "voxel_count", "centroid_mm")
