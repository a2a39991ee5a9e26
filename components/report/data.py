"""What a run report shows: :class:`ReportData` and the typed sections it holds.

The sections are plain dicts at run time (JSON-ready, built by the stages that produce them);
the ``TypedDict`` types below name the keys the report's section modules read. Every key is
optional unless marked ``Required``: the report shows what exists and leaves the rest out.
Further keys are allowed where a docstring says so (e.g. per-term losses in a history row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Required, TypedDict

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from components.report.display import InputScale

Scalar = float | int | str | bool | None


# --- evaluation -------------------------------------------------------------------------------


class ReliabilityBins(TypedDict):
    """Per calibration bin: mean confidence, accuracy (None for an empty bin), count, edges."""

    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]
    edges: list[float]


class RobustnessSummary(TypedDict):
    """Certified l2 radius per test prediction and certified accuracy per epsilon
    (:func:`components.evaluation.analyses.robustness_summary`)."""

    radius: list[float]
    correct: list[bool]
    mean_radius_correct: float
    certified_accuracy: dict[str, float]


class UncertaintySummary(TypedDict, total=False):
    """Uncertainty per test prediction and how well it flags mistakes and noise
    (:func:`components.evaluation.analyses.uncertainty_summary`)."""

    wrong: Required[list[bool]]
    total: list[float]
    aleatoric: list[float]
    epistemic: list[float]
    explanation_percentile: list[float]
    auroc_wrong: float | None
    auroc_ood_noise: float
    mean_total_right: float | None
    mean_total_wrong: float | None
    mean_total_ood_noise: float


class PrototypeScores(TypedDict):
    """Consistency and stability of one network against ground-truth part masks."""

    consistency: float
    stability: float


# Functional form: "class" is a keyword, so it cannot be a class attribute.
PrototypeHit = TypedDict(
    "PrototypeHit",
    {"class": int | None, "part": str | None, "frequency": float, "consistent": bool},
    total=False,
)
"""One trained prototype: its class, the part it hits most, how often, and the verdict."""


class PrototypeQuality(TypedDict, total=False):
    """Consistency and stability, trained against untrained (Huang et al., ICCV 2023)."""

    trained: PrototypeScores
    untrained: PrototypeScores
    per_prototype: list[PrototypeHit]


class EvaluationMetrics(TypedDict, total=False):
    """The evaluated split's metrics (:mod:`components.evaluation.analyses`); further scalar
    entries (e.g. ``test_accuracy`` of a sweep) are listed too."""

    task: str
    accuracy: float
    macro_f1: float
    nll: float
    ece: float
    num_samples: int
    per_class_accuracy: list[float | None]
    confusion_matrix: list[list[int]]
    reliability: ReliabilityBins
    clustering_accuracy: float
    nmi: float
    ari: float
    robustness: RobustnessSummary
    uncertainty: UncertaintySummary
    prototype_quality: PrototypeQuality
    analysis_rows: int


class EpochRow(TypedDict, total=False):
    """One epoch of training; ``train_<term>`` / ``val_<term>`` per loss term may follow."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float


# --- run and data -----------------------------------------------------------------------------


class RunMeta(TypedDict, total=False):
    """The run's ``meta.json`` (git sha, package versions, seeds, device); nested dicts allowed."""

    run_id: str
    started: str
    git_sha: str
    python: str
    platform: str
    packages: dict[str, str]
    seeds: dict[str, int]
    device: str


class DroppedFile(TypedDict):
    """An image file left out as invalid, and why."""

    path: str
    reason: str


class DataMeta(TypedDict, total=False):
    """The dataset's ``meta.json`` as the report reads it.

    ``normalization``'s ``mean`` and ``std`` undo the standardisation of every input drawn
    (:class:`~components.report.display.InputScale`); ``source`` is the data config (only the
    keys of the source used are shown) or a plain string; ``kind``, ``image_size``,
    ``ignored_files`` and ``dropped_files`` belong to image datasets, ``layout`` to them and to
    Parquet files named for their split; ``fixed_splits``: the splits the source's folder or file
    names fixed (their ``*_fraction`` keys are not shown).
    """

    source: dict[str, Scalar | list] | str
    feature_shape: list[int]
    class_names: list[str]
    row_counts: dict[str, int]
    dropped_rows: int
    dropped_by_reason: dict[str, int]
    normalization: dict[str, list[float] | str]
    kind: str
    layout: str
    fixed_splits: list[str]
    image_size: int | list[int]
    ignored_files: int
    dropped_files: list[DroppedFile]


