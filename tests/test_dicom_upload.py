"""The admin's DICOM import: zip safety, the upload → proposal → import pages, who may use them."""

import io
import re
import stat
import tempfile
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from readerstudy.audit.models import AuditEvent
from readerstudy.cases.dicom.upload import STAGING_FOLDER, UploadError, unpack_zip
from readerstudy.cases.models import Case
from tests.dicom_builder import labels_for, phantom_cohort, write_vendor_exams

UPLOAD = reverse("admin:cases_dicom_upload")


def zipped(entries: dict[str, bytes], link: str | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("entries", "link", "message"),
    [
        ({"ok/a.dcm": b"x", "../evil.dcm": b"x"}, None, "../evil.dcm: absolute paths and '..' are not accepted"),
        ({"a/../../evil": b"x"}, None, "a/../../evil: absolute paths and '..' are not accepted"),
        ({"/etc/evil": b"x"}, None, "/etc/evil: absolute paths and '..' are not accepted"),
        ({"C:\\evil": b"x"}, None, "C:\\evil: absolute paths and '..' are not accepted"),
        ({"ok/a.dcm": b"x"}, "ok/link", "ok/link: links are not accepted"),
        ({"a.dcm": b"x" * 600, "b.dcm": b"x" * 600}, None, "the unpacked files exceed the limit of 1,000 bytes"),
    ],
)
def test_unsafe_zips_are_refused_and_nothing_is_left(entries, link, message, tmp_path):
    with pytest.raises(UploadError) as refused:
        unpack_zip(zipped(entries, link), tmp_path, max_bytes=1000)
    assert str(refused.value) == message
    assert not list(tmp_path.iterdir()) and not (tmp_path.parent / "evil.dcm").exists()


def test_a_zip_bomb_stops_at_the_limit(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.dcm", b"\0" * 10_000_000)
    assert buffer.tell() < 20_000
    with pytest.raises(UploadError, match="exceed the limit of 1,000,000 bytes"):
        unpack_zip(buffer, tmp_path, max_bytes=1_000_000)
    assert not list(tmp_path.iterdir())


def test_not_a_zip_is_refused(tmp_path):
    with pytest.raises(UploadError, match="not a zip file"):
        unpack_zip(io.BytesIO(b"PK nonsense"), tmp_path, max_bytes=1000)


@pytest.fixture(scope="module")
def ge_upload(tmp_path_factory):
    """A zip of one GE exam and its labels.csv."""
    cohort = phantom_cohort(tmp_path_factory)
    root = tmp_path_factory.mktemp("upload") / "export"
    exams = write_vendor_exams(root, cohort, vendors=("GE",))
    labels = labels_for(root.parent / "labels.csv", cohort, exams).read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root))
    return buffer.getvalue(), labels


@pytest.fixture
def staging(tmp_path, monkeypatch):
    """Staged uploads go under tmp_path; returns their folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / STAGING_FOLDER


def upload(client, ge_upload, dataset="pacs"):
    archive, labels = ge_upload
    return client.post(
        UPLOAD,
        {
            "archive": SimpleUploadedFile("exams.zip", archive),
            "labels": SimpleUploadedFile("labels.csv", labels),
            "dataset": dataset,
        },
    )


@pytest.mark.django_db
def test_upload_shows_the_mapping_with_reasons_then_imports_it(client, study_admin, ge_upload, staging, media):
    assert f'href="{UPLOAD}"' in client.get(reverse("admin:cases_case_changelist")).content.decode()
    response = upload(client, ge_upload)
    assert response.status_code == 302
    page = client.get(response.url)
    html = page.content.decode()
    (name,) = re.findall(r'name="import-(dicom-[0-9a-f]+)"', html)
    assert "b = 800 s/mm²" in html and "passed over" not in html
    assert re.search(rf'name="map-{name}-DP".*?<option value="7:t4" selected>', html, re.S)
    assert "the first series 120-600 s after the first post-contrast one" in html

    form = {
        f"map-{name}-{s}": v
        for s, v in (
            ("T2WI", "3"),
            ("DWI", "5:b800"),
            ("ADC", "500"),
            ("T1WI", "7:t1"),
            ("LAP", "7:t2"),
            ("PVP", "7:t3"),
            ("DP", "7:t4"),
        )
    }
    done = client.post(response.url, {**form, f"import-{name}": "1", "import": "Import"})

    assert "Imported 1 exam(s) with 1 lesion(s)" in done.content.decode()
    case = Case.objects.get()
    assert case.dataset == "pacs" and case.source_name == name and case.lesions.count() == 1
    assert AuditEvent.objects.filter(object_id=case.public_id).count() == 2  # imported; its DICOM mapping
    assert AuditEvent.objects.get(summary__contains="from DICOM").actor == study_admin
    assert not list(staging.iterdir())  # the upload is gone once imported
    assert client.get(response.url).status_code == 404


@pytest.mark.django_db
def test_a_broken_mapping_is_reported_and_nothing_is_imported(client, study_admin, ge_upload, staging, media):
    response = upload(client, ge_upload)
    html = client.get(response.url).content.decode()
    (name,) = re.findall(r'name="import-(dicom-[0-9a-f]+)"', html)
    done = client.post(response.url, {f"map-{name}-T2WI": "4", f"import-{name}": "1", "import": "Import"})
    assert "DWI: no series chosen" in done.content.decode() and not Case.objects.exists()


@pytest.mark.django_db
def test_discard_removes_the_upload(client, study_admin, ge_upload, staging):
    response = upload(client, ge_upload)
    assert len(list(staging.iterdir())) == 1
    assert client.post(response.url, {"discard": "Discard"}).url == UPLOAD
    assert not list(staging.iterdir()) and not Case.objects.exists()


@pytest.mark.django_db
def test_another_session_cannot_use_the_upload(client, study_admin, ge_upload, staging):
    response = upload(client, ge_upload)
    other = get_user_model().objects.create_user("admin2", password="x", is_staff=True, is_superuser=True)
    client.force_login(other)
    assert client.get(response.url).status_code == 404


@pytest.mark.django_db
def test_an_oversized_or_unsafe_upload_is_refused_with_the_reason(client, study_admin, ge_upload, staging, settings):
    settings.DICOM_UPLOAD_MAX_BYTES = 1000
    response = upload(client, ge_upload)
    assert response.status_code == 200 and "the limit is 1,000 bytes" in response.content.decode()
    settings.DICOM_UPLOAD_MAX_BYTES = 10**6
    evil = zipped({"../x.dcm": b"x"}).getvalue()
    response = upload(client, (evil, ge_upload[1]))
    assert "../x.dcm: absolute paths and &#x27;..&#x27; are not accepted" in response.content.decode()
    assert not list(staging.iterdir())


@pytest.mark.django_db
def test_only_staff_with_the_cases_add_permission_may_import(client, ge_upload, staging):
    assert client.get(UPLOAD).status_code == 302  # to the admin login
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(UPLOAD).status_code == 403
    assert upload(client, ge_upload).status_code == 403 and not staging.exists()
    mapping = reverse("admin:cases_dicom_mapping", args=["0" * 32])
    assert client.get(mapping).status_code == 403
