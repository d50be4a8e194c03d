"""The reading page and the checked view that serves a lesion's volumes (the only route to stored files)."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.http import require_GET

from inference.domain import CLASS_TITLES, CLASSES, SEQUENCES
from readerstudy.studies.blinding import (
    SALIENCY,
    STILL_OWED_ELSEWHERE,
    may_view_lesion,
    open_assignment,
    reveal,
    study_lesion,
)
from readerstudy.studies.identifiers import study_etag
from readerstudy.studies.viewing import served_file
from readerstudy.studies.workflow import progress


@login_required
def reading(request, study_id):
    """The reading page: seven viewports and the answer form; it drives itself through the API."""
    assignment = open_assignment(request.user, study_id)
    classes = [(i + 1, c, CLASS_TITLES[c]) for i, c in enumerate(CLASSES)]
    return render(request, "studies/reading.html", {"study": assignment.study, "classes": classes})


@login_required
@require_GET
def volume(request, study_id, lesion_id, sequence, kind):
    """A served ``.nii.gz`` (raw gzip, no Content-Encoding, an ETag of this study) to a reader allowed to see
    it now."""
    assignment = open_assignment(request.user, study_id)
    now = progress(assignment)
    lesion = study_lesion(assignment, lesion_id, now)
    if sequence not in SEQUENCES:
        raise Http404("No such volume.")
    # Heat maps follow the disclosure rules (feedback outlives the current task); images the viewing rules.
    if kind == "heat":
        shown = reveal(assignment, lesion.pk, now)
        if SALIENCY not in shown.allowed:
            refusal = STILL_OWED_ELSEWHERE if SALIENCY in shown.withheld else "This heat map is not shown to you now."
            return HttpResponseForbidden(refusal)
    elif not may_view_lesion(assignment, lesion.pk, now):
        return HttpResponseForbidden("This lesion is not open to you now.")
    prediction = assignment.study.prediction_for(lesion) if kind == "heat" else None
    served = served_file(assignment.study, lesion, sequence, kind, prediction)
    if served is None:
        raise Http404("No such volume.")
    etag = f'"{study_etag(assignment.study, served.etag)}"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        response = FileResponse(served.path.open("rb"), content_type="application/gzip")
    response["ETag"] = etag
    response["Cache-Control"] = "private, max-age=3600"
    return response
