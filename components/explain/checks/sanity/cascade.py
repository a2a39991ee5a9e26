"""Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency
Maps"; reference code github.com/adebayoj/sanity_checks_saliency).

The layers of a trained model are re-initialised one after another from the top (the logits)
down, cumulatively, and every explanation method is re-run on the same inputs after each step;
an explanation that depends on what the model learned changes, one that stays similar to the
original (an edge detector does, by construction) cannot be used to debug the model.

As in the reference code, a layer is re-initialised by its own initialiser (``reset_parameters``,
the PyTorch counterpart of the reference code's TensorFlow variable initialisers); parameters of
a module without one (e.g. prototype vectors) are redrawn from a normal with the trained
tensor's mean and standard deviation. "Top" is found, not assumed: the layers are ordered by when
backpropagation reaches their parameters, so the module that produces the logits comes first
whatever order the model registers its modules in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from components.evaluation.attribution_similarity import map_similarity
from components.evaluation.predict import model_logits
from components.tensors import as_float_tensor

# ``explain(model, x, target) -> attributions shaped like x``
Explain = Callable[[nn.Module, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Cascade:
    """What the randomisation did to each method's explanations.

    Attributes:
        layers: the layers randomised, top first (step ``s`` has randomised ``layers[:s+1]``).
        similarity: method -> measure -> ``(steps, N)`` per-sample similarity of each step's
            attributions to the trained model's.
        maps: method -> ``(steps + 1, *feature_shape)`` attributions of the first input, the
            trained model's first.
    """

    layers: list[str]
    similarity: dict[str, dict[str, np.ndarray]]
    maps: dict[str, np.ndarray]


def layers_top_down(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules holding parameters, ordered from the output down: the order in
    which one backward pass from the logits reaches their parameters (unused ones are left out).
    """
    order: list[str] = []
    owners = {id(p): name for name, m in model.named_modules() for p in m.parameters(recurse=False)}
    handles = [
        p.register_hook(_recorder(order, owners[id(p)]))
        for p in model.parameters()
        if p.requires_grad
    ]
    try:
        with torch.enable_grad():
            model_logits(model(x[:1])).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    return list(dict.fromkeys(order))


def _recorder(order: list[str], name: str) -> Callable[[torch.Tensor], None]:
    return lambda grad: order.append(name)


def randomise_layer(module: nn.Module, generator_seed: int) -> None:
    """Re-initialise ``module``'s own parameters (its ``reset_parameters``, else a normal draw
    with each tensor's mean and std), seeded."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(generator_seed)
        if hasattr(module, "reset_parameters") and not any(module.children()):
            module.reset_parameters()
            return
        for parameter in module.parameters(recurse=False):
            std = float(parameter.std()) if parameter.numel() > 1 else 0.0
            parameter.normal_(float(parameter.mean()), std if std > 0 else 1.0)


def cascade(
    model: nn.Module,
    x: np.ndarray,
    methods: Mapping[str, Explain],
    *,
    image: bool,
    seed: int = 0,
) -> Cascade:
    """Randomise a copy of ``model`` layer by layer from the top and compare every method's
    attributions of ``x`` after each step with the trained model's.

    The class explained is the trained model's prediction for every step, so only the
    parameters change between the maps compared.

    Args:
        model: the trained model (left untouched: a copy is randomised).
        x: ``(N, *feature_shape)`` inputs.
        methods: name -> ``explain(model, x, target)``.
        image: ``x`` holds ``(C, H, W)`` images (SSIM is measured besides Spearman).
        seed: seeds each layer's re-initialisation.
    """
    randomised = copy.deepcopy(model).eval()
    for parameter in randomised.parameters():  # a frozen trunk is randomised too
        parameter.requires_grad_(True)
    inputs = as_float_tensor(x)
    with torch.no_grad():
        target = model_logits(model.eval()(inputs)).argmax(1).numpy()
    layers = layers_top_down(randomised, inputs)
    original = {name: explain(model, x, target) for name, explain in methods.items()}
    steps: dict[str, list] = {name: [] for name in methods}
    maps = {name: [a[0]] for name, a in original.items()}
    modules = dict(randomised.named_modules())
    for step, layer in enumerate(layers):
        randomise_layer(modules[layer], seed + step)
        for name, explain in methods.items():
            attributions = explain(randomised, x, target)
            steps[name].append(map_similarity(original[name], attributions, image=image))
            maps[name].append(attributions[0])
    return Cascade(
        layers=layers,
        similarity={name: _stack(rows) for name, rows in steps.items()},
        maps={name: np.stack(m) for name, m in maps.items()},
    )


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {measure: np.stack([row[measure] for row in rows]) for measure in rows[0]}
