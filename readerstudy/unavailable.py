"""A lost database answers 503 Service Unavailable with Retry-After, never a 500.

An ``OperationalError`` or ``InterfaceError`` of ``django.db`` that nothing handled (the database restarting,
down, or refusing connections) turns the request's answer into a 503 with ``Retry-After:
RETRY_AFTER_SECONDS`` (seconds): ``{"detail": ...}`` under ``/api/``, a short HTML page elsewhere. Clients
retry; submitting a read again after a 503 returns the read already locked (``studies.api.submit``), so a
retry never makes a second read.

Django turns an uncaught exception into a 500 in the middleware layer that raised it (a request's first
query runs in a middleware, before any view), so the error is noted on the request from
``got_request_exception`` and this middleware, placed above every layer that queries, swaps that 500.
"""

import sys

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.dispatch import receiver
from django.http import HttpResponse, JsonResponse

from readerstudy.views import is_api

RETRY_AFTER_SECONDS = 2
MESSAGE = "The database is unavailable for a moment; retry shortly."
PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LiverRead: unavailable for a moment</title></head>
<body><h1>Unavailable for a moment</h1><p>{MESSAGE}</p></body></html>
"""
NOTED = "database_unavailable"
"""The request attribute set when its handling hit a lost database."""


@receiver(got_request_exception)
def note_database_error(sender, request=None, **kwargs) -> None:
    if request is not None and isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        setattr(request, NOTED, True)


def unavailable(request) -> HttpResponse:
    response = JsonResponse({"detail": MESSAGE}, status=503) if is_api(request) else HttpResponse(PAGE, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """Replaces the 500 of a request whose handling hit a lost database by a 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, NOTED, False):
            return unavailable(request)
        return response