class TrainingSection(TypedDict, total=False):
    """How training ran: the epochs after which it resumed from a checkpoint, and the worker
    group's attempts (``attempt``, ``first_epoch``, ``last_epoch``, ``nodes``: one Ray node id
    per rank)."""

    resumed_at: list[int]
    attempts: list[dict[str, int | list[str]]]


# --- explanations -----------------------------------------------------------------------------


# Functional form: "class" is a keyword, so it cannot be a class attribute.
PrototypeContribution = TypedDict(
    "PrototypeContribution",
    {
        "index": Required[int],
        "class": int,
        "distance": float,
        "similarity": float,
        "contribution": float,
        "box": list[int],
    },
    total=False,
)
"""One of a sample's top prototypes (``class``: its class index) and, for part prototypes, the
``box`` of the input region that looks like it."""


class ExplainedSample(TypedDict, total=False):
    """One explained test sample: prediction, and its logit as bias plus contributions."""

    index: Required[int]
    true: Required[int]
    predicted: Required[int]
    probability: float
    logit: float
    bias: float
    total_contribution: float
    decomposition_error: float
    prototypes: list[PrototypeContribution]


class Gallery(TypedDict, total=False):
    """The prototypes drawn: decoded, or the training samples they were pushed onto with their
    similarity ``maps`` and ``boxes``; ``classes``: the class each votes for."""

    images: Required[ArrayLike]
    classes: list[int]
    maps: ArrayLike
    boxes: list[list[int]]


class Ranking(TypedDict, total=False):
    """The chooser's ranking of the post-hoc methods on one metric (``rows``: ``method``,
    ``mean``, ``ci_low``, ``ci_high``, ``p_best``, ``rank``)."""

    metric: str
    higher_is_better: bool | None
    num_samples: int
    confidence: float
    rows: list[dict[str, Scalar]]


class PostHoc(TypedDict, total=False):
    """The post-hoc attribution methods, their metrics and ranking
    (:mod:`components.report.posthoc_section` says what each key shows).

    ``surrogate``: ``kind``, ``fidelity``, ``features``, ``rules``, ``top_k``; ``sp_lime``:
    ``method``, ``picked``, ``coverage``; ``budget``: ``budget_s``, ``spent_s``, ``seconds`` per
    part, ``chosen`` / ``requested`` counts, ``skipped``, ``feature_groups``.
    """

    methods: list[str]
    labels: dict[str, str]
    sample_indices: list[int]
    inputs: ArrayLike
    predicted: list[int]
    true: list[int]
    attributions: dict[str, ArrayLike]
    metrics: dict[str, dict[str, float]]
    metric_directions: dict[str, str]
    ranking: Ranking
    recommended: str
    surrogate: dict[str, object]
    sp_lime: dict[str, object]
    timings: dict[str, float]
    budget: dict[str, object]
    input_scale: InputScale  # added by the page: how its figures draw inputs


class Explanations(TypedDict, total=False):
    """:func:`components.explain.explain_model`'s result, the "because" table (one row per
    prototype: similarity drop per visual characteristic) and the post-hoc methods'."""

    kind: str
    samples: list[ExplainedSample]
    inputs: ArrayLike
    attributions: ArrayLike | None
    gallery: Gallery | None
    because: list[dict[str, float]]
    post_hoc: PostHoc
    concept_maps: ArrayLike  # (samples, concepts, h, w): concept models' attention per token


# --- search, federated, continual -------------------------------------------------------------


class SearchTrial(TypedDict, total=False):
    """One trial of a sweep; the ranking metric is one of its keys too."""

    trial: str
    status: str
    config: dict[str, Scalar]
    history: list[EpochRow]
    epochs: int
    val_loss: float
    val_accuracy: float
    exploited: bool
    error: str | None


class SearchSection(TypedDict, total=False):
    """How a sweep found the run's configuration (:mod:`components.report.search_section`).

    ``best``: the best trial's ``trial``, ``config`` and scalar results; ``schedules`` (STN):
    trial -> per-epoch hyperparameter rows; ``replayed_schedule`` (STN): the per-epoch rows the
    retrain replayed; ``genotype``, ``alphas``, ``primitives`` (NAS):
    the searched cells, keyed ``normal`` and ``reduce``.
    """

    method: str
    metric: str
    mode: str
    experiment_path: str
    trials: list[SearchTrial]
    best: dict[str, object]
    schedules: dict[str, list[dict[str, float]]]
    replayed_schedule: list[dict[str, float]]
    genotype: dict[str, list]
    alphas: dict[str, list]
    primitives: list[str]


class FederatedRound(TypedDict, total=False):
    """One round of a strategy: who was sampled and took part, bytes each way, accuracy."""

    round: int
    sampled: list[int]
    participants: list[int]
    bytes_sent: dict[str, int]
    bytes_received: dict[str, int]
    accuracy: float | None
    wall_s: float


