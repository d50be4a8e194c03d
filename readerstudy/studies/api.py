"""The reading API (DRF): my studies, my next lesion, submit a read, feedback after a read, my progress.

Views are thin: who may see what is ``blinding``'s, what comes next ``workflow``'s. Every lookup goes
through the requesting reader's own assignment, so no other reader's read can be reached.
"""

from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SCHEMA_KWARGS
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.domain import class_index
from readerstudy.cases.models import Lesion
from readerstudy.studies.blinding import (
    MODEL,
    STILL_OWED_ELSEWHERE,
    is_assist,
    may_view_lesion,
    open_assignment,
    reveal,
    study_lesion,
)
from readerstudy.studies.disclosure import PENDING, disclose
from readerstudy.studies.identifiers import study_lesion_id
from readerstudy.studies.models import Assignment, Disclosure, Phase, Presentation, Read
from readerstudy.studies.serializers import (
    MyStudySerializer,
    ProgressSerializer,
    ReadInputSerializer,
    ReadSerializer,
    refusals,
)
from readerstudy.studies.viewing import descriptor
from readerstudy.studies.workflow import Progress, first_reads, progress


class Conflict(PermissionDenied):
    status_code = status.HTTP_409_CONFLICT


def progress_data(now: Progress) -> dict:
    return {
        "session": now.session,
        "sessions": now.sessions,
        "done": now.done,
        "total": now.total,
        "finished": now.finished,
        "opens_at": now.opens_at,
    }


NEXT_SCHEMA = inline_serializer(
    "NextLesion",
    {
        "progress": ProgressSerializer(),
        "task": serializers.DictField(allow_null=True, help_text="lesion, phase, session; null when none is open."),
        "assist": serializers.DictField(allow_null=True, help_text="AI output shown before an aided read."),
        "viewer": serializers.DictField(allow_null=True, help_text="What the viewer loads: per-sequence files."),
    },
)
SUBMIT_SCHEMA = inline_serializer(
    "SubmittedRead",
    {
        "read": ReadSerializer(),
        "feedback": serializers.DictField(allow_null=True, help_text="What the study reveals now the read is locked."),
        "progress": ProgressSerializer(),
    },
)


class MyStudies(APIView):
    @extend_schema(
        responses={200: MyStudySerializer(many=True), **refusals(403)}, summary="My open studies with my progress"
    )
    def get(self, request):
        assignments = Assignment.objects.filter(reader__user=request.user, study__is_open=True)
        data = [{"study": a.study, "progress": progress_data(progress(a))} for a in assignments.select_related("study")]
        return Response(MyStudySerializer(data, many=True).data)


class MyProgress(APIView):
    @extend_schema(responses={200: ProgressSerializer, **refusals(403, 404)}, summary="My progress in a study")
    def get(self, request, study_id):
        return Response(ProgressSerializer(progress_data(progress(open_assignment(request.user, study_id)))).data)


class NextLesion(APIView):
    @extend_schema(
        responses={200: NEXT_SCHEMA, **refusals(403, 404)}, summary="My next lesion: where I left off, in my own order"
    )
    def get(self, request, study_id):
        assignment = open_assignment(request.user, study_id)
        now = progress(assignment)
        task = now.next_task
        body = {"progress": progress_data(now), "task": None, "assist": None, "viewer": None}
        if task is None:
            return Response(body)
        lesion = Lesion.objects.get(pk=task.lesion_id)
        Presentation.objects.get_or_create(assignment=assignment, lesion=lesion, phase=task.phase)
        lesion_id = study_lesion_id(assignment.study, lesion)
        body["task"] = {"lesion": lesion_id, "phase": task.phase, "session": task.session}
        if task.phase == Phase.AIDED:
            body["assist"], _ = disclose(assignment, lesion, reveal(assignment, lesion.pk, now), "assist")
        body["viewer"] = descriptor(assignment.study, lesion)
        return Response(body)


class LesionViewer(APIView):
    @extend_schema(
        responses={200: dict, **refusals(403, 404)}, summary="The viewer's files for a lesion I may view (revisiting)"
    )
    def get(self, request, study_id, lesion_id):
        assignment = open_assignment(request.user, study_id)
        now = progress(assignment)
        lesion = study_lesion(assignment, lesion_id, now)
        if not may_view_lesion(assignment, lesion.pk, now):
            raise PermissionDenied("This lesion is not open to you now.")
        return Response(descriptor(assignment.study, lesion))


class LesionFeedback(APIView):
    @extend_schema(
        responses={200: dict, **refusals(403, 404)},
        summary="What the study reveals about a lesion after my read is locked",
    )
    def get(self, request, study_id, lesion_id):
        assignment = open_assignment(request.user, study_id)
        now = progress(assignment)
        lesion = study_lesion(assignment, lesion_id, now)
        shown = reveal(assignment, lesion.pk, now)
        if not shown.allowed:
            refusal = STILL_OWED_ELSEWHERE if shown.withheld else "Nothing about this lesion is shown to you now."
            raise PermissionDenied(refusal)
        purpose = "assist" if is_assist(now, lesion.pk) else "feedback"
        return Response(disclose(assignment, lesion, shown, purpose)[0])


