"""The project's URLconf plus two views that fail, one under /api/ and one elsewhere (for the 500 test)."""

from django.urls import path

from readerstudy import urls


def fail(request):
    raise RuntimeError("an unexpected error")


handler404, handler500 = urls.handler404, urls.handler500
urlpatterns = [path("api/fail/", fail), path("fail/", fail), *urls.urlpatterns]
