"""The report's "Search" section: how the reported configuration was found.

Shown when :attr:`components.report.ReportData.search` is set by a sweep; every part except the
trial table is optional and left out when its data is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from components.report import markup
from components.report.bossnas_section import bossnas_parts
from components.report.data import SearchSection
from components.report.figure_set import FigureSet
from components.report.pareto_figure import pareto_figure, pareto_table, pick_sentence
from components.report.search_figures import (
    alphas_figure,
    genotype_figure,
    hyperparameter_figure,
    is_failed,
    metric_of,
    schedules_figure,
    short_trial_name,
    sort_trials,
    trial_curves_figure,
)

_METHODS = {
    "asha": "random search with the ASHA scheduler (Li et al., 2020), which stops trials whose "
    "metric is poor at a rung early and gives their budget to the promising ones",
    "pbt": "Population Based Training (Jaderberg et al., 2017): trials periodically copy the "
    "weights of better trials (exploit) and perturb their hyperparameters (explore)",
    "optuna": "Optuna's tree-structured Parzen estimator (TPE), which proposes each trial from the "
    "results of the earlier ones",
    "hyperband": "HyperBand (Li et al., 2018): brackets of synchronous successive halving, each "
    "keeping its best trials once all of them reached the bracket's milestone, from brackets "
    "that stop nothing to ones that start many trials on a few epochs",
    "pb2": "Population Based Bandits (Parker-Holder et al., 2020): PBT whose explore step picks "
    "the new hyperparameters with a time-varying Gaussian-process bandit (GP-UCB) within the "
    "space's bounds, instead of a random perturbation",
    "bohb": "BOHB (Falkner et al., 2018): a kernel-density model of the good and bad results "
    "proposes each trial, and HyperBand brackets stop the poor ones early",
    "fifo": "random search; every trial trains for all epochs (no early stopping)",
    "random": "random search; every trial trains for all epochs (no early stopping)",
    "stn": "Self-Tuning Networks (MacKay et al., 2019): the hyperparameters are learned online, "
    "during one training run, through a best-response hypernetwork",
    "darts": "DARTS (Liu et al., 2019): the cell's operations are relaxed into a softmax mixture "
    "whose weights are learned by gradient descent, then discretised into a genotype",
    "sd_darts": "SD-DARTS: DARTS with self-distillation from voting teachers (earlier supernets)",
    "random_ws": "random architecture search with weight sharing (Li & Talwalkar, 2019): random "
    "cells are trained in one shared supernet and ranked on validation data",
    "bossnas": "BossNAS (Li et al., 2021): a hybrid CNN-transformer space searched block by block "
    "without labels, by ensemble bootstrapping; paths rated by distance to the ensemble",
    "enas": "ENAS (Pham et al., 2018): an LSTM controller samples cells, trained by REINFORCE on "
    "their validation accuracy under one shared supernet; the best of its samples is kept",
}

_PBT_NOTE = " A PBT curve jumps where its trial took over a better trial's weights (exploited)."


def search_section(search: SearchSection | None, figures: FigureSet) -> str:
    """The "Search" section of ``search`` (see ``ReportData.search``); "" when it is None."""
    if not search:
        return ""
    metric, mode = search.get("metric") or "val_loss", search.get("mode") or "min"
    ranked = sort_trials(list(search.get("trials") or []), metric, mode)
    best = _best_trial(search, ranked, metric)
    return markup.section(
        "Search",
        *_summary_parts(search, ranked, metric, mode),
        _best_parts(search.get("best"), picked=bool(search.get("pareto"))),
        "<h3>Trials</h3>",
        trial_table(ranked, metric, best),
        *_figure_parts(search, ranked, metric, best, figures),
    )


def _best_trial(search: Mapping, ranked: Sequence[Mapping], metric: str) -> str | None:
    """The best trial's id: as the sweep reports it, else the top-ranked scored trial."""
    reported = (search.get("best") or {}).get("trial")
    if reported:
        return reported
    if ranked and not is_failed(ranked[0]) and metric_of(ranked[0], metric) is not None:
        return ranked[0].get("trial")
    return None


