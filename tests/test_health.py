"""The health check that docker-compose and load balancers call, against real services."""

import os

import pytest

from readerstudy.celery import app as celery_app

pytestmark = pytest.mark.django_db

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def broker(monkeypatch):
    def use(url: str) -> None:
        monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
        monkeypatch.setitem(celery_app.conf, "broker_url", url)

    return use


def test_health_is_ok_on_the_embedded_default(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"database": "ok", "broker": "eager"}


def test_health_reaches_the_real_redis_broker(client, broker):
    broker(REDIS_URL)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["broker"] == "ok"


def test_health_reports_a_down_broker_but_stays_up_since_reading_needs_only_the_database(client, broker):
    broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["broker"].startswith("error")
    assert response.json()["database"] == "ok"
