"""Every URL pattern of the project, discovered from the root resolver (the admin included), requested as six
roles; each answer must be the one the rule table below gives. A pattern the table does not cover fails the
test, so every new URL joins the table. Writes (the reads API, admin actions) are checked by POST."""

import csv
import io
import re
from dataclasses import dataclass
from functools import cache

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve

from readerstudy.audit.models import AuditEvent
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Case, Lesion, LesionMask, Patient, SequenceVolume
from readerstudy.predictions.models import ModelVersion, Prediction, TrainingRun
from readerstudy.studies.management.commands.make_demo import ADMIN_APPS
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Assignment, Disclosure, Read, Reader, ReaderStudy

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "reader of another study", "reader", "study admin of another study", "study admin", "superuser")
STAFF = ROLES[3:]
LOGIN, ADMIN_LOGIN, ADMIN_INDEX, CHANGE_PAGE = "→ login", "→ admin login", "→ admin index", "→ change page"
ALL_200 = (200,) * 6
STAFF_PAGE = (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200, 200, 200)

# --- the rule table ----------------------------------------------------------------------------------------
# Pages: route name (the route itself for an unnamed pattern) → the answer for each role, in ROLES order: a
# status, or where a redirect leads. "This study" is the reader's and the study admin's; the others have
# their own study.
PAGES = {
    "home": (LOGIN, 200, 200, 200, 200, 200),
    "healthz": ALL_200,
    "login": ALL_200,
    "logout": (405,) * 6,  # POST only
    "schema": ALL_200,
    "api-docs": ALL_200,
    # Reading: the assigned reader only; for everyone else no such study (404).
    "studies:reading": (LOGIN, 404, 200, 404, 404, 404),
    "studies:volume": (LOGIN, 404, 200, 404, 404, 404),
    "studies:api-studies": (403, 200, 200, 200, 200, 200),
    "studies:api-progress": (403, 404, 200, 404, 404, 404),
    "studies:api-next": (403, 404, 200, 404, 404, 404),
    "studies:api-reads": (403, 404, 200, 404, 404, 404),
    "studies:api-lesion": (403, 404, 200, 404, 404, 404),
    "studies:api-feedback": (403, 404, 403, 404, 404, 404),  # the current lesion is not read yet
    # Results: the study's own admins and superusers only; never a reader.
    # Results: the study's owner and granted admins; for everyone else no such study (404).
    "analysis:api-results": (403, 404, 404, 404, 200, 200),
    "analysis:dashboard": (LOGIN, 404, 404, 404, 200, 200),
    "analysis:report": (LOGIN, 404, 404, 404, 200, 200),
    "analysis:export-reads": (LOGIN, 404, 404, 404, 200, 200),
    "analysis:export-results": (LOGIN, 404, 404, 404, 200, 200),
    "analysis:export-mrmc": (LOGIN, 404, 404, 404, 200, 200),
    # The admin site: staff only; readers are sent to the admin's login everywhere.
    "admin:index": STAFF_PAGE,
    "admin:login": (200, 200, 200, ADMIN_INDEX, ADMIN_INDEX, ADMIN_INDEX),
    "admin:logout": (ADMIN_INDEX, ADMIN_INDEX, ADMIN_INDEX, 405, 405, 405),  # POST only
    "admin:password_change": STAFF_PAGE,
    "admin:password_change_done": STAFF_PAGE,
    "admin:autocomplete": (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 403, 403, 403),  # no field asked for
    "admin:jsi18n": STAFF_PAGE,
    "admin:view_on_site": (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 404, 404, 404),  # no model has a site URL
    "admin:app_list": STAFF_PAGE,
    "admin/(?P<url>.*)$": (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 404, 404, 404),
    "admin:auth_user_password_change": (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 403, 403, 200),
    "admin:cases_dicom_upload": STAFF_PAGE,  # the study admins group may add cases
    "admin:cases_dicom_mapping": (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 404, 404, 404),  # not uploaded in this session
}
# Admin model pages (list, add, change, history, delete, and the bare object URL that redirects to the change
# page): who sees the model and whether its admin adds and deletes rows. STUDY: a study admin sees the rows
# of the studies they administer (another study's row is no such object to them); COHORT: every row (the
# study admins group's permissions); SUPERUSERS: superusers only.
STUDY, COHORT, SUPERUSERS = "study", "cohort", "superusers"
ADMIN_MODELS = {
    # label:                   (audience, adds, deletes)
    "auth.group": (SUPERUSERS, True, True),
    "auth.user": (SUPERUSERS, True, True),
    "axes.accessattempt": (SUPERUSERS, False, True),
    "axes.accesslog": (SUPERUSERS, False, True),
    "axes.accessfailurelog": (SUPERUSERS, False, True),
    "cases.patient": (COHORT, False, True),
    "cases.case": (COHORT, False, True),
    "cases.sequencevolume": (COHORT, False, True),
    "cases.lesion": (COHORT, False, True),
    "cases.lesionmask": (COHORT, False, True),
    "predictions.modelversion": (COHORT, False, True),
    "predictions.trainingrun": (COHORT, False, True),
    "predictions.prediction": (COHORT, False, True),
    "studies.reader": (COHORT, True, True),
    "studies.readerstudy": (STUDY, True, True),
    "studies.assignment": (STUDY, False, True),
    "studies.read": (STUDY, False, False),
    "studies.disclosure": (STUDY, False, False),
    "audit.auditevent": (STUDY, False, False),
}
ADMIN_MODEL_ROUTE = re.compile(r"^admin/(?P<app>\w+)/(?P<model>\w+)/(?P<view>|add/|<path:object_id>/(\w+/)?)$")
ADMIN_VIEWS = {
    "": "list",
    "add/": "add",
    "<path:object_id>/": "bare",
    "<path:object_id>/change/": "change",
    "<path:object_id>/history/": "history",
    "<path:object_id>/delete/": "delete",
}


