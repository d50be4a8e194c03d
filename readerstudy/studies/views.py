"""The reading page and the checked view that serves a lesion's volumes (the only route to stored files)."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.http import require_GET

from inference.domain import CLASS_TITLES, CLASSES, SEQUENCES
from readerstudy.cases.models import Lesion
from readerstudy.studies.blinding import SALIENCY, assignment_for, may_view_lesion, revealable
from readerstudy.studies.models import ReaderStudy
from readerstudy.studies.viewing import served_file


def _assignment_or_404(request, study_id):
    study = ReaderStudy.objects.filter(public_id=study_id).first()
    assignment = assignment_for(request.user, study) if study else None
    if assignment is None:
        raise Http404("No open study of yours has this id.")
    return assignment


@login_required
def reading(request, study_id):
    """The reading page: seven viewports and the answer form; it drives itself through the API."""
    assignment = _assignment_or_404(request, study_id)
    classes = [(i + 1, c, CLASS_TITLES[c]) for i, c in enumerate(CLASSES)]
    return render(request, "studies/reading.html", {"study": assignment.study, "classes": classes})


@login_required
@require_GET
def volume(request, study_id, lesion_id, sequence, kind):
    """A served ``.nii.gz`` (raw gzip, no Content-Encoding, ETag) to a reader allowed to see it now."""
    assignment = _assignment_or_404(request, study_id)
    lesion = Lesion.objects.filter(public_id=lesion_id, studies=assignment.study).first()
    if lesion is None or sequence not in SEQUENCES:
        raise Http404("No such volume.")
    # Heat maps follow the disclosure rules (feedback outlives the current task); images the viewing rules.
    if kind == "heat":
        allowed = SALIENCY in revealable(assignment, lesion.pk)
    else:
        allowed = may_view_lesion(assignment, lesion.pk)
    if not allowed:
        return HttpResponseForbidden("This lesion is not open to you now.")
    prediction = assignment.study.prediction_for(lesion) if kind == "heat" else None
    served = served_file(assignment.study, lesion, sequence, kind, prediction)
    if served is None:
        raise Http404("No such volume.")
    etag = f'"{served.etag}"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        response = FileResponse(served.path.open("rb"), content_type="application/gzip")
    response["ETag"] = etag
    response["Cache-Control"] = "private, max-age=3600"
    return response
