"""Explanation throughput: the pipeline's explain stage vs a direct captum call (target >= 0.8x).

For each post-hoc method, explanations per second on the first 256 test digits with the default
model (``proto_ae``, 1x8x8, 10 classes), through the path the explain stage takes
(``components.explain.posthoc.stage.local_attribute(model)(method, x, groups, config)`` with
``perturbation_samples=200``, seed 0, and the config's feature groups, computed once as the stage
does: ``auto`` is one group per pixel on 8x8 digits; it calls
``components.explain.posthoc.methods.attribute``) and through the captum call a user would write for
the same method with the same settings, on the same inputs, side by side in one run. Each path is
timed with ``time.perf_counter`` after one warm-up call; the two paths alternate within each
repeat and the median over the repeats is reported (explanations/s = 256 / seconds); the ratio
in process CPU time is printed too (robust to other jobs on a shared machine). Both paths run
with one torch thread and one BLAS / OpenMP thread (``threadpoolctl``, for scikit-learn's fits)
and include everything an explanation needs: the forward that picks the target (the predicted
class) and, for the pipeline, the numpy in / numpy out of ``attribute``.

The model is trained briefly first (``--train-epochs``, a plain loop over the training split with
the model's own loss): throughput does not depend on the weights, but the agreement check below
needs a model whose logits move with its inputs (an untrained model's LIME Lasso is all zeros).

The direct calls (forward ``f = lambda x: model(x).logits``, model in eval mode, targets
``f(x).argmax(1)``; ``mask`` = one interpretable feature per pixel, ``arange(64)`` shaped
``(1, 1, 8, 8)``, the pipeline's default grouping for 8x8 images and also captum's default;
``sigma`` = 15% of the inputs' value range, the pipeline's default noise for SmoothGrad and
C-LIME; stochastic methods seeded with ``torch.manual_seed(seed)`` as the pipeline does):

* ``gradients``: ``Saliency(f).attribute(x, target=t, abs=False)``.
* ``gradient_x_input``: ``InputXGradient(f).attribute(x, target=t)``.
* ``smoothgrad``: ``NoiseTunnel(Saliency(f)).attribute(x, nt_type="smoothgrad", nt_samples=50,
  nt_samples_batch_size=4, stdevs=sigma, target=t, abs=False)`` (50 = the pipeline's default; 4
  noisy copies of 256 rows = the pipeline's 1024 rows per model call).
* ``ig``: ``IntegratedGradients(f).attribute(x, baselines=0, target=t, n_steps=32,
  internal_batch_size=1024)``.
* ``occlusion``: captum's ``Occlusion`` with 1x1 windows (``sliding_window_shapes=(1, 1, 1)``,
  stride 1) and a zero baseline, ``perturbations_per_eval=4`` (4 x 256 = 1024 rows per model
  call, the pipeline's batch). The pipeline computes Occlusion itself (batched over
  (input, window) pairs, ``lfa.occlusion``), not with captum.
* ``lime``: ``Lime(f, interpretable_model=SkLearnLasso(alpha=0.01),
  similarity_func=get_exp_kernel_similarity_function("cosine", 1.0))`` (captum's defaults, as
  the pipeline sets them), ``.attribute(x, baselines=0, target=t, feature_mask=mask,
  n_samples=200, perturbations_per_eval=200)``. captum fits one Lasso per sample.
* ``kernel_shap``: ``KernelShap(f).attribute(x, baselines=0, target=t, feature_mask=mask,
  n_samples=200, perturbations_per_eval=200)``.
* ``c_lime`` (continuous LIME; captum has no class for it): captum's ``LimeBase``, per sample,
  with a Gaussian perturbation function in the interpretable space (``sigma * randn(64)``, one
  coordinate per pixel, added to the input), uniform similarity (1.0) and
  ``SkLearnLinearRegression`` (least squares with intercept) as the interpretable model,
  ``n_samples=200, perturbations_per_eval=200``. The pipeline computes it batched over samples
  (``lfa.c_lime``).

Agreement: per method, the max absolute difference and the Pearson correlation of the two paths'
attributions over all 256 x 64 values. The deterministic methods, and the sampling methods that
both paths run through captum with the same global seed (smoothgrad, lime, kernel_shap), should
agree to float precision. C-LIME draws its noise from different generators in the two paths, so
it can only agree statistically: its row also shows the correlation of the pipeline with itself
under another seed (the noise floor for 200 samples).

    python bench/explain_throughput.py                        # all 8 methods, 3 repeats
    python bench/explain_throughput.py --methods gradients ig --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnLasso, SkLearnLinearRegression
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    LimeBase,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from captum.attr._core.lime import get_exp_kernel_similarity_function
from threadpoolctl import threadpool_limits

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.explain.config import ExplainConfig
from components.explain.posthoc.methods import DEFAULT_BATCH_SIZE, DEFAULT_NUM_SAMPLES, METHODS
from components.explain.posthoc.stage import local_attribute
from components.perturbation.groups import group_labels
from components.training.checkpoint import ModelSpec

# Deterministic first, then the sampling methods (slowest last).
ORDER = ("gradients", "gradient_x_input", "smoothgrad", "ig", "occlusion", "lime", "kernel_shap")
ORDER = (*ORDER, "c_lime")
assert sorted(ORDER) == sorted(METHODS)
EXACT = ("gradients", "gradient_x_input", "smoothgrad", "ig", "occlusion", "lime", "kernel_shap")


def train_briefly(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """A few epochs of Adam (lr 2e-3, batch 64) on the model's own loss: a plain loop."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=generator).split(64):
            loss = model.loss(model(xt[idx]), xt[idx], yt[idx])["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


class Direct:
    """The captum calls a user would write, with the pipeline's settings (module docstring)."""

    def __init__(self, model: torch.nn.Module, samples: int, seed: int) -> None:
        self.model, self.samples, self.seed = model.eval(), samples, seed

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits

    def __call__(self, method: str, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = self.f(x).argmax(1)
        mask = torch.arange(x[0].numel()).reshape(1, *x.shape[1:])
        sigma = 0.15 * float(x.max() - x.min())
        torch.manual_seed(self.seed)
        return getattr(self, method)(x, t, mask, sigma)

    def gradients(self, x, t, mask, sigma):
        return Saliency(self.f).attribute(x.requires_grad_(), target=t, abs=False)

    def gradient_x_input(self, x, t, mask, sigma):
        return InputXGradient(self.f).attribute(x.requires_grad_(), target=t)

    def smoothgrad(self, x, t, mask, sigma):
        return NoiseTunnel(Saliency(self.f)).attribute(
            x.requires_grad_(),
            nt_type="smoothgrad",
            nt_samples=DEFAULT_NUM_SAMPLES["smoothgrad"],
            nt_samples_batch_size=max(1, DEFAULT_BATCH_SIZE // len(x)),
            stdevs=sigma,
            target=t,
            abs=False,
        )

    def ig(self, x, t, mask, sigma):
        return IntegratedGradients(self.f).attribute(
            x.requires_grad_(),
            baselines=0.0,
            target=t,
            n_steps=DEFAULT_NUM_SAMPLES["ig"],
            internal_batch_size=DEFAULT_BATCH_SIZE,
        )

    def occlusion(self, x, t, mask, sigma):
        return Occlusion(self.f).attribute(
            x,
            sliding_window_shapes=(1,) * (x.dim() - 1),
            strides=1,
            baselines=0.0,
            target=t,
            perturbations_per_eval=max(1, DEFAULT_BATCH_SIZE // len(x)),
        )

    def lime(self, x, t, mask, sigma):
        explainer = Lime(
            self.f,
            interpretable_model=SkLearnLasso(alpha=0.01),
            similarity_func=get_exp_kernel_similarity_function("cosine", 1.0),
        )
        return self._sampling(explainer, x, t, mask)

    def kernel_shap(self, x, t, mask, sigma):
        return self._sampling(KernelShap(self.f), x, t, mask)

    def _sampling(self, explainer, x, t, mask):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="You are providing multiple inputs")
            return explainer.attribute(
                x,
                baselines=0.0,
                target=t,
                feature_mask=mask,
                n_samples=self.samples,
                perturbations_per_eval=self.samples,
            )

    def c_lime(self, x, t, mask, sigma):
        explainer = LimeBase(
            self.f,
            interpretable_model=SkLearnLinearRegression(),
            similarity_func=_uniform_similarity,
            perturb_func=_gaussian_perturbation,
            perturb_interpretable_space=True,
            from_interp_rep_transform=_add_noise,
            to_interp_rep_transform=None,
        )
        out = torch.empty_like(x)
        for i in range(len(x)):
            coefs = explainer.attribute(
                x[i : i + 1],
                target=int(t[i]),
                n_samples=self.samples,
                perturbations_per_eval=self.samples,
                sigma=sigma,
                feature_mask=mask,
                num_interp_features=mask.numel(),
            )
            out[i] = coefs.reshape(-1)[mask[0]]
        return out


def _uniform_similarity(original, perturbed, interpretable, **kwargs) -> float:
    return 1.0


def _gaussian_perturbation(original: torch.Tensor, **kwargs) -> torch.Tensor:
    """One neighbour in the interpretable space: Gaussian noise per feature group."""
    return kwargs["sigma"] * torch.randn(1, kwargs["num_interp_features"])


def _add_noise(sample: torch.Tensor, original: torch.Tensor, **kwargs) -> torch.Tensor:
    return original + sample[0][kwargs["feature_mask"]]


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall time and process CPU time of one call of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max absolute difference and Pearson correlation over all values."""
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return float(np.abs(a - b).max()), r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(ORDER), choices=ORDER)
    parser.add_argument("--rows", type=int, default=256, help="test digits explained")
    parser.add_argument("--samples", type=int, default=200, help="perturbation_samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-epochs", type=int, default=30, help="0: untrained model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # The same limit for the BLAS / OpenMP pools of numpy, scipy and scikit-learn (the LIME and
    # KernelSHAP surrogates): spinning BLAS threads on a shared 2-core machine stall both paths.
    threadpool_limits(args.threads)

    with tempfile.TemporaryDirectory(prefix="sennflow-explain-") as tmp:
        path = ingest(DataSpec(source="digits"), Path(tmp)).path
        train_x, train_y = read_split(path, "train")
        test_x, test_y = read_split(path, "test")
    x = np.ascontiguousarray(test_x[: args.rows], dtype=np.float32)
    torch.manual_seed(args.seed)
    model = ModelSpec("proto_ae", tuple(x.shape[1:]), 10).build()
    start = time.perf_counter()
    train_briefly(model, train_x, train_y, args.train_epochs)
    with torch.no_grad():
        accuracy = float(
            (model(torch.from_numpy(x)).logits.argmax(1).numpy() == test_y[: len(x)]).mean()
        )
    print(
        f"proto_ae trained {args.train_epochs} epochs in {time.perf_counter() - start:.1f} s; "
        f"accuracy on the {len(x)} test digits {accuracy:.3f}"
    )

    settings = ExplainConfig(
        methods=tuple(args.methods), perturbation_samples=args.samples, seed=args.seed
    )
    groups = group_labels(x, settings.feature_groups, settings.patch_size)
    pipeline = local_attribute(model)
    direct = Direct(model, args.samples, args.seed)
    xt = torch.from_numpy(x)

    rows = []
    for method in args.methods:
        run_p = lambda m=method: pipeline(m, x, groups, settings)  # noqa: E731
        run_d = lambda m=method: direct(m, xt.clone()).detach().numpy()  # noqa: E731
        a_p, a_d = run_p(), run_d()  # warm-up, and the attributions compared
        p_times, d_times = [], []
        for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both
            p_times.append(timed(run_p))
            d_times.append(timed(run_d))
        p_rate = len(x) / statistics.median(t for t, _ in p_times)
        d_rate = len(x) / statistics.median(t for t, _ in d_times)
        cpu_ratio = statistics.median(c for _, c in d_times) / statistics.median(
            c for _, c in p_times
        )
        diff, r = agreement(a_p, a_d)
        floor = None
        if method not in EXACT:
            other = ExplainConfig(
                methods=(method,), perturbation_samples=args.samples, seed=args.seed + 1
            )
            floor = agreement(a_p, pipeline(method, x, groups, other))[1]
        rows.append((method, p_rate, d_rate, cpu_ratio, diff, r, floor))
        print(
            f"  {method}: wall (CPU) s, pipeline "
            + " ".join(f"{t:.3f} ({c:.3f})" for t, c in p_times)
            + ", direct "
            + " ".join(f"{t:.3f} ({c:.3f})" for t, c in d_times),
            flush=True,
        )

    print(
        f"\nexplanations/s, {len(x)} test digits, proto_ae, perturbation_samples {args.samples}, "
        f"median of {args.repeats} after 1 warm-up, {args.threads} thread(s)"
    )
    header = f"{'method':<18}{'pipeline':>11}{'direct':>11}{'ratio':>8}  {'>=0.8':<6}"
    print(header + f"{'CPU ratio':>10}{'max |diff|':>12}{'r':>9}  r, pipeline seed+1")
    for method, p_rate, d_rate, cpu_ratio, diff, r, floor in rows:
        ok = "yes" if p_rate / d_rate >= 0.8 else "NO"
        tail = f"{floor:.4f}" if floor is not None else "-"
        print(
            f"{method:<18}{p_rate:>11,.1f}{d_rate:>11,.1f}{p_rate / d_rate:>8.2f}  {ok:<6}"
            f"{cpu_ratio:>10.2f}{diff:>12.2e}{r:>9.5f}  {tail}"
        )


if __name__ == "__main__":
    main()
