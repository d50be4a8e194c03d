from django.urls import re_path

from readerstudy.analysis import api, views

app_name = "analysis"
urlpatterns = [
    re_path(r"^api/studies/(?P<study_id>\w+)/results/$", api.StudyResults.as_view(), name="api-results"),
    re_path(r"^studies/(?P<study_id>\w+)/dashboard/$", views.dashboard, name="dashboard"),
    re_path(r"^studies/(?P<study_id>\w+)/report/$", views.report, name="report"),
    re_path(r"^studies/(?P<study_id>\w+)/export/reads\.(?P<fmt>csv|xlsx)$", views.export_reads, name="export-reads"),
    re_path(r"^studies/(?P<study_id>\w+)/export/results\.xlsx$", views.export_results, name="export-results"),
    re_path(
        r"^studies/(?P<study_id>\w+)/export/malignancy\.(?P<fmt>imrmc|xlsx)$", views.export_mrmc, name="export-mrmc"
    ),
]
