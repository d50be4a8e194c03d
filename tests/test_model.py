"""The seven-branch multitask network and its configs (no Django, no data)."""

import json

import pytest
import torch
from torch.nn import functional

from inference.config import CONFIG_DIR, Config, load_config
from inference.domain import CLASSES, SEQUENCES
from inference.model import (
    BINARY_SEQUENCES,
    MALIGNANT_INDICES,
    SEVEN_WAY_SEQUENCES,
    LiverLesionNet,
    count_parameters,
    multitask_loss,
    select_device,
)

# Measured with torch 2.13.0 / MONAI 1.6.1; docs/machines.md: ≈ 235 M full width, 15.2 M quarter width.
PARAMETERS = {"paper": 234_904_201, "cpu": 3_966_137}  # as stated in the README
FULL_WIDTH_BRANCH_PARAMETERS = 33_182_848


@pytest.fixture(scope="module")
def cpu_model() -> LiverLesionNet:
    torch.manual_seed(0)
    return LiverLesionNet(load_config("cpu").model).eval()


@pytest.fixture(scope="module")
def paper_model() -> LiverLesionNet:
    torch.manual_seed(0)
    return LiverLesionNet(load_config("paper").model)


def lesions(model: LiverLesionNet, batch: int = 2, seed: int = 1) -> torch.Tensor:
    size = model.config.input_size
    return torch.rand(batch, len(SEQUENCES), 2, size, size, size, generator=torch.Generator().manual_seed(seed))


# --- configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_named_config_round_trips_through_to_dict(name, tmp_path):
    config = load_config(name)
    assert config.model.name == name
    assert config.to_dict() == json.loads((CONFIG_DIR / f"{name}.json").read_text())
    written = tmp_path / "run" / "config.json"
    written.parent.mkdir()
    written.write_text(json.dumps(config.to_dict()))
    assert load_config(written) == config
    assert load_config(str(written)) == config


def test_paper_config_is_the_papers_network():
    model = load_config("paper").model
    assert (model.input_size, model.widen_factor) == (64, 1.0)
    assert load_config("paper").training.folds == 5


