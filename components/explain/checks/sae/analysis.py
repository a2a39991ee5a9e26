"""The ``sae`` check's work: fit SAEs / transcoders on a trained model's train-split activations,
then measure them on test rows (the L0 / loss-recovered frontier, dead features, top-activating
inputs, part localisation against neurons, and the transcoders' weights-based circuit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from components.data.errors import DataError
from components.data.reader import DatasetMeta, read_masks, read_split
from components.explain.checks.sae.dictionary import SparseDictionary, dictionary_stats
from components.explain.checks.sae.fits import Fit, fit_all
from components.explain.checks.sae.metrics import (
    circuit_weights,
    encoder_in_raw_units,
    loss_recovered,
    model_loss,
    part_purity,
    per_sample_max,
    replacement,
    spliced_loss,
    top_features,
    top_inputs,
    zero_ablation,
)
from components.explain.checks.sae.sites import Site, collect, find_sites

MAX_ROWS = 60_000  # activation rows a dictionary trains on (conv layers: samples x locations)
GALLERY_FEATURES = 6
GALLERY_INPUTS = 6
CIRCUIT_FEATURES = 8


@dataclass(frozen=True)
class SaeSettings:
    """``explain.sae``: see :mod:`components.explain.checks.sae`."""

    kind: str = "both"
    layer: str = "auto"
    expansion: int = 4
    l1: tuple[float, ...] = (0.01, 0.03, 0.1)
    epochs: int = 20
    samples: int = 1000

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("sae", "transcoder") if self.kind == "both" else (self.kind,)


def analyse(
    model: nn.Module,
    site: Site,
    dataset_path,
    meta: DatasetMeta,
    settings: SaeSettings,
    *,
    seed: int = 0,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
) -> dict:
    """Fit every (kind, l1) dictionary on ``site`` and measure it; the check's result less the
    verdict. See :mod:`components.report.sae_check_section` for what it holds."""
    x_train, _ = read_split(dataset_path, "train", limit=settings.samples)
    x_test, y_test = read_split(dataset_path, "test", limit=settings.samples)
    following = _following_site(model, site) if "transcoder" in settings.kinds else None
    train_rows = {site.name: _subsample(collect(model, site, x_train), seed)}
    fits = [Fit(kind, l1, site.name) for kind in settings.kinds for l1 in settings.l1]
    middle_l1 = settings.l1[len(settings.l1) // 2]
    if following is not None:
        train_rows[following.name] = _subsample(collect(model, following, x_train), seed)
        fits.append(Fit("transcoder", middle_l1, following.name))
    dictionaries = fit_all(
        fits,
        train_rows,
        expansion=settings.expansion,
        epochs=settings.epochs,
        seed=seed,
        ray_address=ray_address,
        ray_num_cpus=ray_num_cpus,
    )
    test_rows = collect(model, site, x_test)
    clean = model_loss(model, x_test, y_test)
    ablated = spliced_loss(model, site, zero_ablation, x_test, y_test)
    result = {
        "layer": site.name,
        "spatial": site.spatial,
        "width": int(test_rows["outputs"].shape[1]),
        "expansion": settings.expansion,
        "clean_loss": clean,
        "ablated_loss": ablated,
        "frontier": [],
    }
    ours = [(f, d) for f, d in zip(fits, dictionaries, strict=True) if f.site == site.name]
    for fit, dictionary in ours:
        row = _measure(model, site, fit, dictionary, test_rows, x_test, y_test)
        row["recovered"] = loss_recovered(clean, ablated, row["loss"])
        result["frontier"].append(row)
    chosen = {f.kind: d for f, d in ours if f.l1 == middle_l1}
    result["gallery"] = _gallery(chosen, test_rows, x_test, meta)
    result["localisation"] = _localisation(chosen, site, test_rows, dataset_path, len(x_test))
    if following is not None:
        later = encoder_in_raw_units(dictionaries[-1])
        result["circuit"] = _circuit(chosen["transcoder"], later, following.name, test_rows)
    elif "transcoder" in chosen and site.next_linear() is not None:
        head = site.next_linear().weight.detach()
        result["circuit"] = _circuit(
            chosen["transcoder"], head, "logits", test_rows, list(meta.class_names)
        )
    return result


def _following_site(model: nn.Module, site: Site) -> Site | None:
    """The site whose Linear reads ``site``'s output directly, if any."""
    linear = site.next_linear()
    return next((s for s in find_sites(model) if s.weight is linear), None)


