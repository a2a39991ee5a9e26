"""Iterative self-distillation with ground-truth targets in kernel ridge regression, in closed form.

Borup & Andersen, "Even your Teacher Needs Guidance: Ground-Truth Targets Dampen Regularization
Imposed by Self-Distillation" (NeurIPS 2021); reference code github.com/Kennethborup/
self_distillation (``toy_example.ipynb``: the recursion for ``B`` and the limit, read and followed;
``self_distiller.py``: the deep-learning steps). The paper calls the ground-truth weight
``alpha``; the training regime (:mod:`components.training.self_distill_rounds`) calls it ``xi``.

Step ``t`` fits, with an RBF (any positive definite) Gram matrix ``K`` and ridge ``lam``,

    f_t = argmin_f  alpha_t ||y - f(X)||^2 + (1 - alpha_t) ||f_{t-1}(X) - f(X)||^2 + lam ||f||^2,

whose fit on the training inputs is ``K (K + lam I)^-1 (alpha_t y + (1 - alpha_t) f_{t-1}(X))``,
and step 0 is plain kernel ridge regression on ``y``. With ``K = V diag(d) V^T`` and
``a = d / (d + lam)`` every step is diagonal in the eigenbasis: ``f_t(X) = V diag(b_t) V^T y`` with
``b_0 = a`` and ``b_t = a (alpha_t + (1 - alpha_t) b_{t-1})``, so any step is a function of the
initial fit alone: ``f_t(X) = V diag(b_t / a) V^T f_0(X)``. With a constant ``alpha`` the
multipliers converge to ``alpha d / (alpha d + lam)``: infinitely many steps solve the original
problem with the regularisation amplified to ``lam / alpha``.

The optimal weight: the fit of step ``t`` is affine in ``alpha_t`` (``alpha_t`` times the fit to
``y``, which is ``f_0``, plus ``1 - alpha_t`` times the fit to the teacher alone), so the
``alpha_t`` minimising the squared distance to a target (the noiseless function at the training
inputs) is a projection onto that line, computed here in the eigenbasis. For deep networks the
paper estimates it the same way from two networks of the step (one trained on the ground truth
alone, which is the step-0 network, and one on the teacher alone) and held-out targets in place
of the unknown noiseless ones: :func:`projection_weight` on their validation predictions.

Departure: only the abstract and the reference code were at hand (the code has the recursion and
the limit, not the optimal-weight formula); :func:`optimal_weight` is derived from the setting as
stated above, and is unconstrained (the paper's ``alpha`` lies in ``[0, 1]``; callers clip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spectrum:
    """The eigendecomposition of a Gram matrix and the ridge shrinkage of each eigenvector.

    Attributes:
        vectors: ``V`` (columns are orthonormal eigenvectors).
        values: ``d``, the eigenvalues of ``K`` (clipped at 0 against round-off).
        lam: the ridge penalty.
    """

    vectors: np.ndarray
    values: np.ndarray
    lam: float

    @property
    def shrinkage(self) -> np.ndarray:
        """``a = d / (d + lam)``: how much of each eigen-direction a ridge fit keeps."""
        return self.values / (self.values + self.lam)

    def to_basis(self, v: np.ndarray) -> np.ndarray:
        """``V^T v``."""
        return self.vectors.T @ v

    def from_basis(self, z: np.ndarray) -> np.ndarray:
        """``V z``."""
        return self.vectors @ z


def spectrum(gram: np.ndarray, lam: float) -> Spectrum:
    """Eigendecompose the symmetric positive semi-definite ``gram``; ridge penalty ``lam > 0``."""
    if lam <= 0:
        raise ValueError(f"the ridge penalty must be positive, got {lam}")
    values, vectors = np.linalg.eigh(gram)
    return Spectrum(vectors=vectors, values=np.clip(values, 0.0, None), lam=lam)


def ridge_fit(gram: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    """Kernel ridge regression's fit on the training inputs: ``K (K + lam I)^-1 targets``."""
    return gram @ np.linalg.solve(gram + lam * np.eye(len(gram)), targets)


def distill_steps(
    gram: np.ndarray, y: np.ndarray, lam: float, weights: Sequence[float]
) -> list[np.ndarray]:
    """Fits ``[f_0(X), f_1(X), ...]`` by refitting each step on its mixed targets (the definition).

    Args:
        gram: ``K`` over the training inputs.
        y: the ground-truth targets.
        lam: the ridge penalty.
        weights: ``alpha_1, alpha_2, ...``: the ground-truth weight of each distillation step.
    """
    fits = [ridge_fit(gram, y, lam)]
    for alpha in weights:
        fits.append(ridge_fit(gram, alpha * y + (1 - alpha) * fits[-1], lam))
    return fits


def step_multipliers(spec: Spectrum, weights: Sequence[float]) -> np.ndarray:
    """``b_t``: the multiplier of each eigen-direction of ``y`` after the steps ``weights``."""
    a = spec.shrinkage
    b = a.copy()
    for alpha in weights:
        b = a * (alpha + (1 - alpha) * b)
    return b


def fit_from_initial(
    spec: Spectrum, initial_fit: np.ndarray, weights: Sequence[float]
) -> np.ndarray:
    """The fit after the steps ``weights`` computed from the initial fit ``f_0(X)`` alone.

    Directions that ridge removes entirely (``d = 0``) stay at 0.
    """
    a = spec.shrinkage
    ratio = np.divide(step_multipliers(spec, weights), a, out=np.zeros_like(a), where=a > 0)
    return spec.from_basis(ratio * spec.to_basis(initial_fit))


def limit_fit(gram: np.ndarray, y: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    """Infinitely many steps of weight ``alpha``: ridge regression with penalty ``lam / alpha``."""
    if not 0 < alpha <= 1:
        raise ValueError(f"the limit needs a ground-truth weight in (0, 1], got {alpha}")
    return ridge_fit(gram, y, lam / alpha)


def optimal_weight(
    spec: Spectrum, y: np.ndarray, target: np.ndarray, previous: Sequence[float] = ()
) -> float:
    """The closed-form ground-truth weight of the next step that brings its fit closest to
    ``target`` (squared error over the training inputs).

    Args:
        spec: the Gram matrix's :class:`Spectrum`.
        y: the (noisy) ground-truth targets the steps are trained on.
        target: what the fit should approach, e.g. the noiseless function at the inputs.
        previous: the weights of the steps already taken (the teacher is their last fit).
    """
    z = spec.to_basis(y)
    teacher = step_multipliers(spec, previous)
    at_zero = spec.shrinkage * teacher * z  # the student trained on the teacher alone
    at_one = spec.shrinkage * z  # the student trained on y alone: the initial fit
    return projection_weight(spec.to_basis(target), at_zero, at_one)


def projection_weight(target, at_zero, at_one) -> float:
    """The ``w`` minimising ``||w * at_one + (1 - w) * at_zero - target||^2``.

    The paper's estimate for deep networks: ``at_one`` and ``at_zero`` are the (validation)
    predictions of the students trained on the ground truth alone and on the teacher alone,
    ``target`` the held-out ground truth (one-hot rows for classification); any shape, summed
    over every entry.
    """
    target, at_zero, at_one = (np.asarray(v, dtype=np.float64) for v in (target, at_zero, at_one))
    direction = at_one - at_zero
    norm = float(np.sum(direction * direction))
    if norm == 0.0:
        raise ValueError("both students predict the same: the ground-truth weight is undetermined")
    return float(np.sum((target - at_zero) * direction) / norm)
