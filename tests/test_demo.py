"""``make_demo``: the demo cohort goes through the real importer; accounts are created once."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from readerstudy.cases.models import Case, Lesion
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def var(settings, tmp_path, media):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def make_demo(capsys) -> str:
    call_command("make_demo", "--lesions-per-class", "1", "--matrix-scale", "0.25")
    return capsys.readouterr().out


def test_make_demo_imports_the_cohort_and_creates_the_accounts(var, capsys):
    out = make_demo(capsys)

    assert Case.objects.filter(dataset="demo").exists()
    assert sorted(Lesion.objects.values_list("label", flat=True)) == list(range(7))
    assert (var / "demo_dataset" / "manifest.csv").exists()
    groups = sorted(Reader.objects.values_list("group", "user__username"))
    assert groups == [
        ("academic", "academic1"),
        ("academic", "academic2"),
        ("general", "general1"),
        ("general", "general2"),
        ("resident", "resident1"),
        ("resident", "resident2"),
    ]
    admin = get_user_model().objects.get(username="studyadmin")
    assert admin.is_staff and not admin.is_superuser and admin.groups.filter(name=STUDY_ADMINS_GROUP).exists()
    assert admin.has_perm("cases.view_lesion") and not Reader.objects.filter(user=admin).exists()
    credentials = json.loads((var / "demo_credentials.json").read_text())
    assert (var / "demo_credentials.json").stat().st_mode & 0o777 == 0o600
    for username, password in credentials.items():
        assert f"{username:<12} {password}" in out
        assert get_user_model().objects.get(username=username).check_password(password)


def test_make_demo_twice_changes_nothing(var, capsys):
    make_demo(capsys)
    cases, users = Case.objects.count(), get_user_model().objects.count()
    credentials = (var / "demo_credentials.json").read_text()

    out = make_demo(capsys)

    assert "Dataset 'demo' already imported." in out
    assert Case.objects.count() == cases and get_user_model().objects.count() == users
    assert (var / "demo_credentials.json").read_text() == credentials
