"""The reading API's request and response shapes, refusals included. Only opaque public ids ever appear."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from inference.domain import CLASSES
from readerstudy.studies.identifiers import study_lesion_id
from readerstudy.studies.models import Phase, Read


class ProgressSerializer(serializers.Serializer):
    session = serializers.IntegerField(help_text="Current session (1, or 2 in a crossover study).")
    sessions = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Lesions finished in this session.")
    total = serializers.IntegerField(help_text="Lesions in this session.")
    finished = serializers.BooleanField()
    opens_at = serializers.DateTimeField(allow_null=True, help_text="When the next session opens (washout).")


class StudySerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    instructions = serializers.CharField()
    design = serializers.CharField()
    feedback = serializers.CharField()
    allow_revisit = serializers.BooleanField()
    allow_amend = serializers.BooleanField()


class MyStudySerializer(serializers.Serializer):
    study = StudySerializer()
    progress = ProgressSerializer()


class ReadInputSerializer(serializers.Serializer):
    lesion = serializers.CharField(max_length=16, help_text="The lesion's id in this study.")
    phase = serializers.ChoiceField(choices=Phase.choices)
    diagnosis = serializers.ChoiceField(choices=list(CLASSES), help_text="One of the seven classes.")
    confidence = serializers.IntegerField(min_value=1, max_value=5)
    malignancy = serializers.IntegerField(min_value=0, max_value=100, help_text="Likelihood of malignancy (%).")
    amend = serializers.BooleanField(default=False, help_text="Amend my locked read (where the study allows).")


class ReadSerializer(serializers.ModelSerializer):
    """A read as its reader sees it; the lesion by its id in the study (``context["study"]``)."""

    id = serializers.CharField(source="public_id")
    lesion = serializers.SerializerMethodField()
    diagnosis = serializers.SerializerMethodField()
    amends = serializers.SerializerMethodField()

    class Meta:
        model = Read
        fields = [
            "id",
            "lesion",
            "phase",
            "session",
            "diagnosis",
            "confidence",
            "malignancy",
            "shown_at",
            "submitted_at",
            "amends",
        ]

    def get_lesion(self, read) -> str:
        return study_lesion_id(self.context["study"], read.lesion)

    def get_diagnosis(self, read) -> str:
        return CLASSES[read.diagnosis]

    def get_amends(self, read) -> str | None:
        return read.supersedes.public_id if read.supersedes_id else None


class RefusalSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Why the request was refused.")


REFUSALS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid request: messages by field name, or `detail`."),
    403: OpenApiResponse(RefusalSerializer, description="Not logged in, or not allowed now by the study's rules."),
    404: OpenApiResponse(RefusalSerializer, description="No such study (of yours), lesion or format."),
    409: OpenApiResponse(RefusalSerializer, description="Not the lesion and phase read now, or nothing to amend."),
}
"""The documented refusals of the API (DRF's error bodies), by status code."""


def refusals(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented refusals among ``codes``, for an operation's ``responses``."""
    return {code: REFUSALS[code] for code in codes}
