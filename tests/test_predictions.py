"""Model versions, queued idempotent predictions with saliency, provenance and pinning — in eager mode, the
embedded default, which runs the same code path as a worker (tests/test_worker.py runs a real one)."""

import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from test_reading import make_reader, new_study
from test_training import one_thread, tiny_config  # noqa: F401 (one_thread: autouse)

from inference.nifti import load_volume
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Lesion
from readerstudy.predictions.dispatch import dispatch, enqueue_predictions, needed_first, sweep
from readerstudy.predictions.models import ModelVersion, Prediction, Saliency, TrainingRun
from readerstudy.predictions.registry import RegistrationError, activate, register_run
from readerstudy.predictions.runner import claim, run_batch
from readerstudy.studies.models import ReaderStudy

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(phantom_subset, media) -> int:
    """Three cases of the tiny cohort imported; returns the lesion count."""
    report = import_dataset(phantom_subset, dataset="tiny")
    assert not report.rejected
    return Lesion.objects.count()


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(run, tmp_path / name))


# --- registration -----------------------------------------------------------------------------------------


def test_register_copies_the_verified_run_into_the_media_store(trained_run, media):
    version = register_run(trained_run, name="tiny-1")

    assert version.folder == media / "models" / "tiny-1" and not version.is_active
    assert sorted(version.checkpoints_sha256) == ["fold-1.pt", "fold-2.pt"]
    assert version.config["model"]["name"] == "tiny" and "folds" in version.metrics
    assert sorted(p.name for p in version.folder.iterdir()) == sorted(
        ["config.json", "metrics.json", "manifest.json", "fold-1.pt", "fold-2.pt"]
    )


def test_a_tampered_run_is_refused_with_the_file_named_and_nothing_stored(trained_run, media, tmp_path):
    copy = copy_run(trained_run, tmp_path)
    with (copy / "fold-2.pt").open("ab") as handle:
        handle.write(b"\0")

    with pytest.raises(CommandError, match=r"refused: .*fold-2\.pt: SHA-256 differs"):
        call_command("register_model", str(copy))
    assert not ModelVersion.objects.exists() and not (media / "models").exists()


