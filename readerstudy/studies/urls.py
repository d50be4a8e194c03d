from django.urls import path, register_converter

from readerstudy.studies import api, views


class KindConverter:
    """The suffix of a served file: ``T2WI.nii.gz`` (image), ``T2WI.mask.nii.gz``, ``T2WI.heat.nii.gz``."""

    regex = r"(?:\.mask|\.heat)?"

    def to_python(self, value):
        return value[1:] if value else "image"

    def to_url(self, value):
        return "" if value == "image" else f".{value}"


class SequenceConverter:
    regex = r"[A-Z0-9]+"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(KindConverter, "kind")
register_converter(SequenceConverter, "sequence")

app_name = "studies"
urlpatterns = [
    path("studies/<str:study_id>/read/", views.reading, name="reading"),
    path(
        "studies/<str:study_id>/lesions/<str:lesion_id>/<sequence:sequence><kind:kind>.nii.gz",
        views.volume,
        name="volume",
    ),
    path("api/studies/", api.MyStudies.as_view(), name="api-studies"),
    path("api/studies/<str:study_id>/progress/", api.MyProgress.as_view(), name="api-progress"),
    path("api/studies/<str:study_id>/next/", api.NextLesion.as_view(), name="api-next"),
    path("api/studies/<str:study_id>/reads/", api.Reads.as_view(), name="api-reads"),
    path("api/studies/<str:study_id>/lesions/<str:lesion_id>/", api.LesionViewer.as_view(), name="api-lesion"),
    path(
        "api/studies/<str:study_id>/lesions/<str:lesion_id>/feedback/",
        api.LesionFeedback.as_view(),
        name="api-feedback",
    ),
]
