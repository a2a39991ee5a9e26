"""The pure fit loop: reporting, seeded determinism, exact resume, early stopping."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec, load_model, load_state, load_weights
from components.training.config import TrainConfig
from components.training.fit import DivergedError, fit
from components.training.optim import lr_factor
from components.training.ray_trainer import best_epoch_scope

SPEC = ModelSpec(name="mlp", input_shape=(8,), num_classes=3, tiny=True)


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 8-D."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(0, 4, (3, 8))
    return (centers[y] + rng.normal(0, 1, (n, 8))).astype(np.float32), y.astype(np.int64)


def run_fit(
    cfg: TrainConfig, keep: Path | None = None, resume_from: Path | None = None, build=SPEC.build
):
    """Fit the tiny MLP on blobs; keep the last reported checkpoint in ``keep``."""
    x, y = blobs()
    train = ShardBatches(x[:240], y[:240], batch_size=32, shuffle=True, seed=cfg.seed)
    val = ShardBatches(x[240:], y[240:], batch_size=64, shuffle=False)
    torch.manual_seed(cfg.seed)
    model = build()
    resume = None
    if resume_from is not None:
        load_weights(resume_from, model)
        resume = load_state(resume_from)
    reports: list[tuple[dict, bool]] = []

    def report(metrics: dict, folder: Path | None) -> None:
        reports.append((metrics, folder is not None and (folder / "model.safetensors").exists()))
        if keep is not None and folder is not None:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(folder, keep)

    state = fit(model, train, val, cfg=cfg, spec=SPEC, report=report, resume=resume)
    return model, state, reports


def test_fit_reports_a_checkpoint_every_epoch_and_learns():
    cfg = TrainConfig(epochs=5, lr=0.01, early_stopping_patience=0)
    _, state, reports = run_fit(cfg)
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3, 4, 5]
    assert all(has_ckpt for _, has_ckpt in reports)
    assert {"train_loss", "train_ce", "val_loss", "val_accuracy", "lr"} <= set(reports[0][0])
    assert state.history[-1]["val_accuracy"] >= 0.9
    assert state.history[-1]["val_loss"] < state.history[0]["val_loss"]


def test_fit_is_deterministic_for_a_seed():
    cfg = TrainConfig(epochs=3, lr=0.01, early_stopping_patience=0, seed=7)
    a, state_a, _ = run_fit(cfg)
    b, state_b, _ = run_fit(cfg)
    assert [h["val_loss"] for h in state_a.history] == [h["val_loss"] for h in state_b.history]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=4, lr=0.01, early_stopping_patience=0)
    straight, _, _ = run_fit(cfg)
    first = tmp_path / "first"
    _run_epochs(cfg, first, stop_after=2)
    assert load_model(first)[1] == SPEC
    resumed, state, _ = run_fit(cfg, resume_from=first)
    assert state.resumed_at == [2]
    assert [h["epoch"] for h in state.history] == [1, 2, 3, 4]
    for p_straight, p_resumed in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(p_straight, p_resumed, atol=1e-6)


def _run_epochs(cfg: TrainConfig, keep: Path, stop_after: int, build=SPEC.build) -> None:
    """Run ``cfg`` but crash after ``stop_after`` epochs, keeping the last checkpoint."""

    class Stop(Exception):
        pass

    x, y = blobs()
    train = ShardBatches(x[:240], y[:240], batch_size=32, shuffle=True, seed=cfg.seed)
    val = ShardBatches(x[240:], y[240:], batch_size=64, shuffle=False)
    torch.manual_seed(cfg.seed)
    model = build()

    def report(metrics: dict, folder: Path | None) -> None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(folder, keep)
        if metrics["epoch"] == stop_after:
            raise Stop

    with pytest.raises(Stop):
        fit(model, train, val, cfg=cfg, spec=SPEC, report=report)


def test_early_stopping_stops_after_patience_without_improvement():
    # min_delta larger than any possible improvement: only epoch 1 counts as "best".
    cfg = TrainConfig(epochs=20, lr=0.01, early_stopping_patience=2, min_delta=1e9)
    _, state, reports = run_fit(cfg)
    assert state.stopped_early
    assert len(reports) == 1 + 2
    assert state.best_epoch == min(state.history, key=lambda h: h["val_loss"])["epoch"]


def test_a_fit_diverging_in_its_first_epoch_stops_naming_epoch_and_stage():
    cfg = TrainConfig(epochs=3, lr=1e6, optimizer="sgd", early_stopping_patience=0)
    reports: list[dict] = []
    x, y = blobs()
    batches = ShardBatches(x, y, batch_size=32, shuffle=False)
    with pytest.raises(DivergedError) as caught:
        fit(
            SPEC.build(),
            batches,
            batches,
            cfg=cfg,
            spec=SPEC,
            report=lambda m, _: reports.append(m),
        )
    assert (caught.value.epoch, caught.value.stage) == (1, "train")
    message = str(caught.value)
    assert message.startswith("training diverged at epoch 1 (stage 'train'): train_loss=nan")
    assert "no checkpoint was kept" in message and "train.lr (it is 1e+06)" in message
    assert reports == []  # nothing non-finite reaches Ray as a checkpoint


def test_a_fit_diverging_later_keeps_the_last_finite_checkpoint(tmp_path):
    cfg = TrainConfig(epochs=5, lr=0.01, early_stopping_patience=0)
    x, y = blobs()
    train = ShardBatches(x[:240], y[:240], batch_size=32, shuffle=True)
    val = ShardBatches(x[240:], y[240:], batch_size=64, shuffle=False)
    model, kept = SPEC.build(), tmp_path / "last"
    reported: list[int] = []

    def report(metrics: dict, folder: Path | None) -> None:
        reported.append(metrics["epoch"])
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(folder, kept)

    def blow_up_after_epoch_2(state) -> None:  # what an exploding gradient leaves behind
        if state.epoch == 2:
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))

    with pytest.raises(DivergedError, match=r"epoch 3 \(stage 'train'\).*epoch 2's") as caught:
        fit(
            model, train, val, cfg=cfg, spec=SPEC, report=report, on_epoch_end=blow_up_after_epoch_2
        )
    assert reported == [1, 2]
    state = load_state(kept)["fit_state"]
    assert state["epoch"] == 2 and state["best_epoch"] == 2
    restored = SPEC.build()
    load_weights(kept, restored)
    assert all(torch.isfinite(p).all() for p in restored.parameters())
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses Ray


def test_shard_batches_pad_every_worker_to_the_same_number_of_steps():
    x = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    shards = [
        ShardBatches(x[r::3], y[r::3], batch_size=2, shuffle=True, pad_to=4) for r in range(3)
    ]
    assert [len(s) for s in shards] == [2, 2, 2]
    assert [sum(len(b[1]) for b in s) for s in shards] == [4, 4, 4]
    seen = torch.cat([torch.cat([b[1] for b in s]) for s in shards])
    assert set(seen.tolist()) == set(range(10))


def test_shard_batches_reshuffle_per_epoch_and_repeat_for_the_same_epoch():
    x, y = torch.zeros(50, 1), torch.arange(50)
    batches = ShardBatches(x, y, batch_size=50, shuffle=True, seed=3)
    batches.set_epoch(0)
    first = next(iter(batches))[1]
    batches.set_epoch(1)
    second = next(iter(batches))[1]
    batches.set_epoch(0)
    again = next(iter(batches))[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, second)
    assert sorted(first.tolist()) == list(range(50))


def test_train_config_names_the_bad_field():
    with pytest.raises(ValueError, match=r"train\.optimizer='lbfgs'"):
        TrainConfig(optimizer="lbfgs")


@pytest.mark.parametrize(
    ("schedule", "epoch", "factor"),
    [
        ("cosine", 0, 1.0),
        ("cosine", 5, 0.5),
        ("cosine", 10, 0.0),
        ("step", 4, 1.0),
        ("step", 5, 0.1),
        ("step", 8, 0.01),
        ("none", 9, 1.0),
    ],
)
def test_lr_schedules_in_closed_form(schedule, epoch, factor):
    assert lr_factor(schedule, epoch, 10) == pytest.approx(factor)


class StagedMLP(torch.nn.Module):
    """A tiny model with a two-stage schedule: head only, then everything at a tenth of the LR."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        from components.models.base import ModelOutput

        return ModelOutput(logits=self.head(torch.relu(self.body(x))))

    def loss(self, output, x, y):
        ce = torch.nn.functional.cross_entropy(output.logits, y)
        return {"total": ce, "ce": ce}

    def training_stages(self, epochs: int):
        from components.models.base import TrainingStage

        return [
            TrainingStage("head", 2, trainable={"head.": 1.0}),
            TrainingStage("all", epochs - 2, trainable={"body.": 0.1, "head.": 0.1}),
        ]


