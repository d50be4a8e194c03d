"""The study's results: summary tables from simulated reads, the cache, and the study admin's dashboard."""

import io

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from test_reading import make_reader, new_study
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from inference.domain import CLASSES, READER_GROUPS
from readerstudy.analysis.data import reads_frame
from readerstudy.analysis.mrmc import model_vs_readers, or_analysis
from readerstudy.analysis.mrmc_files import read_imrmc, read_rjafroc_xlsx
from readerstudy.analysis.results import mrmc_ratings, summarise
from readerstudy.analysis.summary import results_key, study_results
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Read
from readerstudy.studies.simulation import simulate_reads

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated(predicted):
    readers = [
        make_reader(name, group)
        for name, group in [("res1", "resident"), ("res2", "resident"), ("gen1", "general"), ("aca1", "academic")]
    ]
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
    fleiss = kappa[kappa["comparison"] == "Fleiss"].set_index("a")
    assert fleiss.loc["all readers", "b"] == "4 readers" and fleiss.loc["resident", "n"] == 3
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
    assert results["mrmc"] == {}  # three lesions: too few for MRMC (two benign and two malignant needed)


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
    assert page.count("<svg") == 4 and "Accuracy per reader" in page and "AI effect" in page
    assert "res1" in page and "McNemar" in page and "Cohen" in page
    assert "Subgroups" in page and "Brier score" in page and "cirrhosis" in page
    assert client.get(url + "?phase=aided").status_code == 200
    assert f"/studies/{simulated.public_id}/dashboard/" in client.get("/").content.decode()
    client.force_login(simulated.assignments.first().reader.user)
    assert client.get(url).status_code == 404  # as for a study that does not exist


