"""The admin's DICOM import: upload a zip and labels.csv, check or correct each exam's mapping, import.

Pages (under the Case admin; staff with the ``cases.add_case`` permission only):
``import-dicom/`` (upload) and ``import-dicom/<token>/`` (the proposal; "Import" or "Discard"). The token is
the staging folder's random name and is honoured only in the session that uploaded it.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from inference.domain import SEQUENCE_TITLES, SEQUENCES
from readerstudy.cases.dicom.exam_import import LABELS_NAME, import_exams, plan_import
from readerstudy.cases.dicom.labels import LabelsError
from readerstudy.cases.dicom.upload import UploadError, discard, new_staging, staging, unpack_zip

SESSION_KEY = "dicom_uploads"
FILES_FOLDER = "files"
TEMPLATE = "admin/cases/dicom_import.html"


class UploadForm(forms.Form):
    archive = forms.FileField(label="DICOM zip", help_text="One or many exams, any folder layout.")
    labels = forms.FileField(label=LABELS_NAME, help_text="One row per lesion (README, 'DICOM import').")
    dataset = forms.SlugField(max_length=100, help_text="Name of the dataset the cases join.")

    def clean_archive(self):
        archive = self.cleaned_data["archive"]
        limit = settings.DICOM_UPLOAD_MAX_BYTES
        if archive.size > limit:
            raise forms.ValidationError(f"The zip is {archive.size:,} bytes; the limit is {limit:,} bytes.")
        return archive


class DicomImportAdminMixin:
    """Adds the DICOM import pages to a ModelAdmin (the Case admin)."""

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import-dicom/", wrap(self.dicom_upload_view), name="cases_dicom_upload"),
            path("import-dicom/<str:token>/", wrap(self.dicom_mapping_view), name="cases_dicom_mapping"),
            *super().get_urls(),
        ]

    def _check_permission(self, request) -> None:
        if not request.user.has_perm("cases.add_case"):
            raise PermissionDenied

    def _context(self, request, **extra) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Import DICOM", **extra}

    def dicom_upload_view(self, request):
        self._check_permission(request)
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            token, folder = new_staging()
            try:
                unpack_zip(form.cleaned_data["archive"], (folder / FILES_FOLDER), settings.DICOM_UPLOAD_MAX_BYTES)
                with (folder / LABELS_NAME).open("wb") as handle:
                    for chunk in form.cleaned_data["labels"].chunks():
                        handle.write(chunk)
                plan_import(folder / FILES_FOLDER, folder / LABELS_NAME)
            except (UploadError, LabelsError) as exc:
                discard(token)
                form.add_error(None, str(exc))
            else:
                uploads = request.session.get(SESSION_KEY, {})
                uploads[token] = form.cleaned_data["dataset"]
                request.session[SESSION_KEY] = uploads
                return HttpResponseRedirect(reverse("admin:cases_dicom_mapping", args=[token]))
        return TemplateResponse(request, TEMPLATE, self._context(request, form=form))

    def dicom_mapping_view(self, request, token: str):
        self._check_permission(request)
        uploads = request.session.get(SESSION_KEY, {})
        folder = staging(token) if token in uploads else None
        if folder is None:
            raise Http404("No such upload in this session (it was imported, discarded or has expired).")
        dicom_import = plan_import(folder / FILES_FOLDER, folder / LABELS_NAME)
        if request.method == "POST":
            if "import" in request.POST:
                mappings = {
                    name: {s: request.POST.get(f"map-{name}-{s}") or None for s in SEQUENCES}
                    for name in dicom_import.plans
                    if request.POST.get(f"import-{name}")
                }
                report = import_exams(dicom_import, mappings, uploads[token])
            discard(token)
            uploads.pop(token)
            request.session[SESSION_KEY] = uploads
            if "import" not in request.POST:
                return HttpResponseRedirect(reverse("admin:cases_dicom_upload"))
            return TemplateResponse(request, TEMPLATE, self._context(request, report=report))
        exams = [
            {
                "name": name,
                "plan": plan,
                "series": plan.series(),
                "problems": plan.problems + plan.proposal.problems,
                "rows": [
                    (s, SEQUENCE_TITLES[s], plan.proposal.mapping[s], plan.proposal.reasons.get(s, ""))
                    for s in SEQUENCES
                ],
            }
            for name, plan in sorted(dicom_import.plans.items())
        ]
        context = self._context(request, exams=exams, problems=dicom_import.problems, dataset=uploads[token])
        return TemplateResponse(request, TEMPLATE, context)
