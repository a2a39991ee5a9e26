"""HyperBand, PB2 and BOHB as the sweeps build them (:func:`tune_config`), each showing its
defining behaviour on a closed-form objective by driving Tune's scheduler or searcher directly
(no training, no Ray cluster); and each method's config file and its validation."""

from __future__ import annotations

import logging
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.pbt import _PBTTrialState
from ray.tune.search import BasicVariantGenerator

from components.search.algorithms import tune_config
from components.search.space import tune_space
from components.search.sweep_config import SweepConfig
from flows.config import ConfigError, to_search_settings
from flows.sweep import compose_sweep

CONF = Path(__file__).parents[3] / "conf" / "search"
# hpbandster 0.7 calls ConfigSpace 1.x's deprecated accessors on every proposal.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:hpbandster")


class OneSlotController:
    """What Tune's ``TuneController`` does for a scheduler, for trials run one at a time: start
    the trial the scheduler chooses, feed it each result, and pause or stop as it decides."""

    def __init__(self, scheduler, trials: list[Trial], loss) -> None:
        self.scheduler, self.trials, self.loss = scheduler, trials, loss
        self.events: list[tuple[Trial, int, str]] = []  # (trial, iteration, decision)
        for trial in trials:
            scheduler.on_trial_add(self, trial)

    def stop_trial(self, trial: Trial) -> None:  # as TuneController.stop_trial
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.set_status(Trial.TERMINATED)

    def run(self) -> dict[Trial, int]:
        """Every trial's iterations once the scheduler chooses no more."""
        done = {trial: 0 for trial in self.trials}
        while (trial := self.scheduler.choose_trial_to_run(self)) is not None:
            trial.set_status(Trial.RUNNING)
            decision = TrialScheduler.CONTINUE
            while decision == TrialScheduler.CONTINUE and trial.status == Trial.RUNNING:
                done[trial] += 1
                result = {"training_iteration": done[trial], "val_loss": self.loss(trial, done)}
                trial.update_last_result(result)
                decision = self.scheduler.on_trial_result(self, trial, result)
                self.events.append((trial, done[trial], decision))
            if decision == TrialScheduler.PAUSE:
                trial.set_status(Trial.PAUSED)
            elif trial.status == Trial.RUNNING:
                self.stop_trial(trial)
        return done


def test_hyperband_runs_synchronous_successive_halving_brackets():
    # max_t=4, eta=2: Tune's brackets take 3 trials for 4 epochs, 3 from 2 epochs (best 2 go
    # on to 4), 4 from 1 epoch (best 2 to 2, best 1 to 4), filled in order. Within each bracket
    # the trials come worst first, so an asynchronous rule would promote the early ones.
    quality = [3, 2, 1, 6, 5, 4, 10, 9, 8, 7]  # val_loss = quality + 1/epoch
    space = {"train.lr": {"type": "uniform", "low": 0.0, "high": 1.0}}
    config = tune_config(SweepConfig(method="hyperband", reduction_factor=2), space, 4)
    scheduler = config.scheduler
    scheduler.set_search_properties(config.metric, config.mode)
    trials = [Trial("objective", config={"q": q}, stub=True, trial_id=str(q)) for q in quality]
    controller = OneSlotController(scheduler, trials, lambda t, done: t.config["q"] + 1 / done[t])

    epochs = {t.config["q"]: n for t, n in controller.run().items()}

    assert epochs == {3: 4, 2: 4, 1: 4, 6: 2, 5: 4, 4: 4, 10: 1, 9: 1, 8: 2, 7: 4}
    brackets = [[3, 2, 1], [6, 5, 4], [10, 9, 8, 7]]
    milestones = [[4], [2, 4], [1, 2, 4]]
    for members, rungs in zip(brackets, milestones, strict=True):
        for rung in rungs[:-1]:
            # Every member that reached this rung was paused until the last one did; only
            # then did the bracket stop or continue anyone.
            at_rung = [(t.config["q"], d) for t, n, d in controller.events if n == rung]
            at_rung = [(q, d) for q, d in at_rung if q in members]
            assert [d for _, d in at_rung[:-1]] == [TrialScheduler.PAUSE] * (len(at_rung) - 1)
            first_after = min(
                i
                for i, (t, n, _) in enumerate(controller.events)
                if t.config["q"] in members and n > rung
            )
            last_at = max(
                i
                for i, (t, n, _) in enumerate(controller.events)
                if t.config["q"] in members and n == rung
            )
            assert last_at < first_after


