"""The ``sae`` trust check: settings, splicing, the dictionaries' defining properties, part
purity and the transcoders' weights-based circuit term, on hand-built networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from components.explain.checks import sae
from components.explain.checks.runner import CheckContext
from components.explain.checks.sae.dictionary import (
    SparseDictionary,
    dictionary_stats,
    fit_dictionary,
)
from components.explain.checks.sae.metrics import (
    circuit_weights,
    encoder_in_raw_units,
    loss_recovered,
    model_loss,
    part_purity,
    replacement,
    spliced_loss,
    zero_ablation,
)
from components.explain.checks.sae.sites import collect, find_sites, input_rows, pick_site
from components.models.base import ModelOutput


class _Net(nn.Module):
    """Linear 5 -> 4, ReLU, Linear 4 -> 3 (logits), fixed seeded weights."""

    def __init__(self, conv: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        first = nn.Conv2d(2, 4, 3, padding=1) if conv else nn.Linear(5, 4)
        last = (
            [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)] if conv else [nn.Linear(4, 3)]
        )
        self.net = nn.Sequential(first, nn.ReLU(), nn.Dropout(0.0), *last)

    def forward(self, x):
        return ModelOutput(logits=self.net(x))


def _data(n=64, shape=(5,)):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 3, n)


def _identity(kind: str, net: _Net) -> SparseDictionary:
    """The layer's own neurons as a dictionary: an SAE with identity weights, or a transcoder
    whose encoder is the sublayer's Linear (both reproduce the layer exactly)."""
    d = SparseDictionary(5 if kind == "transcoder" else 4, 4, 4, sae=kind == "sae")
    with torch.no_grad():
        if kind == "sae":
            d.encoder.weight.copy_(torch.eye(4))
        else:
            d.encoder.weight.copy_(net.net[0].weight)
            d.encoder.bias.copy_(net.net[0].bias)
        d.decoder.weight.copy_(torch.eye(4))
        d.decoder.bias.zero_()
    return d


@pytest.mark.parametrize("kind", ["sae", "transcoder"])
def test_splicing_the_layers_own_neurons_recovers_all_of_the_loss(kind):
    net, (x, y) = _Net().eval(), _data()
    site = pick_site(net, "auto")
    clean = model_loss(net, x, y)
    ablated = spliced_loss(net, site, zero_ablation, x, y)
    patched = spliced_loss(net, site, replacement(kind, _identity(kind, net)), x, y)
    assert site.name == "net.1" and abs(ablated - clean) > 0.01
    assert loss_recovered(clean, ablated, patched) == pytest.approx(1.0, abs=1e-5)
    assert loss_recovered(clean, ablated, ablated) == 0.0


def test_conv_rows_are_the_patch_each_location_reads():
    net, (x, _) = _Net(conv=True).eval(), _data(4, (2, 6, 6))
    site = pick_site(net, "auto")
    rows = collect(net, site, x)
    conv = net.net[0]
    pre = (
        rows["inputs"] @ conv.weight.detach().reshape(4, -1).numpy().T + conv.bias.detach().numpy()
    )
    assert rows["map_shape"] == (6, 6) and rows["inputs"].shape == (4 * 36, 18)
    np.testing.assert_allclose(np.maximum(pre, 0), rows["outputs"], atol=1e-5)
    assert input_rows(site, torch.from_numpy(x)).shape == (144, 18)


def test_a_transcoder_learns_a_relu_sublayer():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(5, 3)).astype(np.float32)
    x = rng.normal(size=(1500, 5)).astype(np.float32)
    y = np.maximum(x @ weight, 0)
    d = fit_dictionary("transcoder", x[:1000], y[:1000], expansion=4, l1=1e-4, epochs=30)
    assert dictionary_stats(d, x[1000:], y[1000:])["variance_explained"] > 0.95