class Reads(APIView):
    @extend_schema(
        responses={200: ReadSerializer(many=True), **refusals(403, 404)},
        summary="My reads in a study, first reads and amendments",
    )
    def get(self, request, study_id):
        assignment = open_assignment(request.user, study_id)
        reads = Read.objects.filter(assignment=assignment).select_related("lesion", "supersedes")
        return Response(ReadSerializer(reads, many=True, context={"study": assignment.study}).data)

    @extend_schema(
        request=ReadInputSerializer,
        responses={201: SUBMIT_SCHEMA, 200: SUBMIT_SCHEMA, **refusals(400, 403, 404, 409)},
        summary="Submit a read (a repeated submit returns the read already locked)",
    )
    def post(self, request, study_id):
        assignment = open_assignment(request.user, study_id)
        form = ReadInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        lesion = study_lesion(assignment, values["lesion"])
        read, created = (amend if values["amend"] else submit)(assignment, lesion, values)
        feedback, now = None, progress(assignment)
        shown = reveal(assignment, lesion.pk, now)
        if (shown.allowed or shown.withheld) and not is_assist(now, lesion.pk):
            feedback, _ = disclose(assignment, lesion, shown, "feedback")
        read_data = ReadSerializer(read, context={"study": assignment.study}).data
        body = {"read": read_data, "feedback": feedback, "progress": progress_data(now)}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def read_fields(assignment: Assignment, lesion: Lesion, values: dict) -> dict:
    """The new read's columns; an aided read records the latest AI disclosure it followed."""
    phase = values["phase"]
    presentation, _ = Presentation.objects.get_or_create(assignment=assignment, lesion=lesion, phase=phase)
    fields = {
        "assignment": assignment,
        "lesion": lesion,
        "phase": phase,
        "diagnosis": class_index(values["diagnosis"]),
        "confidence": values["confidence"],
        "malignancy": values["malignancy"],
        "shown_at": presentation.shown_at,
    }
    if phase == Phase.AIDED:
        shown = Disclosure.objects.filter(assignment=assignment, lesion=lesion, purpose="assist").last()
        if shown is None and MODEL in reveal(assignment, lesion.pk).withheld:
            raise Conflict(f"This aided read waits for the AI output. {STILL_OWED_ELSEWHERE}")
        prediction = assignment.study.prediction_for(lesion)
        if shown is None and prediction is not None and prediction.status in PENDING:
            raise Conflict("This aided read waits for the model's output for this lesion, which is being computed.")
        if shown is None:
            raise Conflict("An aided read follows the AI output: open the lesion first.")
        fields |= {"disclosure": shown, "prediction_shown": shown.prediction}
    return fields


def submit(assignment: Assignment, lesion: Lesion, values: dict) -> tuple[Read, bool]:
    """Lock the read of the current task; a repeat (same lesion and phase) returns the read already locked.
    One snapshot of the reads decides both, so a double submit whose twin commits meanwhile is a repeat, not a
    conflict."""
    now = progress(assignment)
    if (lesion.pk, values["phase"]) in now.read:
        return first_reads(assignment).get(lesion=lesion, phase=values["phase"]), False
    task = now.next_task
    if task is None or task.lesion_id != lesion.pk or task.phase != values["phase"]:
        raise Conflict("This is not the lesion and phase you are reading now; reload to continue.")
    try:
        with transaction.atomic():
            return Read.objects.create(session=task.session, **read_fields(assignment, lesion, values)), True
    except IntegrityError:  # a concurrent double submit won the race
        return get_object_or_404(first_reads(assignment), lesion=lesion, phase=values["phase"]), False


def amend(assignment: Assignment, lesion: Lesion, values: dict) -> tuple[Read, bool]:
    """A new read superseding the latest read of (lesion, phase); repeating identical values returns it."""
    if not assignment.study.allow_amend:
        raise PermissionDenied("This study does not allow amending reads.")
    latest = Read.objects.filter(
        assignment=assignment, lesion=lesion, phase=values["phase"], amended_by__isnull=True
    ).first()
    if latest is None:
        raise Conflict("There is no locked read of this lesion and phase to amend.")
    fields = read_fields(assignment, lesion, values)
    if all(getattr(latest, k) == fields[k] for k in ("diagnosis", "confidence", "malignancy")):
        return latest, False
    try:
        with transaction.atomic():
            return Read.objects.create(session=latest.session, supersedes=latest, **fields), True
    except IntegrityError:  # a concurrent identical amendment won the race
        return Read.objects.get(supersedes=latest), False


class SchemaViewRefusals(OpenApiViewExtension):
    """Documents drf-spectacular's own schema view as it answers: a ``?format=`` it does not render is a 404."""

    target_class = "drf_spectacular.views.SpectacularAPIView"

    def view_replacement(self):
        class Fixed(self.target_class):
            @extend_schema(**{**SCHEMA_KWARGS, "responses": {200: OpenApiTypes.OBJECT, **refusals(404)}})
            def get(self, request, *args, **kwargs):
                return super().get(request, *args, **kwargs)

        return Fixed