def synthetic(readers=4, lesions=12, seed=3):
    """Tidy reads (unaided and aided) and a model table, as ``reads_frame`` and ``model_frame`` give them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(lesions) % 7
    malignant = np.isin(labels, [4, 5, 6])
    rows = []
    for r in range(readers):
        for phase, shift in (("unaided", 0), ("aided", 10)):
            for n, label in enumerate(labels):
                diagnosis = label if rng.random() < 0.7 else (label + 1) % 7
                rows.append(
                    {
                        "reader": f"r{r}",
                        "group": READER_GROUPS[r % 3],
                        "lesion": f"L{n}",
                        "phase": phase,
                        "label_index": label,
                        "diagnosis_index": diagnosis,
                        "label_malignant": malignant[n],
                        "diagnosis_malignant": diagnosis >= 4,
                        "correct": diagnosis == label,
                        "correct_malignant": (diagnosis >= 4) == malignant[n],
                        "diameter_mm": 10.0 + 3 * n,
                        "cirrhosis": n % 2 == 0,
                        "fatty_liver": n % 3 == 0,
                        "scanner_model": "Prisma",
                        "malignancy": float(
                            np.clip(50 + (30 + shift) * (2 * malignant[n] - 1) + rng.normal(0, 25), 0, 100)
                        ),
                    }
                )
    p = rng.dirichlet(np.ones(7), lesions)
    model = pd.DataFrame(
        {
            "lesion": [f"L{n}" for n in range(lesions)],
            "label_index": labels,
            "model_class": [CLASSES[i] for i in p.argmax(1)],
            "model_p_malignant": p[:, 4:].sum(1),
            **{f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)},
        }
    )
    model["model_malignant"] = model["model_p_malignant"] > 0.5
    model["model_correct"] = model["model_class"].map(CLASSES.index) == labels
    model["model_correct_malignant"] = model["model_malignant"] == malignant
    return pd.DataFrame(rows).merge(model[["lesion", "model_correct"]], on="lesion"), model


def test_the_mrmc_sections_are_the_or_analyses_of_the_crossed_ratings():
    reads, model = synthetic()
    results = summarise(reads, model)
    by_phase = [
        reads[reads["phase"] == phase].pivot_table(index="reader", columns="lesion", values="malignancy")
        for phase in ("unaided", "aided")
    ]
    ratings = np.stack([table.to_numpy() for table in by_phase], axis=1)  # readers and lesions sorted by name
    truth = model.set_index("lesion").sort_index()["label_index"].isin([4, 5, 6]).to_numpy()
    expected = or_analysis(ratings, truth)
    assert results["mrmc"]["aided_vs_unaided"].rrrc.test.f == pytest.approx(expected.rrrc.test.f)
    scores = model.set_index("lesion").sort_index()["model_p_malignant"].to_numpy()
    direct = model_vs_readers(ratings[:, 0, :], scores, truth)
    assert results["mrmc"]["model_vs_readers"].difference.p == pytest.approx(direct.difference.p)
    assert results["mrmc"]["aided_vs_unaided"].auc.mean() > 0.5


def test_the_report_lays_out_tables_3_and_4_and_figures_2_to_4(client, simulated):
    client.force_login(simulated.owner)
    page = client.get(f"/studies/{simulated.public_id}/report/").content.decode()
    for heading in ("Table 3.", "Figure 2.", "Figure 3.", "Figure 4.", "Table 4."):
        assert heading in page
    assert page.count("<svg") == 3 and "benign vs malignant" in page and "res1 – res2" in page


def test_the_mrmc_files_carry_every_reader_and_phase_of_the_malignancy_likelihood(client, simulated):
    client.force_login(simulated.owner)
    expected, truth, *_ = mrmc_ratings(reads_frame(simulated), ("unaided", "aided"))
    imrmc = read_imrmc(client.get(f"/studies/{simulated.public_id}/export/malignancy.imrmc").content.decode())
    rjafroc = read_rjafroc_xlsx(client.get(f"/studies/{simulated.public_id}/export/malignancy.xlsx").content)
    for data in (imrmc, rjafroc):
        assert data.readers == ["aca1", "gen1", "res1", "res2"] and data.modalities == ["unaided", "aided"]
        assert np.array_equal(data.ratings, expected) and np.array_equal(data.truth, truth)


def test_the_results_api_gives_the_dashboards_numbers_to_the_study_admin_only(client, simulated):
    url = f"/api/studies/{simulated.public_id}/results/"
    client.force_login(simulated.owner)
    body = client.get(url).json()
    html_results = study_results(simulated)
    assert [r["reader"] for r in body["readers"]] == list(html_results["readers"]["reader"])
    assert body["readers"][0]["accuracy"] == pytest.approx(html_results["readers"]["accuracy"].iloc[0])
    assert body["model"]["accuracy"]["estimate"] == pytest.approx(html_results["model"]["accuracy"].estimate)
    assert len(body["model"]["confusion"]) == 7 and body["n_reads"] == 24
    client.force_login(simulated.assignments.first().reader.user)
    assert client.get(url).status_code == 404  # as for a study that does not exist


def test_numbers_on_the_results_pages_show_a_dash_where_missing():
    from readerstudy.analysis.templatetags.analysis import num, pct, pvalue

    assert pct(0.8214) == "82.1 %" and num(0.12345, 2) == "0.12" and pvalue(0.0004) == "< 0.001"
    assert pct(float("nan")) == num(None) == pvalue(float("nan")) == "–"


def test_the_results_workbook_holds_every_table_and_each_readers_confusion_matrix(client, simulated):
    client.force_login(simulated.owner)
    response = client.get(f"/studies/{simulated.public_id}/export/results.xlsx")
    sheets = pd.read_excel(io.BytesIO(response.content), sheet_name=None)
    assert {"readers", "groups", "model (Table 3)", "confusion matrices", "kappa", "mrmc", "subgroups"} <= set(sheets)
    confusion = sheets["confusion matrices"]
    assert set(confusion["who"]) == {"model", "resident", "general", "academic", "res1", "res2", "gen1", "aca1"}
    assert confusion.groupby("who")["count"].sum().to_dict()["res1"] == 3
    table3 = sheets["model (Table 3)"].set_index("task")
    assert {"sensitivity", "sensitivity_low", "sensitivity_high", "auc"} <= set(table3.columns)
    assert len(table3) == 8 and "benign vs malignant" in table3.index
