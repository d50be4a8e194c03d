"""Schemathesis against the API's own OpenAPI schema, in-process through the WSGI app: every operation, as a
reader of an open study and as the study admin who owns it, with generated valid and invalid requests (some
aimed at the real study and lesions). No response may be a server error or stray from the schema (status
code documented, content type and body as documented), and no refused write may leave a row behind."""

from collections import Counter
from dataclasses import dataclass, field

import pytest
import schemathesis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_reading import make_reader, new_study, next_task, read

from readerstudy.studies.identifiers import study_lesion_id
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Disclosure, Presentation, Read

pytestmark = pytest.mark.django_db

EXAMPLES = 8
"""Generated requests per operation, user, generation mode (valid, invalid) and path (generated, real ids),
derandomised (the same on every run)."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
WRITTEN = (Read, Presentation, Disclosure)
CURRENT = "the lesion being read now"


@pytest.fixture
def wsgi_app():
    """Django's WSGI application as a server runs it, except that it leaves the database connection open after
    a request (as Django's test client does, which reconnects the closing after each of its own requests): the
    test's transaction lives on that connection."""
    handler = get_wsgi_application()

    def app(environ, start_response):
        for signal in (request_started, request_finished):
            signal.disconnect(close_old_connections)
        return handler(environ, start_response)

    yield app
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def open_study(eight_lesions):
    """An open practice study (reference feedback, revisiting, amending) of eight lesions, owned by a study
    admin, with one assigned reader who has read three lesions and is reading the fourth ("unread")."""
    owner = get_user_model().objects.create_user("owner", password="x", is_staff=True)
    group = Group.objects.create(name=STUDY_ADMINS_GROUP)
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=["cases", "studies"]))
    owner.groups.add(group)
    reader = make_reader("reader")
    study = new_study(
        eight_lesions, [reader], owner=owner, feedback="reference", practice=True, allow_revisit=True, allow_amend=True
    )
    client = Client()
    client.force_login(reader.user)
    done = []
    for _ in range(3):
        task = next_task(client, study)["task"]
        assert read(client, study, task).status_code == 201
        done.append(task["lesion"])
    lesions = [study_lesion_id(study, lesion) for lesion in eight_lesions]
    unread = next_task(client, study)["task"]["lesion"]  # the one being read: known to the reader, not revealed
    return {
        "study": study,
        "reader": reader.user,
        "reader client": client,
        "owner": owner,
        "lesions": lesions,
        "read": done[0],
        "unread": unread,
    }


@dataclass
class Run:
    """One user's side of the fuzzing: their session, and what was sent and found."""

    fixture: dict
    user: object
    cookies: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)  # (operation, status)
    failures: list = field(default_factory=list)  # one line per failing request
    details: list = field(default_factory=list)  # schemathesis's full report of each

    def log_in(self) -> "Run":
        """A session cookie for the user and a CSRF token, as cookie and header."""
        client = Client()
        client.force_login(self.user)
        token = get_random_string(32)
        self.cookies = {
            settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
            settings.CSRF_COOKIE_NAME: token,
        }
        self.headers = {"X-CSRFToken": token}
        return self

    def send(self, case, lesion: str | None) -> None:
        """Send one generated request (its body's lesion replaced by ``lesion``) and check the answer."""
        if lesion and isinstance(case.body, dict) and "lesion" in case.body:
            case.body["lesion"] = current_lesion(self.fixture) if lesion == CURRENT else lesion
        label = case.operation.label
        before = [model.objects.count() for model in WRITTEN]
        response = case.call(cookies=self.cookies, headers=self.headers)
        self.requests.append((label, response.status_code))
        if case.method == "POST" and 400 <= response.status_code < 500:
            after = [model.objects.count() for model in WRITTEN]
            if after != before:
                self.failures.append(
                    f"{label} as {self.user.username} → {response.status_code} but wrote rows: {before} → {after}"
                )
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            titles = ", ".join(sorted({failure.title for failure in group.exceptions}))
            self.failures.append(f"{label} as {self.user.username} → {response.status_code}: {titles}")
            self.details.append(str(group))


def strategies(operation, fixture: dict):
    """Valid and invalid requests, with generated path parameters and with the real study id (and a lesion the
    reader has read, and one they have not); a read's body sometimes names a real lesion, or the one being
    read now (CURRENT)."""
    study = fixture["study"].public_id
    paths = [{}]
    if "{lesion_id}" in operation.path:
        paths += [{"study_id": study, "lesion_id": fixture[which]} for which in ("read", "unread")]
    elif "{study_id}" in operation.path:
        paths.append({"study_id": study})
    body_lesions = st.one_of(st.just(CURRENT), st.sampled_from([None, *fixture["lesions"][:5]]))
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for path in paths:
            yield st.tuples(operation.as_strategy(mode, path_parameters=path), body_lesions)


def current_lesion(fixture) -> str | None:
    """The public id of the lesion the reader is to read now (None when done)."""
    task = next_task(fixture["reader client"], fixture["study"])["task"]
    return task and task["lesion"]


def fuzz(schema, run: Run) -> set[str]:
    """Send generated requests for every operation of ``schema``; returns the operations' labels."""
    tested = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.add(operation.label)
        for strategy in strategies(operation, run.fixture):
            bounded = hypothesis_settings(
                max_examples=EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            bounded(given(strategy)(lambda drawn: run.send(*drawn)))()
    return tested


def test_every_operation_survives_fuzzing_as_a_reader_and_as_the_study_admin(wsgi_app, open_study, capsys):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    schema = schema.include(path_regex="^/api/")  # selected explicitly, the schema's own endpoint is fuzzed too
    operations = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for method in item}
    runs = [Run(open_study, user).log_in() for user in (open_study["reader"], open_study["owner"])]

    for run in runs:
        assert fuzz(schema, run) == operations

    failures = [failure for run in runs for failure in run.failures]
    details = [detail for run in runs for detail in run.details]
    summary = "\n".join(f"{n} × {failure}" for failure, n in Counter(failures).most_common())
    assert not failures, f"{summary}\n\nthe first in full:\n{details[0] if details else ''}"
    requests = [request for run in runs for request in run.requests]
    statuses = {status for _, status in requests}
    with capsys.disabled():
        print(f"\n{len(requests)} generated requests over {len(operations)} operations; statuses {sorted(statuses)}")
    assert {200, 201, 400, 403, 404, 409} <= statuses
    assert {label for label, status in requests if status < 300} == operations  # each got past its refusals
