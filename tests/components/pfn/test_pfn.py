"""PFNs (Müller et al., ICLR 2022): the priors' statistics, the exact GP posterior, the bar
distribution in closed form, the network's defining invariants (a query sees only the context
and itself; the context is a set), model=pfn's context from the fit loop's push, the weights
file and its refusals, and a resumed training run that equals an uninterrupted one."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from safetensors.torch import save_file

from components.models import create_model
from components.models.pfn import PFNTransformer, prepare_features
from components.pfn.bar_distribution import bar_mean_variance, bar_nll
from components.pfn.config import PFNTrainConfig
from components.pfn.gp import gp_posterior
from components.pfn.priors import BNNPrior, GPPrior, rbf_kernel
from components.pfn.train import build_network, train_pfn
from components.pfn.weights import save_pfn_weights
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.pretrained import PretrainedError

TINY = {"d_model": 8, "nhead": 2, "layers": 1, "d_ff": 16}


def _net(outputs=3, label_classes=3, features=4):
    """A network whose attention mixes tokens (the fresh one starts each block as identity)."""
    torch.manual_seed(0)
    net = PFNTransformer(
        num_features=features, outputs=outputs, label_classes=label_classes, **TINY
    )
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0, 0.5)
    return net.eval()


def test_gp_prior_samples_have_the_kernel_as_covariance():
    prior = GPPrior(lengthscale=(0.2, 0.2), outputscale=(1.0, 1.0), noise=(0.1, 0.1))
    x, y = prior.sample(3000, 6, torch.Generator().manual_seed(0))
    assert x.shape == (3000, 6, 1) and y.shape == (3000, 6)
    i, j = torch.triu_indices(6, 6, offset=1)
    dist = (x[:, i, 0] - x[:, j, 0]).abs().flatten()
    product = (y[:, i] * y[:, j]).flatten()
    # E[y y'] = k(x, x') off the diagonal, outputscale + noise on it; bins of |x - x'|
    for low, high in [(0.0, 0.05), (0.15, 0.2), (0.3, 0.35), (0.5, 0.6)]:
        inside = (dist >= low) & (dist < high)
        expected = rbf_kernel(dist[inside, None], torch.zeros(1, 1), 0.2, 1.0).mean()
        assert abs(product[inside].mean() - expected) < 0.06, (low, high)
    assert abs(y.var() - 1.1) < 0.05


def test_bnn_prior_classes_are_cut_from_each_task_and_permuted():
    prior = BNNPrior(max_features=12, max_classes=2)
    x, y = prior.sample(200, 64, torch.Generator().manual_seed(1))
    assert x.shape[:2] == (200, 64) and 1 <= x.shape[2] <= 12 and y.dtype == torch.int64
    assert set(y.unique().tolist()) <= {0, 1}
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    # two classes cut at a value of the task's own output: in some tasks class 0 is the upper
    # part, in others the lower (the ids are permuted), and most tasks hold both classes
    both = [t for t in range(200) if 0 < int(y[t].sum()) < 64]
    assert len(both) > 150
    _, reg = BNNPrior(max_features=12, task="regression").sample(200, 64, torch.Generator())
    assert reg.dtype == torch.float32 and torch.isfinite(reg).all()


def test_exact_gp_posterior_with_one_observation_is_the_closed_form():
    xc, yc, xq = torch.tensor([[0.3]]), torch.tensor([1.5]), torch.tensor([[0.3], [0.5]])
    mean, var = gp_posterior(xc, yc, xq, lengthscale=0.2, outputscale=2.0, noise=0.5)
    k = 2.0 * torch.exp(-0.5 * (torch.tensor([0.0, 0.2]) / 0.2) ** 2).double()
    assert torch.allclose(mean, k / 2.5 * 1.5)
    assert torch.allclose(var, 2.5 - k**2 / 2.5)
    _, prior_var = gp_posterior(xc[:0], yc[:0], xq, lengthscale=0.2, outputscale=2.0, noise=0.5)
    assert torch.allclose(prior_var, torch.full((2,), 2.5, dtype=torch.float64))


def test_bar_distribution_mean_variance_and_density_in_closed_form():
    borders = torch.tensor([0.0, 1.0, 3.0])
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    mean, var = bar_mean_variance(logits, borders)
    # buckets U(0,1) w.p. 1/4 and U(1,3) w.p. 3/4
    assert torch.allclose(mean, torch.tensor([0.25 * 0.5 + 0.75 * 2.0]))
    second = 0.25 * (0.25 + 1 / 12) + 0.75 * (4.0 + 4 / 12)
    assert torch.allclose(var, torch.tensor([second - mean.item() ** 2]))
    nll = bar_nll(logits, torch.tensor([2.0]), borders)
    assert torch.allclose(nll, torch.tensor([-math.log(0.75 / 2)]))


def test_a_query_sees_only_the_context_and_itself():
    net = _net()
    x, y = torch.randn(1, 9, 4), torch.randint(0, 3, (1, 5))
    out = net(x, y)
    changed = x.clone()
    changed[0, 6:] = torch.randn(3, 4)  # every query but the first (position 5) altered
    assert torch.allclose(net(changed, y)[0, 0], out[0, 0], atol=1e-6)
    alone = net(x[:, :6], y)  # the other queries removed
    assert torch.allclose(alone[0, 0], out[0, 0], atol=1e-6)
    y2 = y.clone()
    y2[0, 0] = (y[0, 0] + 1) % 3  # the context does matter
    assert not torch.allclose(net(x, y2)[0, 0], out[0, 0], atol=1e-4)


def test_the_context_is_a_set():
    net = _net(outputs=10, label_classes=0)  # the regression network too
    x, y = torch.randn(2, 12, 4), torch.randn(2, 8)
    perm = torch.randperm(8)
    shuffled = torch.cat([x[:, perm], x[:, 8:]], 1)
    assert torch.allclose(net(shuffled, y[:, perm]), net(x, y), atol=1e-5)
    relabelled = y[:, perm]  # the same rows with other labels: not the same context
    assert not torch.allclose(net(x, relabelled), net(x, y), atol=1e-3)


def test_pfn_model_predicts_from_the_context_the_fit_loop_pushes():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    model = create_model("pfn", input_shape=(5,), num_classes=3, tiny=True, context_size=32)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    empty = model(x[:4]).logits  # before any context: each query attends to itself
    assert empty.shape == (4, 3) and torch.isfinite(empty).all()
    spec = ModelSpec("pfn", (5,), 3, tiny=True, kwargs={"context_size": 32})
    fit(
        model,
        ShardBatches(x.numpy(), y.numpy(), batch_size=16, shuffle=True),
        ShardBatches(x.numpy(), y.numpy(), batch_size=16, shuffle=False),
        cfg=TrainConfig(epochs=3, batch_size=16, lr=0.1, early_stopping_patience=0),
        spec=spec,
        report=lambda metrics, _: None,
    )
    # 40 rows into 32 slots: slots id % 32 < 8 keep one of two rows, the others their own
    rows = {tuple(r) for r in x.tolist()}
    assert len(model.context_y) == 32 and all(tuple(r) in rows for r in model.context_x.tolist())
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in before.items())
    model.eval()
    rows = prepare_features(torch.cat([model.context_x, x[:4]])[None], 32, 5)
    expected = model.net(rows, model.context_y[None])[0, :, :3]
    assert torch.allclose(model(x[:4]).logits, expected, atol=1e-6)
    reloaded = ModelSpec("pfn", (5,), 3, tiny=True, kwargs={"context_size": 32}).build()
    reloaded.load_state_dict(model.state_dict())  # the checkpoint carries its context
    assert torch.allclose(reloaded.eval()(x[:4]).logits, model(x[:4]).logits)


def _weights(tmp_path, task="classification", **arch):
    architecture = {
        "num_features": 5,
        "outputs": 10,
        "label_classes": 10 if task == "classification" else 0,
        **TINY,
        **arch,
    }
    net = PFNTransformer(**architecture)
    path = tmp_path / task / "checkpoints" / "pfn.safetensors"
    save_pfn_weights(path, net, prior="bnn", task=task, architecture=architecture)
    return net, path.parent.parent


def test_model_loads_prior_fitted_weights_from_a_run_folder(tmp_path):
    net, run = _weights(tmp_path)
    params = {**TINY, "max_features": 5, "pretrained": str(run)}
    model = ModelSpec("pfn", (5,), 3, kwargs=params).build()
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere", r"model\.params\.pretrained=.*no PFN weights there"),
        (lambda p: _write(p / "bad.safetensors", b"garbage"), "cannot read"),
        (lambda p: _plain(p / "plain.safetensors"), "no PFN weights file"),
        (lambda p: _weights(p, task="regression")[1], "prior=bnn"),
        (lambda p: _weights(p, d_model=16)[1], r"\+model\.params\.d_model=16 \(not 8\)"),
    ],
    ids=["missing", "corrupt", "not-a-pfn", "regression", "other-size"],
)
def test_bad_pfn_weights_are_refused_naming_the_key(tmp_path, make, message):
    params = {**TINY, "max_features": 5, "pretrained": str(make(tmp_path))}
    with pytest.raises(PretrainedError, match=message):
        ModelSpec("pfn", (5,), 3, kwargs=params).build()


def _write(path, data):
    path.write_bytes(data)
    return path


def _plain(path):
    save_file({"w": torch.zeros(2)}, str(path))
    return path


def test_model_refuses_data_wider_than_its_rows_or_with_more_classes():
    with pytest.raises(ValueError, match=r"model\.params\.max_features=128.*model=mlp"):
        create_model("pfn", input_shape=(3, 8, 8), num_classes=3)
    with pytest.raises(ValueError, match=r"model\.params\.max_classes=10.*model=mlp"):
        create_model("pfn", input_shape=(5,), num_classes=12)


def test_resumed_training_equals_an_uninterrupted_run():
    cfg = PFNTrainConfig(
        prior="gp",
        steps=4,
        checkpoint_every=2,
        batch_size=4,
        seq_len=8,
        eval_tasks=4,
        buckets=8,
        warmup_steps=2,
        **TINY,
    )
    states: list[dict] = []
    whole = build_network(cfg)
    rows = train_pfn(whole, cfg, report=lambda row, state: states.append(copy.deepcopy(state)))
    assert [r["step"] for r in rows] == [2, 4]
    resumed = build_network(cfg)
    resumed.load_state_dict(states[0]["net"])
    train_pfn(resumed, cfg, report=lambda row, state: None, resume=states[0])
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
