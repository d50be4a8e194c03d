"""The LiverRead Django project; importing it loads the Celery app."""

from readerstudy.celery import app as celery_app

__all__ = ("celery_app",)
