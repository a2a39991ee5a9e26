"""PS-KD (train.self_distill=pskd): the alpha schedule, the per-sample prediction table, its
checkpoint round trip, a fit on digits, and the config/search validation."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from components.data.reader import read_split
from components.models import SoftTargetsError
from components.search.space import apply_train_overrides, tune_space
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec, load_state, load_weights
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.pskd import PSKDTargets, alpha_at


def test_alpha_grows_linearly_to_alpha_T():
    assert [alpha_at(0.8, t, 4) for t in (1, 2, 3, 4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])


def test_targets_mix_the_label_with_last_epoch_predictions():
    table = PSKDTargets(torch.tensor([5, 1, 9]), num_classes=3, alpha_T=0.6, epochs=3)
    y, ids = torch.tensor([2, 0]), torch.tensor([9, 1])
    table.start_epoch(1)
    # Nothing recorded yet: the one-hot label, whatever alpha is.
    torch.testing.assert_close(table(None, y, ids), F.one_hot(y, 3).float())
    p = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    table.record(ids, p)
    assert table.start_epoch(2) == pytest.approx(0.4)
    expected = 0.6 * F.one_hot(y, 3).float() + 0.4 * p
    torch.testing.assert_close(table(None, y, ids), expected)
    with pytest.raises(KeyError, match=r"\[7\]"):
        table(None, y, torch.tensor([9, 7]))


def test_table_state_restores_each_shard_its_own_rows():
    full = PSKDTargets(torch.arange(6), num_classes=2, alpha_T=0.8, epochs=2)
    probs = torch.softmax(torch.randn(6, 2), dim=1)
    full.record(torch.arange(6), probs)
    full.start_epoch(2)
    state = full.state_dict()
    odd = PSKDTargets(torch.tensor([1, 3, 5]), num_classes=2, alpha_T=0.8, epochs=2)
    odd.load_state_dict(state)
    y = torch.tensor([0, 1, 0])
    torch.testing.assert_close(odd(None, y, torch.tensor([1, 3, 5])), full(None, y, odd.ids))
    with pytest.raises(ValueError, match="3 classes"):
        PSKDTargets(torch.arange(6), 3, 0.8, 2).load_state_dict(state)


@pytest.fixture(scope="module")
def digits(digits_dataset):
    x, y = read_split(digits_dataset, "train")
    vx, vy = read_split(digits_dataset, "val")
    return torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(vx), torch.as_tensor(vy)


def _fit(digits, cfg, *, name="mlp", keep=None, resume_from=None):
    x, y, vx, vy = digits
    spec = ModelSpec(name=name, input_shape=tuple(x.shape[1:]), num_classes=10, tiny=True)
    torch.manual_seed(cfg.seed)
    model = spec.build()
    resume = None
    if resume_from is not None:
        load_weights(resume_from, model)
        resume = load_state(resume_from)
    train = ShardBatches(x, y, batch_size=64, shuffle=True, with_ids=cfg.self_distill == "pskd")
    val = ShardBatches(vx, vy, batch_size=512, shuffle=False)

    def report(metrics, folder):
        if keep is not None and folder is not None and metrics["epoch"] == 1:
            shutil.copytree(folder, keep)

    state = fit(model, train, val, cfg=cfg, spec=spec, report=report, resume=resume)
    return model, state


def test_pskd_fit_on_digits_schedules_alpha_and_resumes_exactly(digits, tmp_path):
    cfg = TrainConfig(
        epochs=3, lr=0.01, early_stopping_patience=0, self_distill="pskd", pskd={"alpha_T": 0.6}
    )
    model, state = _fit(digits, cfg, keep=tmp_path / "epoch1")
    assert [h["pskd_alpha"] for h in state.history] == pytest.approx([0.2, 0.4, 0.6])
    assert state.history[-1]["val_accuracy"] >= 0.9
    saved = load_state(tmp_path / "epoch1")["pskd"]
    assert len(saved["ids"]) == len(digits[1])  # every training sample's row
    torch.testing.assert_close(saved["table"].sum(1), torch.ones(len(digits[1])))
    # The first epoch trains on the one-hot labels: the loss of plain cross-entropy (up to
    # rounding); the second on the model's own predictions: another loss.
    plain = TrainConfig(epochs=2, lr=0.01, early_stopping_patience=0)
    _, plain_state = _fit(digits, plain)
    first, second = (
        abs(p["train_ce"] - h["train_ce"])
        for p, h in zip(plain_state.history, state.history[:2], strict=True)
    )
    assert first < 1e-6 and second > 1e-2
    resumed, resumed_state = _fit(digits, cfg, resume_from=tmp_path / "epoch1")
    assert [h["train_ce"] for h in resumed_state.history] == [h["train_ce"] for h in state.history]
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_pskd_refuses_a_model_without_cross_entropy(digits):
    cfg = TrainConfig(epochs=1, self_distill="pskd")
    with pytest.raises(SoftTargetsError, match="TELL .*unsupervised"):
        _fit(digits, cfg, name="tell")


def test_pskd_needs_batches_with_sample_ids(digits):
    x, y, vx, vy = digits
    spec = ModelSpec(name="mlp", input_shape=(64,), num_classes=10, tiny=True)
    cfg = TrainConfig(epochs=1, self_distill="pskd")
    train = ShardBatches(x, y, batch_size=64, shuffle=True)
    with pytest.raises(ValueError, match="with_ids=True"):
        fit(spec.build(), train, train, cfg=cfg, spec=spec, report=lambda *_: None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"self_distill": "kd"}, "train.self_distill='kd'"),
        ({"pskd": {"alpha_T": 1.5}}, r"train.pskd.alpha_T=1.5 \(a weight in \[0, 1\]\)"),
        ({"pskd": {"alpha": 0.5}}, r"unknown key\(s\) train.pskd.alpha; valid: \['alpha_T'\]"),
    ],
)
def test_bad_self_distill_config_is_named(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_alpha_T_is_a_search_dimension():
    space = {"train": {"pskd": {"alpha_T": {"type": "uniform", "low": 0.3, "high": 0.9}}}}
    assert list(tune_space(space)) == ["train.pskd.alpha_T"]
    cfg = apply_train_overrides(TrainConfig(self_distill="pskd"), {"train.pskd.alpha_T": 0.6})
    assert cfg.pskd.alpha_T == 0.6 and cfg.self_distill == "pskd"
    with pytest.raises(ValueError, match="alpha_T=2"):
        apply_train_overrides(TrainConfig(), {"train.pskd.alpha_T": 2})


def test_the_pipeline_refuses_pskd_for_a_model_without_cross_entropy():
    from components.models import create_model
    from flows.config import ConfigError
    from flows.pipeline import check_self_distillable

    cbc = create_model("cbc", input_shape=(64,), num_classes=10, tiny=True)
    with pytest.raises(ConfigError, match="self_distill=pskd: model CBC .*margin"):
        check_self_distillable(cbc)