def test_an_incomplete_run_is_refused_with_the_reason(trained_run, media, tmp_path):
    copy = copy_run(trained_run, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["fold-2.pt"]
    (copy / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(RegistrationError, match=r"incomplete run, fold-2\.pt not in manifest\.json"):
        register_run(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(RegistrationError, match=r"manifest\.json: missing"):
        register_run(copy)


def test_the_same_run_or_name_cannot_be_registered_twice(trained_run, media, tmp_path):
    register_run(trained_run, name="first")
    with pytest.raises(RegistrationError, match="already registered as 'first'"):
        register_run(copy_run(trained_run, tmp_path), name="second")
    with pytest.raises(RegistrationError, match="'first': a model version of that name"):
        register_run(trained_run, name="first")


# --- predicting -------------------------------------------------------------------------------------------


def test_activation_predicts_every_lesion_with_saliency_on_each_sequence_grid(trained_run, imported, media):
    version = register_run(trained_run, name="tiny")

    assert activate(version) == imported

    predictions = Prediction.objects.filter(model_version=version)
    assert predictions.count() == imported
    assert set(predictions.values_list("status", flat=True)) == {"done"}
    prediction = predictions.select_related("lesion__case").first()
    assert prediction.checkpoints_sha256 == version.checkpoints_sha256
    assert np.isclose(sum(prediction.probabilities), 1.0) and 0 <= prediction.malignant_probability <= 1
    assert prediction.predicted_class == int(np.argmax(prediction.probabilities))
    assert prediction.attempts == 1 and prediction.model_seconds > 0 and "(cpu)" in prediction.worker
    saliencies = list(prediction.saliencies.all())
    assert [s.sequence for s in saliencies] == ["T2WI", "DWI", "ADC", "T1WI", "LAP", "PVP", "DP"]
    assert np.isclose(sum(s.weight for s in saliencies), 1.0)
    for saliency in saliencies:
        heat = load_volume(media / saliency.heatmap.name)
        volume = prediction.lesion.case.volumes.get(sequence=saliency.sequence)
        assert list(heat.shape) == volume.shape and np.allclose(heat.affine, volume.affine, atol=1e-5)
        assert 0 <= saliency.max_area_slice < volume.shape[2]
    assert (media / prediction.panel.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reruns_and_duplicate_messages_never_create_or_recompute_a_prediction(trained_run, imported):
    version = register_run(trained_run, name="tiny")
    activate(version)
    before = dict(Prediction.objects.values_list("pk", "finished_at"))

    assert enqueue_predictions(version) == 0
    dispatch(list(before) * 2)  # the same ids twice: a duplicate message
    assert run_batch(list(before)) == {"done": 0, "failed": 0, "skipped": imported}

    assert dict(Prediction.objects.values_list("pk", "finished_at")) == before
    assert Saliency.objects.count() == 7 * imported


def test_a_done_prediction_is_immutable(trained_run, imported):
    activate(register_run(trained_run, name="tiny"))
    prediction = Prediction.objects.first()
    prediction.predicted_class = (prediction.predicted_class + 1) % 7
    with pytest.raises(ValidationError, match="is done and cannot change"):
        prediction.save()


def test_a_failing_lesion_is_marked_failed_with_the_error_and_the_others_complete(trained_run, imported, media):
    broken = Lesion.objects.order_by("pk")[1]
    mask = broken.masks.get(sequence="PVP")
    (media / mask.file.name).write_bytes(b"not a nifti file")

    activate(register_run(trained_run, name="tiny"))

    failed = Prediction.objects.get(lesion=broken)
    assert failed.status == "failed" and "PVP mask" in failed.error and failed.probabilities is None
    assert Prediction.objects.filter(status="done").count() == imported - 1


def test_a_study_admin_filters_predictions_training_runs_and_versions_by_status(trained_run, imported, media, client):
    from django.contrib.auth import get_user_model

    broken = Lesion.objects.order_by("pk")[0]
    (media / broken.masks.get(sequence="DWI").file.name).write_bytes(b"broken")
    activate(register_run(trained_run, name="tiny"))
    client.force_login(get_user_model().objects.create_superuser("admin1", password="x"))

    page = client.get("/admin/predictions/prediction/?status__exact=failed").content.decode()
    assert "1 prediction" in page and broken.public_id in page
    page = client.get("/admin/predictions/prediction/?status__exact=done").content.decode()
    assert f"{imported - 1} predictions" in page and broken.public_id not in page
    assert "1 model version" in client.get("/admin/predictions/modelversion/?is_active__exact=1").content.decode()
    assert "0 training runs" in client.get("/admin/predictions/trainingrun/?status__exact=running").content.decode()
    assert client.get("/admin/predictions/prediction/add/").status_code == 403


def test_an_imported_case_is_predicted_by_the_active_version(trained_run, phantom_subset, media):
    version = register_run(trained_run, name="tiny")
    activate(version)  # nothing imported yet
    assert not Prediction.objects.exists()

    import_dataset(phantom_subset, dataset="tiny")

    assert Prediction.objects.filter(model_version=version, status="done").count() == Lesion.objects.count() > 0


def test_a_study_keeps_showing_its_pinned_version_after_a_new_activation(trained_run, imported, tmp_path):
    first = register_run(trained_run, name="first")
    activate(first)
    study = ReaderStudy.objects.create(name="pinned")
    assert study.model_version == first

    second = register_run(_retrained(copy_run(trained_run, tmp_path)), name="second")
    activate(second)

    lesion = Lesion.objects.first()
    shown = study.prediction_for(lesion)
    assert shown.model_version == first and shown.checkpoints_sha256 == first.checkpoints_sha256
    assert ReaderStudy.objects.create(name="new").prediction_for(lesion).model_version == second


def _retrained(run_dir: Path) -> Path:
    """The same run with other weights (fold 1 perturbed) and a re-written manifest: a second version."""
    import torch

    from inference.dataset import sha256_file

    state = torch.load(run_dir / "fold-1.pt", weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first] + 0.01
    torch.save(state, run_dir / "fold-1.pt")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["files"]["fold-1.pt"] = sha256_file(run_dir / "fold-1.pt")
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


# --- claims, leases, the sweep ----------------------------------------------------------------------------


@pytest.fixture
def queued(trained_run, imported, settings):
    """Predictions queued but not sent (as after a broker outage): rows only."""
    version = register_run(trained_run, name="tiny")
    Prediction.objects.bulk_create(Prediction(model_version=version, lesion=lesion) for lesion in Lesion.objects.all())
    return list(Prediction.objects.values_list("pk", flat=True))


def test_a_live_claim_is_respected_and_an_expired_one_taken_over(queued, settings):
    first = queued[0]
    assert claim(first) == 1
    assert claim(first) is None  # another worker holds a fresh lease

    Prediction.objects.filter(pk=first).update(started_at=timezone.now() - timedelta(seconds=3600))
    assert claim(first) == 2  # that worker died: the lease expired

    assert run_batch([first]) == {"done": 0, "failed": 0, "skipped": 1}
    Prediction.objects.filter(pk=first).update(started_at=timezone.now() - timedelta(seconds=3600))
    assert run_batch([first])["done"] == 1
    assert Prediction.objects.get(pk=first).attempts == 3


def test_after_too_many_lost_workers_a_prediction_fails_instead_of_looping(queued, settings):
    settings.PREDICTION_MAX_ATTEMPTS = 2
    Prediction.objects.filter(pk=queued[0]).update(
        status="running", attempts=2, started_at=timezone.now() - timedelta(hours=2)
    )
    assert run_batch([queued[0]]) == {"done": 0, "failed": 1, "skipped": 0}
    assert "gave up after 2 attempts" in Prediction.objects.get(pk=queued[0]).error


def test_the_sweep_resends_unsent_and_abandoned_predictions_only(queued, settings):
    Prediction.objects.filter(pk=queued[0]).update(status="running", started_at=timezone.now())  # live worker

    counts = sweep()

    assert counts["predictions"] == len(queued) - 1
    assert Prediction.objects.filter(status="done").count() == len(queued) - 1
    assert Prediction.objects.get(pk=queued[0]).status == "running"


# --- training as a task -----------------------------------------------------------------------------------


def test_train_model_trains_registers_activates_and_predicts(phantom_cohort, imported, tmp_path, capsys):
    tiny_config(tmp_path)
    config_path = next(tmp_path.glob("tiny-*.json"))

    call_command(
        "train_model",
        "--data",
        str(phantom_cohort),
        "--config",
        str(config_path),
        "--name",
        "trained",
        "--activate",
        verbosity=0,
    )

    run = TrainingRun.objects.get()
    assert run.status == "done" and run.epochs_done == run.epochs_total == 4
    version = ModelVersion.objects.get(name="trained")
    assert version.is_active and run.model_version == version
    assert Prediction.objects.filter(model_version=version, status="done").count() == imported

    call_command("train_model", "--data", str(phantom_cohort), "--unless-active", verbosity=0)
    assert TrainingRun.objects.count() == 1 and "trained is active" in capsys.readouterr().out


def test_the_sweep_resumes_a_training_run_whose_worker_went_silent(phantom_cohort, media, tmp_path, settings):
    tiny_config(tmp_path)
    config_path = next(tmp_path.glob("tiny-*.json"))
    silent = timezone.now() - timedelta(seconds=settings.TRAINING_STALE_SECONDS + 60)
    run = TrainingRun.objects.create(
        config_name=str(config_path),
        data_dir=str(phantom_cohort),
        run_dir=str(media / "training" / "resumed"),
        epochs_total=4,
        status="running",
        heartbeat=silent,
    )

    assert sweep()["training_runs"] == 1

    run.refresh_from_db()
    assert run.status == "done" and run.epochs_done == 4 and run.model_version.name == "resumed"
    assert sweep()["training_runs"] == 0


def test_train_model_names_a_bad_dataset_folder(tmp_path, media):
    with pytest.raises(CommandError, match=r"--data .*: no manifest\.csv"):
        call_command("train_model", "--data", str(tmp_path), verbosity=0)


def test_predictions_are_sent_in_the_order_readers_need_their_lesions(eight_lesions):
    """Open studies' lesions first, as their readers meet them (every reader's first, then every second);
    a lesion no open study holds after them, and a closed study's order counts for nothing."""
    version = ModelVersion.objects.create(name="v", config={}, run_path="models/v", files_sha256={}, metrics={})
    rows = {lesion.pk: Prediction.objects.create(model_version=version, lesion=lesion) for lesion in eight_lesions}
    open_study = new_study(eight_lesions[:5], [make_reader("a"), make_reader("b")], name="Open")
    new_study(eight_lesions[::-1], [make_reader("c")], name="Closed", is_open=False)
    first, second = (a.orders[0] for a in open_study.assignments.order_by("pk"))
    interleaved = list(dict.fromkeys(pk for pair in zip(first, second, strict=True) for pk in pair))
    rest = sorted(set(rows) - set(interleaved))
    assert needed_first(Prediction.objects.all()) == [rows[pk].pk for pk in interleaved + rest]
