"""The sampler of a sweep, seeded per trial: processes that ask at the same time never draw alike.

A sampler config with a ``seed`` is built anew for each trial with ``seed + trial number``. Trial
numbers are unique in a study, so two processes asking at once get different seeds; and a single
process with a fixed seed draws the same trials on every fresh search (each trial's draw depends
only on its number and the trials before it).
"""

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


class SeededPerTrial(BaseSampler):
    """Delegates each trial to its own sampler, built by ``build(seed + trial.number)``."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self.build, self.seed = build, seed
        self.samplers: dict[int, BaseSampler] = {}  # of the trials asked and not yet told

    def of(self, trial: FrozenTrial) -> BaseSampler:
        if trial.number not in self.samplers:
            self.samplers[trial.number] = self.build(self.seed + trial.number)
        return self.samplers[trial.number]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.of(trial).before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.of(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.of(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.of(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        sampler = self.of(trial)
        self.samplers.pop(trial.number, None)
        sampler.after_trial(study, trial, state, values)


def make_sampler(conf: DictConfig | dict | None) -> BaseSampler | None:
    """The configured sampler (None: Optuna's default); seeded per trial if it has a seed."""
    if not conf:
        return None
    node = OmegaConf.to_container(conf, resolve=True) if isinstance(conf, DictConfig) else conf
    seed = node.get("seed")
    if seed is None:
        return instantiate(node)  # unseeded: each process draws from its own entropy
    return SeededPerTrial(lambda s: instantiate({**node, "seed": s}), int(seed))