def test_stages_train_only_their_parameters_at_their_rates():
    x, y = blobs()
    train = ShardBatches(x[:240], y[:240], batch_size=32, shuffle=True)
    val = ShardBatches(x[240:], y[240:], batch_size=64, shuffle=False)
    torch.manual_seed(0)
    model = StagedMLP()
    body_before = model.body.weight.detach().clone()
    seen: list[dict] = []

    def report(metrics, folder):
        seen.append(metrics)
        if metrics["epoch"] == 2:  # end of the head-only stage: the body is untouched
            assert torch.equal(model.body.weight, body_before)

    cfg = TrainConfig(epochs=4, lr=0.01, lr_schedule="none", early_stopping_patience=0)
    state = fit(model, train, val, cfg=cfg, spec=SPEC, report=report)
    assert [m["stage"] for m in seen] == ["head", "head", "all", "all"]
    assert [m["lr"] for m in seen] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert not torch.equal(model.body.weight, body_before)
    # Only the last stage's epochs can be the "best" checkpoint.
    assert [m["checkpoint_score"] == float("inf") for m in seen] == [True, True, False, False]
    assert state.best_epoch in (3, 4)
    # and the log says so, as a reader seeing a lower val_loss in an earlier stage would ask
    assert best_epoch_scope(seen) == ", chosen in the last stage, all"
    assert best_epoch_scope(seen[:2]) == ""


