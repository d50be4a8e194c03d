from django.urls import re_path

from readerstudy.analysis import views

app_name = "analysis"
urlpatterns = [
    re_path(r"^studies/(?P<study_id>\w+)/dashboard/$", views.dashboard, name="dashboard"),
    re_path(r"^studies/(?P<study_id>\w+)/export/reads\.(?P<fmt>csv|xlsx)$", views.export_reads, name="export-reads"),
]