def _summary_parts(search: Mapping, trials: Sequence[Mapping], metric: str, mode: str) -> list:
    method = str(search.get("method", "unknown"))
    about = _METHODS.get(method.lower())
    counts = Counter(str(t.get("status", "unknown")) for t in trials)
    by_status = ", ".join(f"{n} {status}" for status, n in counts.items())
    ranking = "lower" if mode == "min" else "higher"
    lines = [
        f"Method: {method}" + (f" — {about}." if about else "."),
        f"{len(trials)} trials ({by_status}), ranked by {metric} ({ranking} is better). "
        + _retrain_sentence(search),
    ]
    if note := _picked_earlier(search, trials, metric):
        lines.append(note)
    if search.get("experiment_path"):
        lines.append(f"Ray Tune experiment: {search['experiment_path']}")
    return [markup.paragraph(line) for line in lines]


def _retrain_sentence(search: Mapping) -> str:
    picked = "The Pareto front's picked" if search.get("pareto") else "The best"
    if search.get("retrained", True):
        return f"{picked} configuration was retrained; the sections below describe that model."
    return (
        f"{picked} configuration was not retrained (search.retrain=false), so no model is "
        "evaluated or explained below; its values are in the Best trial table."
    )


def _picked_earlier(search: Mapping, trials: Sequence[Mapping], metric: str) -> str:
    """A sentence when the best trial was selected on an epoch before its last (a sweep ranks
    each trial by its best epoch), whose numbers the trial table, showing final ones, lacks."""
    best = search.get("best") or {}
    trial = next((t for t in trials if t.get("trial") == best.get("trial")), {})
    epoch, epochs = best.get("epoch"), trial.get("epochs")
    if epoch is None or epochs is None or epoch >= epochs:
        return ""
    return (
        f"The best trial was selected on its best {metric}, at epoch {epoch:g} of {epochs:g} "
        "(the Best trial table); the Trials table shows each trial's final values."
    )


def _best_parts(best: Mapping | None, picked: bool) -> str:
    if not best:
        return ""
    name = str(best.get("trial"))
    rows = {"trial": short_trial_name(name)}
    if rows["trial"] != name:  # where Tune keeps it, under the experiment's folder
        rows["folder"] = name
    rows |= best.get("config") or {}
    rows |= {
        k: v
        for k, v in best.items()
        if k not in ("trial", "config") and not isinstance(v, Mapping | list | tuple)
    }
    heading = "Picked trial (Pareto front)" if picked else "Best trial"
    return f"<h3>{heading}</h3>" + markup.table(("name", "value"), rows.items())


def trial_table(trials: Sequence[Mapping], metric: str, best: str | None) -> str:
    """One row per trial in the given order, the best one highlighted and marked ``(best)``.

    Columns: trial (``trial <index>`` for a Tune folder name), status, each hyperparameter,
    epochs (pruning rounds in a pruning sweep), val_loss, val_accuracy (and ``metric`` if it is
    another; ``remaining`` in a pruning sweep), exploited (when any trial copied a better
    trial's weights: PBT, PB2), error (when any trial failed).
    """
    params = list(dict.fromkeys(k for t in trials for k in (t.get("config") or {})))
    pruning = any("remaining" in t for t in trials)
    metrics = list(dict.fromkeys(("val_loss", "val_accuracy", metric, *["remaining"] * pruning)))
    exploited = any(t.get("exploited") for t in trials)
    errors = any(is_failed(t) or t.get("error") for t in trials)
    header = ["trial", "status", *params, "rounds" if pruning else "epochs", *metrics]
    header += ["exploited"] * exploited + ["error"] * errors
    rows = [_trial_row(t, params, metrics, exploited, errors, best) for t in trials]
    marked = {i for i, t in enumerate(trials) if best is not None and t.get("trial") == best}
    return markup.table(header, rows, highlight=marked)


def _trial_row(trial, params, metrics, exploited: bool, errors: bool, best) -> list:
    name = str(trial.get("trial", "?"))
    config = trial.get("config") or {}
    epochs = trial.get("epochs", len(trial.get("history") or []) or None)
    shown = short_trial_name(name)
    row = [f"{shown} (best)" if name == best else shown, trial.get("status", "unknown")]
    row += [config.get(p, "") for p in params] + [epochs] + [trial.get(m) for m in metrics]
    row += ["yes" if trial.get("exploited") else "no"] * exploited
    return row + [trial.get("error") or ""] * errors