def test_l0_falls_as_l1_rises():
    rng = np.random.default_rng(2)
    atoms = rng.normal(size=(12, 6))
    codes = rng.exponential(size=(1500, 12)) * (rng.random((1500, 12)) < 0.2)
    rows = (codes @ atoms).astype(np.float32)
    l0 = [
        dictionary_stats(
            fit_dictionary("sae", rows, rows, expansion=3, l1=l1, epochs=6), rows, rows
        )["l0"]
        for l1 in (0.01, 0.03, 0.1)
    ]
    assert l0[0] > l0[1] > l0[2]


def test_part_purity_closed_form():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, :2, :2] = 1  # part 1: a quarter of each image
    masks[:, 2:, :] = 2  # part 2: half
    on_part_one = (masks == 1)[:, None].astype(np.float32)
    everywhere = np.ones((2, 1, 2, 2), np.float32)  # coarser map: upsampled to 4x4
    silent = np.zeros((2, 1, 4, 4), np.float32)
    purity = part_purity(np.concatenate([on_part_one, np.ones_like(on_part_one), silent], 1), masks)
    assert purity[:2].tolist() == [1.0, 0.5] and np.isnan(purity[2])
    assert part_purity(everywhere, masks).tolist() == [0.5]


def test_circuit_weights_are_the_input_invariant_term_of_the_later_preactivation():
    torch.manual_seed(3)
    earlier = SparseDictionary(5, 4, 8, sae=False, in_scale=2.0, out_scale=3.0)
    later = SparseDictionary(4, 2, 6, sae=False, in_scale=0.5)
    x = torch.randn(10, 5)
    f = earlier.features(x)
    pre = later.encoder(earlier(x) / later.in_scale)  # the later features' pre-activations
    w = torch.from_numpy(circuit_weights(earlier, encoder_in_raw_units(later)))
    constant = later.encoder(earlier.decoder.bias * earlier.out_scale / later.in_scale)
    torch.testing.assert_close(pre, f @ w + constant, atol=1e-4, rtol=1e-4)


BAD = [
    ({"kind": "features"}, "explain.sae.kind"),
    ({"layer": ""}, "explain.sae.layer"),
    ({"expansion": 0}, "explain.sae.expansion"),
    ({"epochs": 1.5}, "explain.sae.epochs"),
    ({"samples": True}, "explain.sae.samples"),
    ({"l1": []}, "explain.sae.l1"),
    ({"l1": [0.1, 0.01, 0.03]}, "explain.sae.l1"),
    ({"l1": [0.0, 0.1]}, "explain.sae.l1"),
    ({"width": 3}, "explain.sae: unknown keys ['width']"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sae.validate(settings)


def test_the_config_block_lists_every_setting_with_valid_defaults():
    block = yaml.safe_load(Path("conf/explain/default.yaml").read_text())["sae"]
    sae.validate(block)
    assert set(block) == set(sae._DEFAULTS)


def test_a_model_without_a_relu_sublayer_is_not_applicable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    context = CheckContext(
        model=model, checkpoint=Path("."), dataset_path=Path("."), meta=None, config=None
    )
    result = sae.run(context)
    assert result["verdict"].startswith("not applicable: the model has no Linear/Conv -> ReLU")
    assert not find_sites(model)


def test_run_on_a_trained_mlp_recovers_the_loss(digits_dataset, train_model):
    from components.data.reader import load_meta, read_split
    from components.models import create_model

    meta = load_meta(digits_dataset)
    x, y = read_split(digits_dataset, "train", limit=600)
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=meta.feature_shape, num_classes=10, tiny=True)
    train_model(model, x, y, epochs=5, lr=1e-2)
    settings = {"kind": "sae", "l1": [0.03], "epochs": 20, "samples": 400}
    context = CheckContext(
        model=model,
        checkpoint=Path("."),
        dataset_path=Path(digits_dataset),
        meta=meta,
        config=None,
        settings=settings,
    )
    result = sae.run(context)
    (row,) = result["frontier"]
    assert row["recovered"] > 0.9 and row["l0"] < 0.5 * row["features"]
    assert "(pass" in result["verdict"] and result["gallery"]["sae"]["inputs"].shape[:2] == (6, 6)
    assert "circuit" not in result and result["localisation"] is None