def test_a_stage_prefix_that_matches_nothing_is_an_error():
    class Typo(StagedMLP):
        def training_stages(self, epochs):
            from components.models.base import TrainingStage

            return [TrainingStage("oops", epochs, trainable={"haed.": 1.0})]

    x, y = blobs()
    batches = ShardBatches(x, y, batch_size=32, shuffle=False)
    with pytest.raises(ValueError, match="no parameter starts with 'haed.'"):
        fit(Typo(), batches, batches, cfg=TrainConfig(epochs=1), spec=SPEC, report=lambda *_: None)


def test_in_order_yields_every_row_once_with_its_global_id():
    x, y = torch.zeros(5, 1), torch.arange(5)
    batches = ShardBatches(x, y, batch_size=2, shuffle=True, pad_to=8, ids=torch.arange(5) * 3 + 1)
    rows = list(batches.in_order())
    assert torch.equal(torch.cat([r[1] for r in rows]), torch.arange(5))
    assert torch.equal(torch.cat([r[2] for r in rows]), torch.tensor([1, 4, 7, 10, 13]))


def test_resume_inside_a_later_stage_matches_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=5, lr=0.01, early_stopping_patience=0)
    straight, _, _ = run_fit(cfg, build=StagedMLP)
    crashed = tmp_path / "crashed"
    _run_epochs(cfg, crashed, stop_after=3, build=StagedMLP)  # one epoch into stage "all"
    resumed, state, reports = run_fit(cfg, resume_from=crashed, build=StagedMLP)
    assert state.resumed_at == [3]
    assert [m["stage"] for m, _ in reports] == ["all", "all"]
    for p_straight, p_resumed in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(p_straight, p_resumed, atol=1e-6)
