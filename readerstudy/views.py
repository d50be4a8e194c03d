"""Project-level pages: the home page, the health check and the 404 and 500 answers."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found, server_error

from readerstudy.cases.models import Case, Lesion
from readerstudy.celery import app as celery_app
from readerstudy.studies.blinding import administered_studies
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Assignment, Reader
from readerstudy.studies.workflow import progress


def is_study_admin(user) -> bool:
    return user.is_superuser or user.groups.filter(name=STUDY_ADMINS_GROUP).exists()


@login_required
def home(request):
    """A study admin sees the cohort; a reader sees their group and their open studies with progress."""
    reader = Reader.objects.filter(user=request.user).first()
    assignments = Assignment.objects.filter(reader=reader, study__is_open=True).select_related("study")
    context = {"reader": reader, "studies": [(a.study, progress(a)) for a in assignments]}
    context["administered"] = administered_studies(request.user).order_by("name")
    if is_study_admin(request.user):
        context["cohort"] = {
            "cases": Case.objects.count(),
            "lesions_by_split": Lesion.objects.values("split").annotate(n=Count("id")).order_by("split"),
            "datasets": Case.objects.values("dataset").annotate(n=Count("id")).order_by("dataset"),
        }
    return render(request, "home.html", context)


@require_GET
def healthz(request):
    """200 when the database answers, else 503; the broker's state is reported but does not fail the check,
    because reading and submitting need only the database (a down broker delays predictions, which the sweep
    re-sends), so a load balancer or compose must not take the web out for it."""
    status = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        status["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        status["database"] = f"error: {type(exc).__name__}"
    if celery_app.conf.task_always_eager:
        status["broker"] = "eager"
    else:
        try:
            with celery_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            status["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            status["broker"] = f"error: {type(exc).__name__}"
    return JsonResponse(status, status=200 if status["database"] == "ok" else 503)


def is_api(request) -> bool:
    """Whether the request is for the API (``/api/…``), whose answers are JSON, errors included."""
    return request.path_info.startswith("/api/")


def not_found(request, exception):
    """The 404 of an unknown URL: ``{"detail": "Not found."}`` under ``/api/`` (as DRF answers its own 404s, so a
    client parses every API error alike), the site's page elsewhere."""
    if is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def failed(request):
    """The 500 of an unexpected error: ``{"detail": "Server error."}`` under ``/api/``, the site's page elsewhere."""
    if is_api(request):
        return JsonResponse({"detail": "Server error."}, status=500)
    return server_error(request)