@cache
def admin_models() -> frozenset[str]:
    """The labels of the models registered with the admin site."""
    return frozenset(m._meta.label_lower for m in apps.get_models() if admin.site.is_registered(m))


def admin_model_rule(label: str, view: str, role: str):
    audience, adds, deletes = ADMIN_MODELS[label]
    if role not in STAFF:
        return ADMIN_LOGIN
    if view == "bare":
        return CHANGE_PAGE
    if audience == SUPERUSERS and role != "superuser":
        return 403
    if (view == "add" and not adds) or (view == "delete" and not deletes):
        return 403
    if audience == STUDY and role == "study admin of another study" and view not in {"list", "add"}:
        return ADMIN_INDEX  # Django's answer for no such object
    return 200


@dataclass(frozen=True)
class Pattern:
    route: str  # the whole route, prefixes joined
    name: str | None  # with its namespaces

    @property
    def admin_model(self) -> tuple[str, str] | None:
        """(app_label.model_name, view) for an admin model page."""
        match = ADMIN_MODEL_ROUTE.match(self.route)
        if match is None or f"{match['app']}.{match['model']}" not in admin_models():
            return None
        return f"{match['app']}.{match['model']}", ADMIN_VIEWS[match["view"]]

    def expected(self, role: str):
        if self.admin_model:
            return admin_model_rule(*self.admin_model, role)
        return PAGES[self.name or self.route][ROLES.index(role)]


