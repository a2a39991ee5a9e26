"""Typed settings of the explain stage (converted from Hydra config at the flow edge)."""

from __future__ import annotations

from dataclasses import dataclass

# In order of preference: the chooser keeps this order among equally faithful methods
# (deterministic before sampled).
POST_HOC_METHODS = (
    "ig",
    "gradients",
    "gradient_x_input",
    "smoothgrad",
    "occlusion",
    "lime",
    "c_lime",
    "kernel_shap",
)

RANK_METRICS = (
    "infidelity_gaussian",
    "infidelity",
    "pgi",
    "pgu",
    "fid_plus",
    "fid_minus",
    "fid_delta",
    "deletion",
    "insertion",
)


@dataclass(frozen=True)
class ExplainConfig:
    """What the explain stage explains, with which post-hoc methods, and how it scores them.

    Attributes:
        num_samples: test samples shown in the report.
        top_k: prototypes shown per sample.
        ig_steps: Integrated Gradients steps.
        methods: post-hoc methods (``all`` in config means every one of POST_HOC_METHODS).
        eval_samples: held-out test samples every method is explained and scored on.
        perturbation_samples: model evaluations per explanation of LIME, C-LIME, KernelSHAP.
        top_k_fraction: share of features counted as "important" by PGI/PGU and Fid.
        removal: how metrics remove features: baseline | mean | noise | blur.
        rank_by: the faithfulness metric the chooser ranks methods by (one of RANK_METRICS;
            the neighbourhood it perturbs in decides which methods it favours, Han et al. 2022).
        robustness_samples: samples (of eval_samples) scored for sensitivity and stability
            (each re-explains perturbed inputs: the expensive metrics).
        surrogate_top_k: features the global surrogate uses.
        surrogate_depth: depth of the surrogate decision tree.
        num_tasks: Ray tasks the explanations fan out over (1: in the driver).
        seed: seeds every sampling method and metric (the run's global seed).
    """

    num_samples: int = 6
    top_k: int = 3
    ig_steps: int = 32
    methods: tuple[str, ...] = POST_HOC_METHODS
    eval_samples: int = 64
    perturbation_samples: int = 200
    top_k_fraction: float = 0.25
    removal: str = "baseline"
    rank_by: str = "infidelity_gaussian"
    robustness_samples: int = 8
    surrogate_top_k: int = 16
    surrogate_depth: int = 4
    num_tasks: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        methods = POST_HOC_METHODS if self.methods in ("all", ("all",)) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        unknown = [m for m in methods if m not in POST_HOC_METHODS]
        if unknown:
            raise ValueError(
                f"explain.methods: unknown {unknown}; choose from {list(POST_HOC_METHODS)} or all"
            )
        positive = ("num_samples", "ig_steps", "eval_samples", "perturbation_samples", "num_tasks")
        bad = [name for name in positive if getattr(self, name) < 1]
        if not 0 < self.top_k_fraction < 1:
            bad.append("top_k_fraction")
        if self.removal not in ("baseline", "mean", "noise", "blur"):
            bad.append("removal")
        if self.rank_by not in RANK_METRICS:
            bad.append("rank_by")
        if bad:
            values = ", ".join(f"explain.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid explain config: {values}")
