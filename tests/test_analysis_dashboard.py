"""The study's results: summary tables from simulated reads, the cache, and the study admin's dashboard."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from test_reading import make_reader, new_study
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from readerstudy.analysis.data import reads_frame
from readerstudy.analysis.summary import results_key, study_results
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Read
from readerstudy.studies.simulation import simulate_reads

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated(predicted):
    readers = [make_reader(name, group) for name, group in
               [("res1", "resident"), ("res2", "resident"), ("gen1", "general"), ("aca1", "academic")]]  # fmt: skip
    study = new_study(predicted, readers, design="sequential", is_open=False)
    simulate_reads(study)
    owner = get_user_model().objects.create_user("owner", password="x", is_staff=True)
    owner.groups.add(Group.objects.create(name=STUDY_ADMINS_GROUP))
    study.owner = owner
    study.save()
    return study


def test_the_summary_tables_agree_with_the_reads(simulated):
    results = study_results(simulated)
    reads = reads_frame(simulated)
    unaided = reads[reads["phase"] == "unaided"]
    for row in results["readers"].itertuples():
        mine = unaided[unaided["reader"] == row.reader]
        assert row.n == len(mine) == 3 and row.accuracy == pytest.approx(mine["correct"].mean())
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
    residents = results["groups"].set_index("group").loc["resident"]
    assert residents.readers == 2 and residents.pooled_accuracy == pytest.approx(
        unaided.loc[unaided["group"] == "resident", "correct"].mean()
    )
    kappa = results["kappa"]
    assert list(kappa.loc[kappa["comparison"] == "within group", ["a", "b"]].itertuples(index=False)) == [
        ("res1", "res2")
    ]
    effect = results["ai_effect"].set_index("who")
    counts = ["wrong_to_right", "right_to_wrong", "unchanged_right", "unchanged_wrong"]
    assert (effect.loc[["res1", "res2", "gen1", "aca1"], counts].sum(axis=1) == 3).all()
    assert effect.loc["resident", counts].sum() == 6
    comparisons = results["comparisons"]
    assert set(comparisons.loc[comparisons["level"] == "reader", "who"]) == {"res1", "res2", "gen1", "aca1"}
    assert results["model"]["n"] == 3 and results["model"]["confusion"].sum() == 3


def test_the_cached_results_follow_new_reads(simulated):
    key = results_key(simulated, "unaided")
    assert not study_results(simulated)["ai_effect"].empty and cache.get(key) is not None
    Read.objects.filter(assignment__study=simulated, phase="aided").delete()
    assert results_key(simulated, "unaided") != key  # a new data version: recomputed
    assert study_results(simulated)["ai_effect"].empty


def test_the_dashboard_is_the_study_admins_and_draws_its_figures(client, simulated):
    url = f"/studies/{simulated.public_id}/dashboard/"
    client.force_login(simulated.owner)
    page = client.get(url).content.decode()
    assert page.count("<svg") == 3 and "Accuracy per reader" in page and "AI effect" in page
    assert "res1" in page and "McNemar" in page and "Cohen" in page
    assert client.get(url + "?phase=aided").status_code == 200
    assert f"/studies/{simulated.public_id}/dashboard/" in client.get("/").content.decode()
    client.force_login(simulated.assignments.first().reader.user)
    assert client.get(url).status_code == 404
