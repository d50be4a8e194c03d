"""The Celery application.

With ``CELERY_BROKER_URL`` unset, tasks run eagerly in the calling process (the
embedded default); with it set (Redis), they go to worker processes.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")

app = Celery("readerstudy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