class FederatedEvent(TypedDict, total=False):
    """A client update that did not reach the merge (``kind``: dropped, rejected, skipped)."""

    round: int
    client: int
    kind: str
    reason: str


class StrategyResult(TypedDict, total=False):
    """One federated strategy's outcome."""

    final_accuracy: float
    client_accuracy: dict[str, float]
    rounds: list[FederatedRound]
    events: list[FederatedEvent]


class FederatedClient(TypedDict, total=False):
    """One client's shard: its training samples and classes (indices, or names once the page
    has named them)."""

    client: int
    samples: int
    classes: list[int | str]


class FederatedSection(TypedDict, total=False):
    """A federated run's setup and results (:mod:`components.report.federated_section`)."""

    partition: str
    alpha: float | None
    num_clients: int
    rounds: int
    fraction: float
    local_epochs: int | None
    aggregation: str
    byzantine: int
    clients: list[FederatedClient]
    strategies: dict[str, StrategyResult]


class ContinualMethod(TypedDict, total=False):
    """One continual-learning method: accuracy matrix ``R``, its
    :func:`components.continual.metrics.summary`, wall time and learning rates per step."""

    R: list[list[float | None]]
    summary: dict[str, float | None]
    wall_s: float
    lrs: list[float] | None


class FederatedContinual(TypedDict, total=False):
    """Federated continual learning: the merged model's and each client's accuracy matrix."""

    num_clients: int
    method: str
    R_merged: list[list[float | None]]
    R_clients: dict[str, list[list[float | None]]]
    summary_merged: dict[str, float | None]
    bytes_per_merge: list[int]


class ContinualSection(TypedDict, total=False):
    """A continual-learning run's task stream and results
    (:mod:`components.report.continual_section`); ``tasks``: each task's classes."""

    dataset: str
    num_tasks: int
    tasks: list[list[int | str]]
    schedule: dict[str, Scalar] | None
    methods: dict[str, ContinualMethod]
    federated: FederatedContinual | None


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything a run report shows; built with keywords only and never changed afterwards.

    Attributes:
        title: page title.
        run_id: the run's id.
        headline: the few numbers shown first, name -> value.
        metrics: the evaluated split's metrics; further scalar entries are listed too.
        history: one row per epoch (keyed ``epoch``), or per logged optimiser step (keyed
            ``step``, no ``epoch``: ``sennflow pfn-train``); the curves' x axis says which.
        config_yaml: the resolved configuration as YAML text.
        meta: run metadata; nested dicts allowed.
        data_meta: the dataset's ``meta.json``.
        explanations: the model's own and the post-hoc explanations, or None.
        class_names: class names by index (missing names fall back to the index); every figure
            and table that shows a class names it.
        feature_shape: shape of one sample, e.g. ``(1, 8, 8)`` or ``(30,)``.
        search: for a run found by a sweep, how it was found; shown in the "Search" section.
        federated: for a federated run, its setup, clients and per-strategy rounds and events;
            shown in the "Federated learning" section.
        continual: for a continual-learning run, its task stream and per-method accuracy
            matrices and metrics; shown in the "Continual learning" section.
        training: how training ran (resumes, the workers' nodes); shown in the "Training"
            section.
        ftwt: for a run with ``train.dynamic_pruning=ftwt``, FLOPs per input and accuracy with
            and without gating (:mod:`components.report.ftwt_section`).
        prune: for a prune run, its setup and lottery rounds
            (:mod:`components.report.prune_section`); shown in the "Lottery tickets" section.
        ssl: for a pretrain run, its objective, SSL history, probes and cross-correlation
            (:mod:`components.report.ssl_section`); shown in "Self-supervised pre-training".
        circuit: the trained model as a neural circuit diagram
            (:func:`components.report.circuit.trace_circuit`); shown in the "Model" section.
        predictions: for a predict run, what was predicted
            (:func:`components.predict.predictions.prediction_summary` plus ``input``,
            ``source_run`` and ``file``); shown in the "Predictions" section.
    """

    title: str
    run_id: str
    headline: dict[str, Scalar]
    metrics: EvaluationMetrics
    history: list[EpochRow]
    config_yaml: str
    meta: RunMeta
    data_meta: DataMeta
    explanations: Explanations | None
    class_names: list[str]
    feature_shape: tuple[int, ...]
    search: SearchSection | None = None
    federated: FederatedSection | None = None
    continual: ContinualSection | None = None
    training: TrainingSection | None = None
    prune: dict | None = None
    ssl: dict | None = None
    ftwt: dict | None = None
    circuit: dict | None = None
    predictions: dict | None = None