def test_pb2_explores_toward_the_better_region_within_the_bounds():
    # Each epoch lowers the loss by gain(dropout), best at 0.6; no trial sits near it. A trial
    # exploiting the best one (dropout 0.35) gets PB2's GP-UCB choice: measured over seeds 0-4
    # it lands at 0.54-0.55, where PBT's perturbation would give 0.28 or 0.42.
    def gain(x: float) -> float:
        return 1 - ((x - 0.6) / 0.6) ** 2

    space = {"model.dropout": {"type": "uniform", "low": 0.0, "high": 1.0}}
    sweep = SweepConfig(method="pb2", num_samples=6, perturbation_interval=2, quantile_fraction=0.5)
    config = tune_config(sweep, space, 6)
    pb2 = config.scheduler
    pb2.set_search_properties(config.metric, config.mode)
    population = [0.05, 0.15, 0.25, 0.35, 0.9, 1.0]
    trials = [
        Trial("objective", config={"model.dropout": x}, stub=True, trial_id=str(i))
        for i, x in enumerate(population)
    ]
    for epoch in (2, 4, 6):  # the perturbation intervals, where PB2 records its data
        for trial in trials:
            loss = 10 - epoch * gain(trial.config["model.dropout"])
            result = {"training_iteration": epoch, "val_loss": loss}
            pb2._save_trial_state(_PBTTrialState(trial), epoch, result, trial)

    np.random.seed(0)  # the acquisition's random restarts
    best, worst = trials[3], trials[0]
    explored = pb2._get_new_config(worst, best)[0]["model.dropout"]

    assert abs(explored - 0.6) < 0.1
    pbt_perturbations = [0.8 * 0.35, 1.2 * 0.35]
    assert all(abs(explored - 0.6) < abs(x - 0.6) for x in pbt_perturbations)


BOHB_SPACE = yaml.safe_load((CONF / "bohb.yaml").read_text())["space"]


def bowl(config: dict) -> float:
    lr, decay = math.log10(config["train.lr"]), math.log10(config["train.weight_decay"])
    return (lr + 2.5) ** 2 + (decay + 4.5) ** 2


def bohb_losses(seed: int, budget: int) -> list[float]:
    """``bowl`` of each configuration BOHB proposes in turn, every result at one budget."""
    np.random.seed(seed)  # hpbandster samples its densities with numpy's global generator
    sweep = SweepConfig(method="bohb", num_samples=budget, seed=seed, max_concurrent=1)
    config = tune_config(sweep, BOHB_SPACE, 1)
    search = config.search_alg
    search.set_search_properties(config.metric, config.mode, tune_space(BOHB_SPACE))
    losses = []
    for i in range(budget):
        result = {"val_loss": bowl(search.suggest(str(i))), "hyperband_info": {"budget": 1}}
        search.on_trial_result(str(i), result)
        search.on_trial_complete(str(i), result)
        losses.append(result["val_loss"])
    return losses


def random_losses(seed: int, budget: int) -> list[float]:
    search = BasicVariantGenerator(random_state=seed)
    space = tune_space(BOHB_SPACE)
    search.add_configurations({"bowl": {"run": bowl, "config": space, "num_samples": budget}})
    return [bowl(search.next_trial().config) for _ in range(budget)]


def test_bohb_proposes_from_its_density_model_better_points_than_random_search(caplog):
    # After 10 results BOHB samples where its "good" density outweighs the "bad" one: its next
    # 10 proposals have a lower median than random search's (measured over seeds 0-9: 0.19-0.82
    # against 0.93-2.94). Its best point is not better than random's on this bowl (2 of 10
    # seeds): the narrow density exploits the first good region it finds.
    caplog.set_level(logging.ERROR)
    medians = {
        seed: (
            statistics.median(bohb_losses(seed, 20)[10:]),
            statistics.median(random_losses(seed, 20)[10:]),
        )
        for seed in range(5)
    }
    print("median bowl of proposals 11-20 (bohb, random) per seed:", medians)
    assert all(bohb < random for bohb, random in medians.values())


@pytest.mark.parametrize("method", ["hyperband", "pb2", "bohb"])
def test_each_method_config_validates(method):
    settings = to_search_settings(compose_sweep([f"search={method}"]))
    assert settings.sweep.method == method
    assert tune_config(settings.sweep, settings.space, 4).scheduler is not None


@pytest.mark.parametrize(
    ("method", "override", "named"),
    [
        ("hyperband", "search.reduction_factor=1", "search.reduction_factor=1 (must be >= 2)"),
        ("bohb", "search.reduction_factor=1", "search.reduction_factor=1 (must be >= 2)"),
        (
            "pb2",
            "search.quantile_fraction=0.7",
            "search.quantile_fraction=0.7 (must be in (0, 0.5])",
        ),
        ("asha", "search.max_concurrent=0", "search.max_concurrent=0 (must be >= 1)"),
        ("pbt", "search.perturbation_interval=0", "search.perturbation_interval=0 (must be >= 1)"),
        (
            "pb2",
            "+search.space.train.optimizer={type:choice,values:[adam,sgd]}",
            "'train.optimizer' is 'choice'",
        ),
    ],
)
def test_a_bad_method_setting_is_a_config_error_naming_it(method, override, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        to_search_settings(compose_sweep([f"search={method}", override]))
