"""Building blocks of Self-Tuning Networks (MacKay et al., ICLR 2019).

The structured best-response approximation of STNs (Sec. 4.2) gates part of each layer's
pre-activation by a linear function of the hyperparameters:
``y = W x + b + (V x + c) * (H lambda)``. ``W, b`` are the general weights; ``V, c`` the response
weights whose contribution is scaled, unit by unit, by the hyperparameter embedding ``H lambda``.
Also here: the relaxable regularisers (dropout, random shift) and the perturbation distribution
over the tuned hyperparameters (:class:`StnHyperparameters`).

Ranges. As in the paper, each continuous hyperparameter is a Gaussian in an unconstrained space
mapped into range, but the unconstrained values are clamped to a box (the means and scales are
projected into it after every hyperparameter step, the perturbed samples are clamped when drawn),
so an aggressive hyperparameter learning rate or entropy weight cannot push them to degenerate or
non-finite values:

* dropout ``MAX_DROPOUT * sigmoid(u)``, ``u`` in ``[logit(1e-4), logit(1 - 1e-4)]``: rate in about
  ``[1e-4, 0.95]``;
* weight decay ``exp(u)``, ``u`` in ``[log 1e-8, log 1e-1]``: :data:`WEIGHT_DECAY_RANGE`;
* input-noise std ``sigmoid(u)``, ``u`` in ``[logit(1e-4), logit(MAX_NOISE)]``: std in
  ``[1e-4, 0.95]``;
* perturbation std ``exp(log_scale)`` in :data:`SCALE_RANGE` ``= [1e-3, 1]`` (unconstrained
  units). The entropy term ``tau * sum(log_scale)`` grows without limit, so without this bound a
  large ``tau`` drives the scales, and then the samples, to infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from components.training.replay import shift

SHIFTS = (0, 1, 2)
CONTINUOUS = ("dropout", "weight_decay", "noise")
MAX_DROPOUT = 0.95
MAX_NOISE = 0.95
WEIGHT_DECAY_RANGE = (1e-8, 1e-1)
SCALE_RANGE = (1e-3, 1.0)
PROB_EPS = 1e-4  # probabilities are kept in [PROB_EPS, 1 - PROB_EPS] before taking logits
SHIFT_LOGIT = 1.0  # initial logit of the configured shift: about 58% of the categorical's mass


def _logit(p: float) -> float:
    """Logit of ``p`` clamped into ``[PROB_EPS, 1 - PROB_EPS]``."""
    p = min(max(p, PROB_EPS), 1 - PROB_EPS)
    return math.log(p) - math.log1p(-p)


# Box of the unconstrained (dropout, weight decay, noise) values and of the log perturbation std.
UNCONSTRAINED_LOW = (_logit(PROB_EPS), math.log(WEIGHT_DECAY_RANGE[0]), _logit(PROB_EPS))
UNCONSTRAINED_HIGH = (_logit(1 - PROB_EPS), math.log(WEIGHT_DECAY_RANGE[1]), _logit(MAX_NOISE))
LOG_SCALE_RANGE = (math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1]))


def clamp_unconstrained(u: torch.Tensor) -> torch.Tensor:
    """Clamp ``(..., 3)`` unconstrained (dropout, weight decay, noise) values into their box."""
    low = torch.tensor(UNCONSTRAINED_LOW, dtype=u.dtype)
    high = torch.tensor(UNCONSTRAINED_HIGH, dtype=u.dtype)
    return torch.clamp(u, low, high)


def to_range(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map ``(..., 3)`` unconstrained values to (dropout, weight decay, noise), clamping first."""
    u = clamp_unconstrained(u)
    return MAX_DROPOUT * torch.sigmoid(u[..., 0]), u[..., 1].exp(), torch.sigmoid(u[..., 2])


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)