def url_patterns(patterns=None, prefix="", namespace="") -> list[Pattern]:
    """Every pattern under the root resolver; routes joined as ``resolve(...).route`` gives them."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + (str(entry.pattern).removeprefix("^") if prefix else str(entry.pattern))
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += url_patterns(entry.url_patterns, route, inner)
        else:
            found.append(Pattern(route, f"{namespace}{entry.name}" if entry.name else None))
    return found


def test_the_rule_table_covers_every_url_pattern_and_nothing_else():
    patterns = url_patterns()
    uncovered = [p.route for p in patterns if not p.admin_model and (p.name or p.route) not in PAGES]
    assert not uncovered and admin_models() <= set(ADMIN_MODELS), "add these to the rule table"
    assert set(PAGES) == {p.name or p.route for p in patterns if not p.admin_model}
    assert set(ADMIN_MODELS) == admin_models()
    assert len({p.admin_model for p in patterns if p.admin_model}) == len(ADMIN_VIEWS) * len(ADMIN_MODELS)


# --- the world ---------------------------------------------------------------------------------------------


def user(username: str, **fields):
    return get_user_model().objects.create_user(username, **fields)  # no password: tests log in directly


def new_reader(username: str) -> Reader:
    return Reader.objects.create(user=user(username), group="resident", years_of_experience=3)


def new_study(name: str, owner, lesions, reader: Reader) -> ReaderStudy:
    study = ReaderStudy.objects.create(name=name, owner=owner)
    study.lesions.set(lesions)
    Assignment.assign(study, reader)
    return study


@pytest.fixture
def world(dataset, media):
    """This study (its reader has read one of its two lesions and is at the other; owned by the study admin)
    and another study (its own reader and owner), one object of every model the admin shows, the six users."""
    dataset.add_case("C1", lesions=(("L1", "HCC"), ("L2", "cyst"))).write_manifest()
    import_dataset(dataset.root, dataset="trial")
    lesions = list(Lesion.objects.order_by("pk"))
    admins = Group.objects.create(name=STUDY_ADMINS_GROUP)
    admins.permissions.set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
    study_admin, other_admin = user("admin", is_staff=True), user("other-admin", is_staff=True)
    study_admin.groups.add(admins)
    other_admin.groups.add(admins)
    reader, other_reader = new_reader("reader"), new_reader("other-reader")
    study = new_study("Alpha study", study_admin, lesions, reader)
    other = new_study("Omega study", other_admin, lesions, other_reader)
    client = Client()
    client.force_login(reader.user)
    task = client.get(f"/api/studies/{study.public_id}/next/").json()["task"]
    body = {**task, "diagnosis": "HCC", "confidence": 4, "malignancy": 80}
    submitted = client.post(f"/api/studies/{study.public_id}/reads/", body, content_type="application/json")
    assert submitted.status_code == 201
    current = client.get(f"/api/studies/{study.public_id}/next/").json()["task"]["lesion"]
    assignment = study.assignments.get()
    version = ModelVersion.objects.create(name="v1", config={}, run_path="runs/v1", files_sha256={}, metrics={})
    attempt = {
        "username": "someone",
        "ip_address": "10.0.0.9",
        "user_agent": "test",
        "http_accept": "*/*",
        "path_info": "/accounts/login/",
    }
    created = AuditEvent.objects.get(object_type="ReaderStudy", object_id=study.public_id, action="study created")
    shown = Disclosure.objects.create(assignment=assignment, lesion=lesions[0], purpose="feedback", revealed=[])
    objects = {
        "auth.group": admins,
        "auth.user": reader.user,
        "axes.accessattempt": AccessAttempt.objects.create(**attempt, failures_since_start=1),
        "axes.accesslog": AccessLog.objects.create(**attempt),
        "axes.accessfailurelog": AccessFailureLog.objects.create(**attempt, locked_out=False),
        "cases.patient": Patient.objects.get(),
        "cases.case": Case.objects.get(),
        "cases.sequencevolume": SequenceVolume.objects.first(),
        "cases.lesion": lesions[0],
        "cases.lesionmask": LesionMask.objects.first(),
        "predictions.modelversion": version,
        "predictions.trainingrun": TrainingRun.objects.create(config_name="cpu", data_dir="d", run_dir="r"),
        "predictions.prediction": Prediction.objects.create(model_version=version, lesion=lesions[0]),
        "studies.reader": reader,
        "studies.readerstudy": study,
        "studies.assignment": assignment,
        "studies.read": Read.objects.get(assignment=assignment),
        "studies.disclosure": shown,
        "audit.auditevent": created,
    }
    users = dict(
        zip(
            ROLES[1:],
            (
                other_reader.user,
                reader.user,
                other_admin,
                study_admin,
                get_user_model().objects.create_superuser("boss"),
            ),
            strict=True,
        )
    )
    values = {
        "study_id": study.public_id,
        "lesion_id": current,
        "sequence": "T2WI",
        "kind": "",
        "fmt": "xlsx",
        "app_label": "studies",
        "url": "no-such-page/",
        "token": "no-such-upload",
        "id": reader.user.pk,
        "content_type_id": ContentType.objects.get_for_model(ReaderStudy).pk,
        "object_id": study.pk,
    }
    return {"study": study, "other": other, "objects": objects, "users": users, "values": values}


def fill(pattern: Pattern, world) -> str:
    """The pattern's URL with this study's ids (an admin model page: the model's object of the world)."""
    values = dict(world["values"])
    if pattern.admin_model:
        values["object_id"] = world["objects"][pattern.admin_model[0]].pk
    url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m[1]]), pattern.route)  # regular expressions
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m[1]]), url)  # paths
    return "/" + url.replace("^", "").replace("$", "").replace("\\.", ".")


def outcome(response, url: str):
    """The status, or for a redirect where it leads."""
    if response.status_code != 302:
        return response.status_code
    location = response["Location"]
    targets = {
        LOGIN: location.startswith("/accounts/login/?next="),
        ADMIN_LOGIN: location.startswith("/admin/login/"),
        ADMIN_INDEX: location == "/admin/",
        CHANGE_PAGE: location == f"{url}change/",
    }
    return next((target for target, matches in targets.items() if matches), f"302 → {location}")


