"""Typed settings of the explain stage (converted from Hydra config at the flow edge)."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.perturbation.groups import FEATURE_GROUPS

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
        surrogate_samples: training rows the global surrogate is fitted on, at most (the first
            rows of the train split; its fidelity is measured on as many test rows).
        feature_groups: the interpretable features of every removal-based method and metric
            (``auto`` | ``none`` | ``patches`` | ``superpixels``; see
            :func:`components.perturbation.groups.group_labels`). ``auto`` keeps one
            feature per pixel or column on small inputs and groups larger images into patches.
        patch_size: patch side in pixels for ``auto``/``patches`` (None: an 8x8 grid on images
            above 16x16); ``superpixels`` make about as many segments as there are patches.
        budget_s: seconds the explain stage may take: a number, or ``auto`` (the training
            stage's wall time, at least :data:`~components.explain.posthoc.budget.AUTO_FLOOR_S`).
            The stage measures what one unit of each part costs and lowers the counts above to
            fit (never raising them), and reports what it chose, skipped and spent.
        num_tasks: Ray tasks the explanations fan out over (1: in the driver).
        seed: seeds every sampling method and metric (the run's global seed).
        checks: trust checks run after the explanations, any of
            :data:`components.explain.checks.CHECKS` (:mod:`components.explain.checks`).
        sanity, sae, segmentation, naps, beyond: each check's own settings
            (``explain.<check>.<key>``), validated by its module.
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
    surrogate_samples: int = 2048
    feature_groups: str = "auto"
    patch_size: int | None = None
    budget_s: float | str = "auto"
    num_tasks: int = 1
    seed: int = 0
    checks: tuple[str, ...] = ()
    sanity: dict = field(default_factory=dict)
    sae: dict = field(default_factory=dict)
    segmentation: dict = field(default_factory=dict)
    naps: dict = field(default_factory=dict)
    beyond: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        methods = POST_HOC_METHODS if self.methods in ("all", ("all",)) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "checks", tuple(self.checks))
        self._validate_checks()
        unknown = [m for m in methods if m not in POST_HOC_METHODS]
        if unknown:
            raise ValueError(
                f"explain.methods: unknown {unknown}; choose from {list(POST_HOC_METHODS)} or all"
            )
        bad = [name for name in _POSITIVE if getattr(self, name) < 1]
        if not 0 < self.top_k_fraction < 1:
            bad.append("top_k_fraction")
        if self.robustness_samples < 0:
            bad.append("robustness_samples")
        if self.feature_groups not in FEATURE_GROUPS:
            bad.append("feature_groups")
        if self.patch_size is not None and not _is_positive_int(self.patch_size):
            bad.append("patch_size")
        if self.budget_s != "auto" and not _is_positive_number(self.budget_s):
            bad.append("budget_s")
        if self.removal not in ("baseline", "mean", "noise", "blur"):
            bad.append("removal")
        if self.rank_by not in RANK_METRICS:
            bad.append("rank_by")
        if bad:
            values = ", ".join(f"explain.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid explain config: {values}{_hints(bad)}")

    def _validate_checks(self) -> None:
        from components.explain.checks.runner import validate_checks

        blocks = {name: getattr(self, name) for name in self.checks if hasattr(self, name)}
        validate_checks(self.checks, blocks)


_POSITIVE = (  # the counts that must be >= 1
    "num_samples",
    "top_k",
    "ig_steps",
    "eval_samples",
    "perturbation_samples",
    "surrogate_top_k",
    "surrogate_depth",
    "surrogate_samples",
    "num_tasks",
)
_HINTS = {
    **{name: f"{name} is >= 1" for name in _POSITIVE},
    "robustness_samples": "robustness_samples is >= 0",
    "top_k_fraction": "top_k_fraction is in (0, 1)",
    "feature_groups": f"feature_groups is one of {list(FEATURE_GROUPS)}",
    "patch_size": "patch_size is a positive integer or null",
    "budget_s": "budget_s is auto or a number of seconds > 0",
}


def _hints(bad: list[str]) -> str:
    hints = [_HINTS[name] for name in bad if name in _HINTS]
    return f" ({'; '.join(hints)})" if hints else ""


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_positive_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value > 0 and value != float("inf")