def broken_config(tmp_path, edit) -> str:
    data = load_config("cpu").to_dict()
    edit(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["model"].pop("widen_factor"), "missing key 'model.widen_factor'"),
        (lambda d: d["training"]["augmentation"].pop("noise_std"), "missing key 'training.augmentation.noise_std'"),
        (lambda d: d["model"].update(width=2), "unknown key 'model.width'"),
        (lambda d: d.update(optimiser="sgd"), "unknown key 'optimiser'"),
        (lambda d: d["training"].update(epochs="ten"), "key 'training.epochs' must be int"),
        (lambda d: d["training"].update(batch_size=True), "key 'training.batch_size' must be int"),
        (lambda d: d["training"]["augmentation"].update(scale_range=[1.1]), "'training.augmentation.scale_range'"),
        (lambda d: d["training"].update(batch_size=1), "batch_size must be ≥ 2"),
        (lambda d: d["model"].update(dropout=1.0), "dropout must be in [0, 1)"),
        (lambda d: d.pop("saliency"), "missing key 'saliency'"),
        (lambda d: d["saliency"].update(method="gradcam"), "saliency method must be one of occlusion, grad-cam"),
        (lambda d: d["saliency"].update(occlusion_block=5), "occlusion_block must be ≥ 1 and divide input_size 32"),
    ],
)
def test_config_errors_name_the_key_and_the_file(tmp_path, edit, message):
    path = broken_config(tmp_path, edit)
    with pytest.raises(ValueError) as error:
        load_config(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_unknown_config_name_lists_the_named_configs():
    with pytest.raises(ValueError, match=r"no_such\.json: no such config file .*cpu, paper"):
        load_config("no_such")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        load_config(path)


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        load_config("cpu").model.input_size = 16  # type: ignore[misc]
    assert isinstance(load_config("cpu"), Config)


# --- network -------------------------------------------------------------------------------------------


def test_parameter_counts(cpu_model, paper_model):
    assert count_parameters(cpu_model) == pytest.approx(PARAMETERS["cpu"], rel=1e-3)
    assert count_parameters(paper_model) == pytest.approx(PARAMETERS["paper"], rel=1e-3)
    assert count_parameters(paper_model) == pytest.approx(235e6, rel=0.01)
    assert count_parameters(paper_model.branches[0]) == pytest.approx(FULL_WIDTH_BRANCH_PARAMETERS, rel=1e-3)


@pytest.mark.parametrize("model_fixture", ["cpu_model", "paper_model"])
def test_outputs_are_float_logits_for_both_tasks(request, model_fixture):
    model = request.getfixturevalue(model_fixture).eval()
    x = lesions(model)
    with torch.no_grad():
        features = model.branch_features(x)
        binary, seven_way = model(x)
    assert features.shape == (2, len(SEQUENCES), model.feature_size)
    assert model.feature_size == int(512 * model.config.widen_factor)
    assert binary.shape == (2, 2) and seven_way.shape == (2, len(CLASSES))
    assert binary.dtype == seven_way.dtype == torch.float32
    assert torch.isfinite(binary).all() and torch.isfinite(seven_way).all()


def test_one_fourteen_channel_image_is_the_same_input(cpu_model):
    x = lesions(cpu_model)
    with torch.no_grad():
        stacked = cpu_model(x)
        flat = cpu_model(x.flatten(start_dim=1, end_dim=2))
    assert all(torch.equal(a, b) for a, b in zip(stacked, flat, strict=True))


@pytest.mark.parametrize("shape", [(2, 7, 32, 32, 32), (2, 6, 2, 32, 32, 32), (2, 7, 1, 32, 32, 32)])
def test_wrong_input_shape_is_refused(cpu_model, shape):
    with pytest.raises(ValueError, match="expected input"):
        cpu_model(torch.zeros(shape))


def test_eval_mode_is_deterministic(cpu_model):
    x = lesions(cpu_model)
    with torch.no_grad():
        first, second = cpu_model(x), cpu_model(x)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_heads_read_own_sequences_then_f_all(cpu_model):
    seen = {}

    def record(name):
        return lambda module, inputs: seen.__setitem__(name, inputs[0].detach())

    hooks = [
        cpu_model.binary_head[0].register_forward_pre_hook(record("binary")),
        cpu_model.seven_way_head[0].register_forward_pre_hook(record("seven_way")),
    ]
    try:
        with torch.no_grad():
            features = cpu_model.branch_features(lesions(cpu_model))
            cpu_model.heads(features)
    finally:
        for hook in hooks:
            hook.remove()

    def feature(name):
        return features[:, SEQUENCES.index(name)]

    f_all = torch.cat([feature(name) for name in SEQUENCES], dim=1)
    assert torch.equal(seen["binary"], torch.cat([*map(feature, ("T2WI", "DWI", "ADC")), f_all], dim=1))
    assert torch.equal(seen["seven_way"], torch.cat([*map(feature, ("LAP", "PVP", "DP")), f_all], dim=1))
    assert BINARY_SEQUENCES == ("T2WI", "DWI", "ADC") and SEVEN_WAY_SEQUENCES == ("LAP", "PVP", "DP")


@pytest.mark.parametrize(
    ("sequence", "head", "other_head"),
    [("T2WI", "seven_way_head", "binary_head"), ("LAP", "binary_head", "seven_way_head")],
)
def test_other_heads_sequence_reaches_a_head_only_through_f_all(sequence, head, other_head):
    torch.manual_seed(0)
    model = LiverLesionNet(load_config("cpu").model).eval()
    x = lesions(model)
    perturbed = x.clone()
    perturbed[:, SEQUENCES.index(sequence)] += torch.rand_like(perturbed[:, 0])
    outputs = {"binary_head": 0, "seven_way_head": 1}

    def changed():
        with torch.no_grad():
            before, after = model(x), model(perturbed)
        return {name: not torch.equal(before[i], after[i]) for name, i in outputs.items()}

    assert changed() == {head: True, other_head: True}
    own_sequences = SEVEN_WAY_SEQUENCES if head == "seven_way_head" else BINARY_SEQUENCES
    start = (len(own_sequences) + SEQUENCES.index(sequence)) * model.feature_size
    with torch.no_grad():
        getattr(model, head)[0].weight[:, start : start + model.feature_size] = 0
    assert changed() == {head: False, other_head: True}


def test_multitask_loss_is_seven_way_plus_weighted_binary_cross_entropy():
    seven_way = torch.tensor([[2.0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1.0, 0], [0, 0, 0, 3.0, 0, 0, 0]])
    binary = torch.tensor([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 5, 3])  # cyst, ICC, abscess
    expected_seven = functional.cross_entropy(seven_way, labels)
    expected_binary = functional.cross_entropy(binary, torch.tensor([0, 1, 0]))
    loss = multitask_loss(binary, seven_way, labels, binary_weight=0.5)
    assert loss.shape == ()
    assert loss.item() == pytest.approx((expected_seven + 0.5 * expected_binary).item())
    assert multitask_loss(binary, seven_way, labels, 0.0).item() == pytest.approx(expected_seven.item())
    assert [CLASSES[i] for i in MALIGNANT_INDICES] == ["HCC", "ICC", "metastasis"]


def test_select_device_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cuda"


def test_paper_network_takes_a_training_step_on_the_cpu(paper_model):
    """Full width at 64³, batch 2 (≈ 3 s per lesion on 2 cores): the paper config is never untested."""
    model = paper_model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    watched = {
        "first branch stem": model.branches[0].conv1.weight,
        "last branch last block": model.branches[-1].layer4[-1].conv2.weight,
        "binary head": model.binary_head[0].weight,
        "seven-way head": model.seven_way_head[-1].weight,
    }
    before = {name: weight.detach().clone() for name, weight in watched.items()}
    binary, seven_way = model(lesions(model, batch=2))
    loss = multitask_loss(binary, seven_way, torch.tensor([1, 4]), binary_weight=1.0)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert [name for name, weight in watched.items() if torch.equal(weight, before[name])] == []
