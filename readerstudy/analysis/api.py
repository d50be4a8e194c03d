"""The study's results as JSON for its owner and granted admins (the dashboard's numbers, no figures)."""

import dataclasses
import math

import numpy as np
import pandas as pd
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from readerstudy.analysis.summary import study_results
from readerstudy.analysis.views import administered_study
from readerstudy.studies.serializers import REFUSALS


def jsonable(value):
    """Tables, estimates and arrays as plain JSON values (NaN and ±inf become null)."""
    if isinstance(value, pd.DataFrame):
        return [jsonable(row) for row in value.to_dict("records")]
    if dataclasses.is_dataclass(value):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {"-".join(map(str, k)) if isinstance(k, tuple) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


JSON = "application/json"
PHASE = OpenApiParameter("phase", str, enum=["unaided", "aided"], description="The reads analysed (default unaided).")


class StudyResults(APIView):
    @extend_schema(
        responses={
            (200, JSON): dict,
            (403, JSON): REFUSALS[403],
            (404, JSON): REFUSALS[404],
            (404, "text/html"): OpenApiTypes.STR,
        },
        parameters=[PHASE],
        description="A study id that is not a word (letters, digits, _) matches no route: the 404 is the "
        "site's HTML page.",
        summary="A study's results (study admins of the study only; ?phase=aided)",
    )
    def get(self, request, study_id):
        study = administered_study(request, study_id)
        phase = "aided" if request.query_params.get("phase") == "aided" else "unaided"
        results = dict(study_results(study, phase))
        results.pop("operating_points")
        results["calibration"] = results["calibration"]["brier"]
        results["model"] = {k: v for k, v in results["model"].items() if k != "roc"}
        return Response({"study": study.public_id, "name": study.name, "phase": phase, **jsonable(results)})