class StnLinear(nn.Module):
    """Linear layer whose output responds to the hyperparameters (STN paper, Eq. 9).

    Args:
        in_features: input width.
        out_features: output width.
        num_hyper: width of the hyperparameter vector ``lambda``.
        generator: seeded generator for the initialisation.
    """

    def __init__(
        self, in_features: int, out_features: int, num_hyper: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.general_weight = _uniform((out_features, in_features), bound, generator)
        self.general_bias = _uniform((out_features,), bound, generator)
        self.response_weight = _uniform((out_features, in_features), bound, generator)
        self.response_bias = _uniform((out_features,), bound, generator)
        self.hyper_gate = _uniform((out_features, num_hyper), 1.0 / math.sqrt(num_hyper), generator)

    def forward(self, x: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: ``(N, in_features)`` inputs.
            hyper: ``(N, num_hyper)`` per-example hyperparameters (perturbed during training).

        Returns:
            ``(N, out_features)`` pre-activations.
        """
        general = nn.functional.linear(x, self.general_weight, self.general_bias)
        response = nn.functional.linear(x, self.response_weight, self.response_bias)
        return general + response * (hyper @ self.hyper_gate.T)

    def squared_norm(self) -> torch.Tensor:
        """Sum of squared weights (not biases), the L2 / weight-decay penalty."""
        return self.general_weight.pow(2).sum() + self.response_weight.pow(2).sum()


def dropout(
    x: torch.Tensor,
    rate: torch.Tensor,
    generator: torch.Generator,
    *,
    temperature: float | None = None,
) -> torch.Tensor:
    """Inverted dropout with a per-example rate.

    With ``temperature`` set, the Bernoulli mask is replaced by its concrete (relaxed Bernoulli)
    sample, so the output is differentiable w.r.t. ``rate`` as the STN hyperparameter step needs.

    Args:
        x: ``(N, D)`` activations.
        rate: ``(N,)`` drop probabilities in ``[0, 1)``.
        generator: seeded generator for the mask noise.
        temperature: concrete relaxation temperature; ``None`` for a hard Bernoulli mask.

    Returns:
        The dropped-out activations, rescaled by ``1 / (1 - rate)``.

    Raises:
        ValueError: if a rate is not finite or outside ``[0, 1)``.
    """
    if not bool(((rate >= 0) & (rate < 1)).all()):
        raise ValueError(f"dropout rates must be finite and in [0, 1), got {rate.detach()}")
    keep = (1.0 - rate).unsqueeze(1).expand_as(x)
    if temperature is None:
        mask = torch.bernoulli(keep.detach(), generator=generator)
    else:
        eps = 1e-7
        u = torch.rand(x.shape, generator=generator).clamp(eps, 1 - eps)
        logit = torch.log(keep + eps) - torch.log(1 - keep + eps) + torch.log(u) - torch.log(1 - u)
        mask = torch.sigmoid(logit / temperature)
    return x * mask / keep


def random_shift(x: torch.Tensor, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset of at most ``pixels[i]`` in each axis (zero fill).

    Args:
        x: ``(N, C, H, W)`` images.
        pixels: ``(N,)`` integer maximum shift per example.
        generator: seeded generator for the offsets.

    Returns:
        The shifted images, same shape as ``x``.
    """
    return shift(x, pixels, generator)


class StnMLP(nn.Module):
    """MLP of :class:`StnLinear` layers with ReLU and per-example dropout after each hidden layer.

    Args:
        in_features: flattened input width.
        hidden_sizes: hidden widths, input side first.
        num_classes: number of output classes.
        num_hyper: width of the hyperparameter vector fed to every layer.
        generator: seeded generator for the initialisation.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: tuple[int, ...],
        num_classes: int,
        num_hyper: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        widths = (in_features, *hidden_sizes, num_classes)
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.layers = nn.ModuleList(StnLinear(a, b, num_hyper, generator) for a, b in pairs)

    def forward(
        self,
        x: torch.Tensor,
        hyper: torch.Tensor,
        drop_rate: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """Return logits; dropout is applied only when ``drop_rate`` is given.

        Args:
            x: inputs of any trailing shape (flattened).
            hyper: ``(N, num_hyper)`` hyperparameter inputs of the best-response layers.
            drop_rate: ``(N,)`` dropout rates, or ``None`` for deterministic evaluation.
            generator: generator for the dropout masks (required with ``drop_rate``).
            temperature: concrete-dropout temperature (``None``: hard Bernoulli masks).
        """
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h, hyper)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
                if drop_rate is not None:
                    h = dropout(h, drop_rate, generator, temperature=temperature)
        return h

    def squared_norm(self) -> torch.Tensor:
        """Total L2 penalty over all layers' weights."""
        return sum((layer.squared_norm() for layer in self.layers), torch.zeros(()))


@dataclass
class HyperSample:
    """Hyperparameters drawn for one batch: best-response input and the regulariser values."""

    hnet: torch.Tensor
    dropout: torch.Tensor
    weight_decay: torch.Tensor
    noise: torch.Tensor
    shift: torch.Tensor


class InitialHyperparameters(Protocol):
    """Where :class:`StnHyperparameters` starts: :class:`components.search.stn.STNConfig` is one.

    Defined here rather than imported, so the layers never import the trainer built on them.
    """

    # Read-only properties, so a frozen dataclass satisfies the protocol.
    @property
    def dropout(self) -> float: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def noise(self) -> float: ...

    @property
    def shift(self) -> int: ...

    @property
    def init_scale(self) -> float: ...


class StnHyperparameters(nn.Module):
    """Perturbation distribution ``p(lambda | sigma)`` over the tuned hyperparameters.

    Continuous hyperparameters are Gaussian in an unconstrained space (means ``mean``, stds
    ``exp(log_scale)``); the shift is categorical over :data:`SHIFTS` (``shift_logits``). Samples
    are clamped into the module's boxes and :meth:`project_` keeps ``mean`` and ``log_scale`` in
    them (see the module docstring for the ranges).

    Args:
        config: initial values and scale.
        tune: if False the hyperparameters are fixed: no perturbation and no gradients.
    """

    def __init__(self, config: InitialHyperparameters, tune: bool = True) -> None:
        super().__init__()
        mean = [_logit(config.dropout / MAX_DROPOUT), math.log(config.weight_decay)]
        mean.append(_logit(config.noise))
        logits = [SHIFT_LOGIT if s == config.shift else 0.0 for s in SHIFTS]
        scale = math.log(config.init_scale) if tune else -math.inf
        self.mean = nn.Parameter(torch.tensor(mean), requires_grad=tune)
        # The best response sees hyperparameters relative to their start, so that inputs such as
        # log(1e-4) = -9.2 do not blow up the response term of every layer.
        self.register_buffer("origin", torch.tensor(mean))
        self.log_scale = nn.Parameter(torch.full((3,), scale), requires_grad=tune)
        self.shift_logits = nn.Parameter(torch.tensor(logits), requires_grad=tune)
        self.tune = tune

    @property
    def num_inputs(self) -> int:
        """Width of the best-response input: 3 continuous values and the shift one-hot."""
        return len(CONTINUOUS) + len(SHIFTS)

    def sample(self, n: int, gen: torch.Generator, temperature: float | None = None) -> HyperSample:
        """Draw per-example hyperparameters.

        Args:
            n: number of examples.
            gen: seeded generator.
            temperature: if set, relax the shift with Gumbel-softmax (differentiable sample);
                otherwise draw a hard one-hot (the fixed mode when not tuning).
        """
        u = self.mean.expand(n, -1)
        if self.tune:
            u = u + torch.randn((n, 3), generator=gen) * self._log_scale().exp()
        u = clamp_unconstrained(u)
        rate, weight_decay, noise = to_range(u)
        one_hot = self._shift_one_hot(n, gen, temperature)
        pixels = one_hot.detach().argmax(1)
        return HyperSample(
            hnet=torch.cat([u - self.origin, one_hot], dim=1),
            dropout=rate,
            weight_decay=weight_decay.mean(),
            noise=noise,
            shift=torch.tensor(SHIFTS)[pixels],
        )

    def _log_scale(self) -> torch.Tensor:
        """Log perturbation stds clamped into :data:`LOG_SCALE_RANGE`."""
        return self.log_scale.clamp(*LOG_SCALE_RANGE)

    @torch.no_grad()
    def project_(self) -> None:
        """Project means and log-scales back into their boxes (call after each optimiser step)."""
        if self.tune:
            self.mean.copy_(clamp_unconstrained(self.mean))
            self.log_scale.copy_(self._log_scale())

    def _shift_one_hot(
        self, n: int, gen: torch.Generator, temperature: float | None
    ) -> torch.Tensor:
        logits = self.shift_logits.expand(n, -1)
        if not self.tune:
            return nn.functional.one_hot(logits.argmax(1), len(SHIFTS)).float()
        gumbel = -torch.log(-torch.log(torch.rand((n, len(SHIFTS)), generator=gen).clamp(1e-9, 1)))
        if temperature is None:
            return nn.functional.one_hot((logits + gumbel).argmax(1), len(SHIFTS)).float()
        return torch.softmax((logits + gumbel) / temperature, dim=1)

    def mode(self) -> torch.Tensor:
        """``(1, num_inputs)`` best-response input at the distribution's centre."""
        one_hot = nn.functional.one_hot(self.shift_logits.argmax(), len(SHIFTS)).float()
        return torch.cat([clamp_unconstrained(self.mean) - self.origin, one_hot]).unsqueeze(0)

    def entropy(self) -> torch.Tensor:
        """Entropy of the perturbation distribution, up to an additive constant."""
        if not self.tune:
            return torch.zeros(())
        probs = torch.softmax(self.shift_logits, 0)
        return self._log_scale().sum() - (probs * torch.log(probs + 1e-12)).sum()

    def values(self) -> dict:
        """Current hyperparameters mapped into range, plus perturbation scales."""
        with torch.no_grad():
            rate, weight_decay, noise = (v.item() for v in to_range(self.mean.double()))
            log_scale = self._log_scale() if self.tune else self.log_scale
            scale = log_scale.exp().tolist()
            probs = torch.softmax(self.shift_logits, 0)
            out = {
                "dropout": rate,
                "weight_decay": weight_decay,
                "noise": noise,
                "shift": SHIFTS[int(probs.argmax())],
                "shift_probs": probs.tolist(),
                "entropy": float(self.entropy()),
            }
        out.update({f"{name}_scale": s for name, s in zip(CONTINUOUS, scale, strict=True)})
        return out
