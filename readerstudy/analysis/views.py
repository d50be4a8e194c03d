"""Study admins' dashboard and downloads of a study's results; to readers and other users the study's results
do not exist (404)."""

import pandas as pd
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from readerstudy.analysis.data import reads_frame
from readerstudy.analysis.exports import confusion_long, flat, to_csv, to_xlsx, workbook
from readerstudy.analysis.figures import accuracy_figure, calibration_figure, confusion_figure, roc_figure
from readerstudy.analysis.mrmc_files import write_imrmc, write_rjafroc_xlsx
from readerstudy.analysis.results import mrmc_ratings
from readerstudy.analysis.summary import study_results
from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import record
from readerstudy.studies.blinding import may_administer
from readerstudy.studies.models import ReaderStudy

FORMATS = {
    "csv": (to_csv, "text/csv; charset=utf-8"),
    "xlsx": (to_xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def administered_study(request, study_id: str) -> ReaderStudy:
    """The study if the user may see its results; 404 otherwise, whether the study exists or not (so an id is no
    oracle of a study's existence to its readers)."""
    study = ReaderStudy.objects.filter(public_id=study_id).first()
    if study is None or not may_administer(request.user, study):
        raise Http404("No study of yours has this id.")
    return study


def attachment(study: ReaderStudy, body, content_type: str, name: str) -> HttpResponse:
    """A download named after the study, recorded in the audit trail."""
    record(AuditEvent.Action.EXPORTED, study, f"{name} of {study.name!r} downloaded")
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{slugify(study.name)}-{name}"'
    return response


@login_required
@require_GET
def export_reads(request, study_id, fmt):
    """Every first read of the study joined with lesion, reader and model data (``?all=1``: amendments too)."""
    study = administered_study(request, study_id)
    write, content_type = FORMATS[fmt]
    frame = reads_frame(study, first_only=request.GET.get("all") != "1")
    return attachment(study, write(frame), content_type, f"reads.{fmt}")


def results_context(request, study_id) -> dict:
    """What the dashboard and the report show: the results of the study's first unaided reads (``?phase=aided``
    for the aided ones), their tables and figures."""
    study = administered_study(request, study_id)
    phase = "aided" if request.GET.get("phase") == "aided" else "unaided"
    results = study_results(study, phase)
    model = results["model"]
    confusions = {"Model": model["confusion"]} if model else {}
    confusions |= {f"{group} (pooled)": matrix for group, matrix in results["confusions"].items()}
    figures = {}
    if not results["readers"].empty:
        model_accuracy = model["accuracy"].estimate if model else None
        figures["accuracy"] = accuracy_figure(results["readers"], results["groups"], model_accuracy)
        figures["roc"] = roc_figure(model, results["operating_points"])
    if confusions:
        figures["confusion"] = confusion_figure(confusions)
    if results["calibration"]["curves"]:
        figures["calibration"] = calibration_figure(results["calibration"]["curves"])
    names = ("readers", "groups", "kappa", "comparisons", "ai_effect", "progress", "model_table")
    tables = {name: results[name].to_dict("records") for name in names}
    tables["mrmc"] = mrmc_rows(results["mrmc"])
    tables["brier"] = results["calibration"]["brier"].to_dict("records")
    tables["subgroups"] = results["subgroups"].to_dict("records")
    tables["cohort"] = results["cohort"].to_dict("records")
    return {
        "study": study,
        "phase": phase,
        "tables": tables,
        "model": model,
        "n_reads": results["n_reads"],
        "figures": {k: mark_safe(v) for k, v in figures.items()},
    }


@login_required
@require_GET
def export_results(request, study_id):
    """Every results table of the study (first unaided reads; ``?phase=aided``) as one XLSX workbook."""
    study = administered_study(request, study_id)
    phase = "aided" if request.GET.get("phase") == "aided" else "unaided"
    results = study_results(study, phase)
    model = results["model"]
    matrices = ({"model": model["confusion"]} if model else {}) | results["confusions"] | results["reader_confusions"]
    sheets = {
        "readers": results["readers"],
        "groups": results["groups"],
        "model (Table 3)": flat(results["model_table"]),
        "confusion matrices": confusion_long(matrices),
        "kappa": results["kappa"],
        "model vs readers": results["comparisons"],
        "mrmc": pd.DataFrame(mrmc_rows(results["mrmc"])),
        "ai effect": results["ai_effect"],
        "subgroups": results["subgroups"],
        "calibration": results["calibration"]["brier"],
        "cohort (Table 2)": results["cohort"],
    }
    return attachment(study, workbook(sheets), FORMATS["xlsx"][1], f"results-{phase}.xlsx")


@login_required
@require_GET
def export_mrmc(request, study_id, fmt):
    """The benign-vs-malignant task on the malignancy likelihood, every phase read by every reader on the
    lesions all of them read, as iMRMC input (``.imrmc``) or an RJafroc workbook; cases are numbered 1..N in
    the order of their lesion ids (``reads.csv`` maps them)."""
    study = administered_study(request, study_id)
    reads = reads_frame(study)
    phases = tuple(p for p in ("unaided", "aided") if p in set(reads["phase"]))
    crossed = mrmc_ratings(reads, phases)
    if not phases or crossed.values.size == 0:
        raise Http404("No lesion has been read by every reader yet.")
    arrays = (
        crossed.values,
        crossed.truth,
        crossed.readers,
        phases,
        [str(n) for n in range(1, len(crossed.lesions) + 1)],
    )
    if fmt == "imrmc":
        body, content_type = write_imrmc(*arrays, title=study.name), "text/plain"
    else:
        body = write_rjafroc_xlsx(*arrays)
        content_type = FORMATS["xlsx"][1]
    return attachment(study, body, content_type, f"malignancy.{fmt}")


@login_required
@require_GET
def dashboard(request, study_id):
    return render(request, "analysis/dashboard.html", results_context(request, study_id))


@login_required
@require_GET
def report(request, study_id):
    """The printable study report: the paper's Tables 3 and 4 and Figures 2-4 for this study's data."""
    return render(request, "analysis/report.html", results_context(request, study_id))


def mrmc_rows(mrmc: dict) -> list[dict]:
    """The MRMC section's rows: what was compared, the AUCs, the difference with its CI, F or t², ddf, p."""
    rows = []
    if "aided_vs_unaided" in mrmc:
        result = mrmc["aided_vs_unaided"]
        unaided, aided = result.rrrc.modalities
        d = result.rrrc.differences[(0, 1)]  # unaided − aided
        rows.append(
            {
                "comparison": "aided − unaided reading (readers random, cases random)",
                "first": unaided.estimate,
                "second": aided.estimate,
                "difference": -d.estimate,
                "low": -d.high,
                "high": -d.low,
                "f": result.rrrc.test.f,
                "ddf": result.rrrc.test.ddf,
                "p": result.rrrc.test.p,
            }
        )
    if "model_vs_readers" in mrmc:
        result = mrmc["model_vs_readers"]
        d = result.difference
        rows.append(
            {
                "comparison": "mean reader − model (Hillis 2007, readers random)",
                "first": result.model_auc,
                "second": result.mean_reader_auc,
                "difference": d.estimate,
                "low": d.low,
                "high": d.high,
                "f": d.statistic**2,
                "ddf": d.df,
                "p": d.p,
            }
        )
    return rows
