"""Admin pages for model versions, training runs and predictions: filterable by status; predictions and
their saliency maps are read-only (the worker writes them)."""

from django.contrib import admin, messages

from readerstudy.cases.admin import BlindedAdminMixin, ReadOnlyInline
from readerstudy.predictions.models import ModelVersion, Prediction, Saliency, TrainingRun
from readerstudy.predictions.registry import activate


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "created", "run_path")
    list_filter = ("is_active",)
    readonly_fields = ("name", "config", "run_path", "files_sha256", "metrics", "created", "is_active")
    actions = ["activate_version"]

    def has_add_permission(self, request):
        return False  # manage.py register_model verifies the run first

    @admin.action(description="Activate (and predict every lesion with it)")
    def activate_version(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version.", messages.ERROR)
            return
        queued = activate(queryset.get())
        self.message_user(request, f"Activated; {queued} prediction(s) queued.")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("created", "config_name", "status", "progress", "message", "model_version")
    list_filter = ("status",)
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request):
        return False  # manage.py train_model

    @admin.display(description="epochs")
    def progress(self, run: TrainingRun) -> str:
        return f"{run.epochs_done}/{run.epochs_total}"


class SaliencyInline(ReadOnlyInline):
    model = Saliency
    fields = ("sequence", "weight", "max_area_slice", "heatmap")


@admin.register(Prediction)
class PredictionAdmin(BlindedAdminMixin, admin.ModelAdmin):
    list_display = (
        "lesion",
        "model_version",
        "status",
        "predicted_class",
        "malignant_probability",
        "attempts",
        "finished_at",
    )
    list_filter = ("status", "model_version")
    search_fields = ("lesion__public_id",)
    readonly_fields = [f.name for f in Prediction._meta.fields]
    inlines = [SaliencyInline]

    def has_add_permission(self, request):
        return False