def as_role(world, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


@pytest.mark.parametrize("role", ROLES)
def test_every_url_pattern_answers_each_role_as_the_rule_table_says(world, role):
    client = as_role(world, role)
    wrong = {}
    for pattern in url_patterns():
        url = fill(pattern, world)
        assert resolve(url).route == pattern.route, f"{url} does not reach {pattern.route}"
        got, want = outcome(client.get(url), url), pattern.expected(role)
        if got != want:
            wrong[url] = f"{got} != {want}"
    assert not wrong


# --- writes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "want"), zip(ROLES, (403, 404, 201, 404, 404, 404), strict=True))
def test_only_the_assigned_reader_submits_a_read(world, role, want):
    study = world["study"]
    body = {
        "lesion": world["values"]["lesion_id"],
        "phase": "unaided",
        "diagnosis": "cyst",
        "confidence": 3,
        "malignancy": 5,
    }
    url = f"/api/studies/{study.public_id}/reads/"
    assert as_role(world, role).post(url, body, content_type="application/json").status_code == want
    assert Read.objects.filter(assignment__study=study).count() == (2 if want == 201 else 1)


READERS = "/admin/studies/reader/"
ASSIGNED = f"302 → {READERS}"  # the action is done: back to the list


@pytest.mark.parametrize(
    ("role", "want"), zip(ROLES, (ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200, ASSIGNED, ASSIGNED), strict=True)
)
def test_readers_are_assigned_through_the_admin_to_administered_studies_only(world, role, want):
    newcomer = new_reader("newcomer")
    data = {"action": "assign_to_study", "_selected_action": [newcomer.pk], "study": world["study"].pk, "apply": "1"}
    response = as_role(world, role).post(READERS, data)
    assert outcome(response, READERS) == want
    assigned = Assignment.objects.filter(study=world["study"], reader=newcomer).exists()
    assert assigned == (want == ASSIGNED)
    if role == "study admin of another study":  # the form offers their own study only, and says so
        page = response.content.decode()
        assert "Select a valid choice" in page and "Omega study" in page and "Alpha study" not in page


STUDY_ROWS = {  # model: the lookup from its row to the row's study
    ReaderStudy: "pk",
    Assignment: "study",
    Read: "assignment__study",
    Disclosure: "assignment__study",
}


@pytest.mark.parametrize("role", STAFF)
def test_admin_lists_show_the_rows_of_administered_studies_only(world, role):
    client = as_role(world, role)
    visible = {
        "study admin of another study": {world["other"]},
        "study admin": {world["study"]},
        "superuser": {world["study"], world["other"]},
    }[role]
    hidden = {world["study"], world["other"]} - visible
    for model, lookup in STUDY_ROWS.items():
        response = client.get(f"/admin/studies/{model._meta.model_name}/")
        rows = response.context["cl"].queryset
        assert set(rows) == set(model.objects.filter(**{f"{lookup}__in": [s.pk for s in visible]})), model
        assert not any(study.name in response.content.decode() for study in hidden), model  # filters included
    events = set(client.get("/admin/audit/auditevent/").context["cl"].queryset)
    ids = {study.public_id for study in visible}  # events about a study: the study's own, and its reads
    about = {e for e in AuditEvent.objects.all() if e.object_id in ids or (e.after or {}).get("study") in ids}
    assert about and events == (set(AuditEvent.objects.all()) if role == "superuser" else about)


def test_a_granted_study_admin_sees_the_study_like_its_owner(world):
    granted = world["users"]["study admin of another study"]
    world["study"].admins.add(granted)
    client = as_role(world, "study admin of another study")
    assert client.get(f"/admin/studies/readerstudy/{world['study'].pk}/change/").status_code == 200
    assert client.get(f"/studies/{world['study'].public_id}/export/reads.csv").status_code == 200


@pytest.mark.parametrize("role", STAFF)
def test_the_audit_export_holds_the_events_the_role_may_see(world, role):
    client = as_role(world, role)
    everything = list(AuditEvent.objects.values_list("pk", flat=True))
    response = client.post("/admin/audit/auditevent/", {"action": "export_csv", "_selected_action": everything})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    seen = set(client.get("/admin/audit/auditevent/").context["cl"].queryset.values_list("object_id", "summary"))
    assert {(row["object_id"], row["summary"]) for row in rows} == seen
    assert (len(rows) == len(everything)) == (role == "superuser")