def _figure_parts(search, trials, metric: str, best: str | None, figures: FigureSet) -> list:
    parts = _pareto_parts(search["pareto"], trials, figures) if search.get("pareto") else []
    parts += [
        figures.add(
            "search_hyperparameters",
            hyperparameter_figure(trials, metric, best),
            f"Each sampled hyperparameter against the trial's final {metric}; red star: best "
            "trial, blue: trained all epochs, orange: stopped early. Log x-axis where the values "
            "span more than two decades; trials without the metric (failed) are left out.",
        ),
        figures.add(
            "search_trial_curves",
            trial_curves_figure(trials, metric, best),
            "Validation curves of every trial (grey) and the best trial (red); a curve ending in "
            "an x belongs to a trial the scheduler stopped early."
            + _PBT_NOTE
            * (str(search.get("method")).lower() in ("pbt", "pb2")),
        ),
    ]
    if search.get("schedules"):
        parts.append(_schedule_part(search["schedules"], best, figures))
    if search.get("replayed_schedule"):
        parts.append(_replayed_part(search["replayed_schedule"], figures))
    if search.get("genotype") and "blocks" in search["genotype"]:
        parts += bossnas_parts(search["genotype"])
    elif search.get("genotype"):
        parts += _architecture_parts(search, figures)
    return parts


def _pareto_parts(pareto: Mapping, trials: Sequence[Mapping], figures: FigureSet) -> list[str]:
    """The accuracy-vs-explanation-quality front of a multi-objective sweep, with each point's
    configuration."""
    first, second = pareto["objectives"][:2]
    return [
        "<h3>Pareto front</h3>",
        markup.paragraph(
            f"Multi-objective search of {first} and {second}: {len(pareto.get('front') or [])} "
            "of the trials are on the Pareto front (no other trial is at least as good on both "
            f"and better on one). {pick_sentence(pareto)}"
        ),
        figures.add(
            "search_pareto",
            pareto_figure(trials, pareto),
            f"{first} against {second}, each trial's final values; blue: the Pareto front, "
            "grey: dominated trials, red star: the retrained (picked) trial. Numbers are the "
            "trials' points in the table below.",
        ),
        pareto_table(trials, pareto),
    ]


def _schedule_part(schedules: Mapping, best: str | None, figures: FigureSet) -> str:
    return figures.add(
        "search_schedules",
        schedules_figure(schedules, best),
        "STN hyperparameter schedules: each hyperparameter per epoch as the hypernetwork "
        "learned it, one line per trial (best trial bold); *_scale panels show the scale of the "
        "perturbations sampled around it.",
    )


def _replayed_part(rows: Sequence[Mapping], figures: FigureSet) -> str:
    return figures.add(
        "search_replayed_schedule",
        schedules_figure({"replayed": rows}),
        "The schedule the retrain replayed, one value per epoch (the best STN trial's, in the "
        "fit loop's terms: weight decay as torch's, twice the STN's penalty coefficient); from "
        "its last epoch on, the retrain keeps the last values.",
    )


def _architecture_parts(search: Mapping, figures: FigureSet) -> list[str]:
    parts = [
        "<h3>Searched cell</h3>",
        figures.add(
            "search_genotype",
            genotype_figure(search["genotype"]),
            "Genotype: each intermediate node (0, 1, …) sums two operations (labelled arrows) "
            "applied to earlier nodes; c_{k-2} and c_{k-1} are the outputs of the previous two "
            "cells and c_{k} concatenates all intermediate nodes (dashed). The reduction cell "
            "halves the spatial size.",
        ),
    ]
    if search.get("alphas"):
        primitives = search.get("primitives") or search["alphas"].get("primitives")
        parts.append(
            figures.add(
                "search_alphas",
                alphas_figure(search["alphas"], primitives),
                "DARTS architecture weights: softmax over the candidate operations of each mixed "
                "edge (row: source → node). The genotype keeps the two strongest incoming edges "
                "per node, each with its strongest operation other than none.",
            )
        )
    return parts