def _subsample(rows: dict, seed: int) -> dict:
    """At most :data:`MAX_ROWS` rows, a seeded random choice."""
    count = len(rows["outputs"])
    if count <= MAX_ROWS:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(count, MAX_ROWS, replace=False))
    return {**rows, "inputs": rows["inputs"][keep], "outputs": rows["outputs"][keep]}


def _measure(model, site, fit: Fit, dictionary: SparseDictionary, rows, x, y) -> dict:
    stats = dictionary_stats(
        dictionary, rows["inputs" if fit.kind == "transcoder" else "outputs"], rows["outputs"]
    )
    return {
        "kind": fit.kind,
        "l1": fit.l1,
        "loss": spliced_loss(model, site, replacement(fit.kind, dictionary), x, y),
        "l0": stats["l0"],
        "variance_explained": stats["variance_explained"],
        "dead_fraction": stats["dead_fraction"],
        "features": int(dictionary.encoder.out_features),
    }


@torch.no_grad()
def _activations(kind: str, dictionary: SparseDictionary, rows: dict) -> np.ndarray:
    source = rows["inputs"] if kind == "transcoder" else rows["outputs"]
    return dictionary.features(torch.from_numpy(source).float()).numpy()


def _gallery(chosen: dict, rows: dict, x: np.ndarray, meta: DatasetMeta) -> dict:
    """Per kind, its top features (by mean activation) and the test inputs each fires on most,
    with the same for the layer's neurons; inputs in raw (unstandardised) units."""
    per_sample = max(1, int(np.prod(rows["map_shape"])))
    raw = (x.reshape(len(x), -1) * meta.std + meta.mean).reshape(x.shape)
    units = {"neurons": rows["outputs"]}
    units.update({kind: _activations(kind, d, rows) for kind, d in chosen.items()})
    gallery = {}
    for name, acts in units.items():
        features = top_features(acts, GALLERY_FEATURES)
        top = top_inputs(per_sample_max(acts, per_sample), features, GALLERY_INPUTS)
        gallery[name] = {"features": features.tolist(), "inputs": raw[top]}
    return gallery


def _localisation(chosen, site: Site, rows: dict, dataset_path, samples: int) -> dict | None:
    """Mean part purity (:func:`part_purity`) of the layer's neurons and of each kind's
    features on the test rows' part masks; None without masks or a 2-D activation map."""
    if len(rows["map_shape"]) != 2:
        return None
    try:
        masks = read_masks(dataset_path, "test")[:samples]
    except DataError:
        return None
    units = {"neurons": rows["outputs"]}
    units.update({kind: _activations(kind, d, rows) for kind, d in chosen.items()})
    purity = {}
    for name, acts in units.items():
        maps = acts.reshape(samples, *rows["map_shape"], -1).transpose(0, 3, 1, 2)
        values = part_purity(maps, masks)
        purity[name] = {"mean": float(np.nanmean(values)), "values": values}
    return purity


def _circuit(earlier, later_encoder, later_name: str, rows: dict, classes=None) -> dict:
    """Weights-based circuit term between the top earlier transcoder features and the later
    transcoder's features (``later_encoder`` in raw units) or the class logits (``classes``)."""
    acts = _activations("transcoder", earlier, rows)
    features = top_features(acts, CIRCUIT_FEATURES)
    weights = circuit_weights(earlier, later_encoder)
    if classes is not None:
        units, labels = np.arange(weights.shape[1]), classes
    else:
        strongest = np.argsort(-np.abs(weights[features]).max(axis=0), kind="stable")
        units = strongest[:CIRCUIT_FEATURES]
        labels = [f"{later_name} #{u}" for u in units]
    return {
        "later": later_name,
        "features": features.tolist(),
        "units": labels,
        "weights": weights[np.ix_(features, units)],
    }
