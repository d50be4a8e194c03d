"""The home page and the admin pages a study admin browses imported data with."""

import re

import pytest
from django.contrib.auth import get_user_model

from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Case
from readerstudy.studies.models import Reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(dataset, media):
    dataset.add_case("C1", lesions=(("L1", "HCC"),)).add_case(
        "C2", patient="P2", lesions=(("L1", "cyst"),), split="test"
    ).write_manifest()
    import_dataset(dataset.root, dataset="trial")


@pytest.fixture
def reader(client):
    user = get_user_model().objects.create_user("res1", password="x")
    Reader.objects.create(user=user, group="resident", years_of_experience=2)
    client.force_login(user)
    return user


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/accounts/login/").status_code == 200


def test_login_with_the_form_reaches_home(client):
    get_user_model().objects.create_user("res2", password="a-long-demo-password")
    response = client.post("/accounts/login/", {"username": "res2", "password": "a-long-demo-password"}, follow=True)
    assert response.status_code == 200 and b"Welcome, res2" in response.content


def test_reader_home_shows_their_group_and_nothing_of_the_cohort(client, reader, imported):
    page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", client.get("/").content.decode())  # random
    assert "resident" in page and "2 years" in page
    assert "Cohort" not in page and "C1" not in page and "trial" not in page
    assert client.get("/admin/").status_code == 302  # not staff: sent to the admin login


def test_study_admin_home_counts_the_cohort(client, study_admin, imported):
    page = client.get("/").content.decode()
    assert "2 cases imported" in page
    assert "<td>Development</td><td>1</td>" in page and "<td>Test</td><td>1</td>" in page
    assert "<td>trial</td><td>2</td>" in page


@pytest.mark.parametrize(
    ("url", "count"),
    [
        ("/admin/cases/patient/?cirrhosis__exact=0", "2 patients"),
        ("/admin/cases/case/?dataset=trial", "2 cases"),
        ("/admin/cases/sequencevolume/?sequence=DWI", "2 sequence volumes"),
        ("/admin/cases/lesion/?label__exact=4&split__exact=development", "1 lesion"),
        ("/admin/cases/lesionmask/?sequence=ADC", "2 lesion masks"),
        ("/admin/studies/reader/?group__exact=resident", "0 readers"),
    ],
)
def test_study_admin_browses_imported_data_with_filters(client, study_admin, imported, url, count):
    response = client.get(url)
    assert response.status_code == 200 and count in response.content.decode()


def test_lesion_admin_filter_narrows_by_label(client, study_admin, imported):
    page = client.get("/admin/cases/lesion/?label__exact=4").content.decode()
    assert "trial/C1/L1" in page and "trial/C2/L1" not in page


def test_cases_cannot_be_added_by_hand_in_the_admin(client, study_admin):
    assert client.get("/admin/cases/case/add/").status_code == 403


def test_case_and_lesion_pages_show_volumes_and_masks_read_only(client, study_admin, imported):
    case = Case.objects.get(source_name="C1")
    page = client.get(f"/admin/cases/case/{case.pk}/change/").content.decode()
    for sequence in ("T2WI", "DWI", "ADC", "T1WI", "LAP", "PVP", "DP"):
        assert re.search(rf'field-sequence">\s*<p>{sequence}</p>', page)
    lesion = case.lesions.get()
    page = client.get(f"/admin/cases/lesion/{lesion.pk}/change/").content.decode()
    assert len(re.findall(r'field-voxel_count">\s*<p>64</p>', page)) == 7
