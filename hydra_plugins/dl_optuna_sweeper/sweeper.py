"""A Hydra sweeper that runs an Optuna study kept in a storage: persistent, resumable, pruned,
shared by any number of sweep processes.

Each trial is asked from the study, launched as one Hydra job in the folder named by its trial
number, and told back: COMPLETE with the job's return value, PRUNED if the job's callback stopped it
on the pruner's word, FAIL if it raised. ``n_trials`` is the total of the study, so the same command
continues an interrupted search, and a second process on the same storage shares the work.
"""

import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from .study import (
    HEARTBEAT_S,
    StudyError,
    make_pruner,
    open_storage,
    owner,
    owner_alive,
    pruner_spec,
    storage_url,
)

log = logging.getLogger(__name__)

RESULTS = "optimization_results.yaml"
CALLBACK_KEY = "callbacks.optuna_trial"
DIED = "its sweep process died"  # the failure reason of a trial whose process is gone


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a sweep override (None for a plain value)."""
    if not override.is_sweep_override():
        return None
    values = None
    if override.is_choice_sweep() or (override.is_range_sweep() and override.value().shuffle):
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(values)
    sweep = override.value()
    if override.is_range_sweep():  # Hydra's range excludes its stop, as Python's does
        values = list(override.sweep_iterator())
        if any(isinstance(v, float) for v in (sweep.start, sweep.stop, sweep.step)):
            return FloatDistribution(values[0], values[-1], step=sweep.step)
        return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step))
    if override.is_interval_sweep():
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise StudyError(f"{override.input_line}: this sweep is not supported by the Optuna sweeper")


def search_space(arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Distributions of the sweep overrides, and the plain ``key=value`` ones (fixed)."""
    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        found = distribution(override)
        if found is None:
            fixed[key] = override.get_value_element_as_str()
            space.pop(key, None)  # a plain value on the command line fixes a searched key
        else:
            space[key] = found
            fixed.pop(key, None)
    return space, fixed


def flat(node: Any, prefix: str = "") -> dict[str, str]:
    """A config as ``{"a.b": "value"}`` (unresolved), to compare configs key by key."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: "{}"}
    return {prefix[:-1]: str(node)}


def describe(dist: BaseDistribution) -> str:
    """A distribution in Hydra's override syntax, for messages."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(map(str, dist.choices))})"
    text = f"interval({dist.low}, {dist.high})"
    if dist.step not in (None, 1):
        text = f"range({dist.low}, {dist.high}, step {dist.step})"
    return f"tag(log, {text})" if dist.log else text


def first_difference(kind: str, old: dict[str, str], new: dict[str, str]) -> str | None:
    """One phrase naming the first key whose value differs between two flat dicts."""

    def show(value: str | None) -> str:
        if value is None:
            return "(absent)"
        if kind == "search space":
            return describe(optuna.distributions.json_to_distribution(value))
        return value

    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            return (
                f"{kind} {key}: the study has {show(old.get(key))}, this one {show(new.get(key))}"
            )
    return None


class StudySweeper(Sweeper):
    """Hydra sweeper over an Optuna study in a storage (``hydra/sweeper=dl_optuna``)."""

    def __init__(
        self,
        direction: str,
        study_name: str,
        storage: str | None,
        n_trials: int,
        max_consecutive_failures: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        params: DictConfig | None,
        trial_callback: str | None,
        machine_keys: Sequence[str],
    ) -> None:
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.max_consecutive_failures = max_consecutive_failures
        self.failures_in_a_row, self.last_failure = 0, ""  # of this process's trials
        self.sampler_conf, self.pruner_conf = sampler, pruner
        self.params = params or {}
        self.trial_callback = trial_callback
        self.machine_keys = tuple(machine_keys)
        self.job_idx = 0
        self.exhausted = False  # the sampler has tried its whole search space
        # Seconds this process spent in the study (asking, telling, checking) and writing results.
        self.overhead_s, self.setup_s, self.trials_run = 0.0, 0.0, 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    # ---- the study ---------------------------------------------------------------------------

    def _base_config(self, space: dict[str, BaseDistribution]) -> dict[str, str]:
        """The job config that every trial shares: all but hydra, the searched keys and the
        machine keys (file locations)."""
        node = OmegaConf.to_container(self.config, resolve=False)
        node.pop("hydra", None)
        skip = (*space, *self.machine_keys)
        return {
            k: v
            for k, v in flat(node).items()
            if not any(k == s or k.startswith(f"{s}.") for s in skip)
        }

    def _open_study(
        self, space: dict[str, BaseDistribution]
    ) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
        """Create or load the study; refuse one made with another space, config or pruner."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.url = storage_url(self.storage, self.sweep_dir)
        storage = open_storage(self.url)
        pruner = pruner_spec(self.pruner_conf)
        try:
            sampler = self._sampler(storage)
            study = optuna.create_study(
                storage=storage,
                study_name=self.study_name,
                direction=self.direction,
                sampler=sampler,
                pruner=make_pruner(pruner),
                load_if_exists=True,
            )
        except StudyError:
            raise
        except Exception as e:
            raise StudyError(f"study {self.study_name} in {self.url}: {e}") from None
        wanted = {
            "search_space": {k: optuna.distributions.distribution_to_json(d)
                             for k, d in space.items()},
            "base_config": self._base_config(space),
            "pruner": {"pruner": str(pruner)},
            "direction": {"direction": self.direction},
        }  # fmt: skip
        saved = study.user_attrs
        for kind, value in wanted.items():
            if kind not in saved:
                study.set_user_attr(kind, value)
                continue
            if difference := first_difference(kind.replace("_", " "), saved[kind], value):
                raise StudyError(
                    f"study {self.study_name} in {self.url} was made for another search "
                    f"({difference}); rerun it as it was, or start a new study with another "
                    "hydra.sweep.dir or hydra.sweeper.study_name"
                )
        if not saved:
            study.set_user_attr("pruner_spec", pruner)  # what the jobs build their pruner from
        self.storage_obj, self.study_id = storage, storage.get_study_id_from_name(study.study_name)
        return study, storage

    def _id(self, trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
        """The storage's id of a trial of this study."""
        return self.storage_obj.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def _sampler(self, storage: optuna.storages.BaseStorage) -> optuna.samplers.BaseSampler | None:
        """The configured sampler. A seed is offset by the trials already in the study, so that a
        resumed search or a second process does not draw the same parameters again."""
        if not self.sampler_conf:
            return None
        conf = OmegaConf.to_container(self.sampler_conf, resolve=True)
        if conf.get("seed") is not None:
            try:
                study_id = storage.get_study_id_from_name(self.study_name)
                conf["seed"] += len(storage.get_all_trials(study_id, deepcopy=False))
            except KeyError:  # a new study
                pass
        return instantiate(conf)

    def _fail_dead_trials(self, study: optuna.Study) -> None:
        """Mark failed the RUNNING trials whose sweep process is gone, so they are replaced."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not owner_alive(trial.user_attrs):
                log.warning(f"trial {trial.number}: {DIED}; marked failed, another replaces it")
                self.storage_obj.set_trial_user_attr(self._id(trial), "failed_because", DIED)
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)

    @staticmethod
    def counted(trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a trial counts towards n_trials: it ran to its end (completed, pruned or
        failed by its own error), or it is running."""
        if trial.state == TrialState.FAIL:
            return trial.user_attrs.get("failed_because") != DIED
        return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

    # ---- the sweep ---------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        made = not self.sweep_dir.exists()
        try:
            self._sweep(arguments)
        except StudyError as e:
            if made and self.sweep_dir.is_dir() and not any(self.sweep_dir.iterdir()):
                self.sweep_dir.rmdir()  # refused before any work: leave nothing behind
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> None:
        start = time.perf_counter()
        params = [f"{k}={v}" for k, v in self.params.items()]
        space, fixed = search_space([*params, *arguments])
        if self.n_jobs < 1 or self.n_trials < 0:
            raise StudyError("hydra.sweeper.n_jobs must be >= 1 and n_trials >= 0")
        study, storage = self._open_study(space)
        self.setup_s = time.perf_counter() - start
        log.info(
            f"study {study.study_name} in {self.url}: {len(space)} searched keys, "
            f"{self.n_trials} trials in total, {self.n_jobs} at a time"
        )
        while True:
            tick = time.perf_counter()
            self._fail_dead_trials(study)
            trials = study.get_trials(deepcopy=False)
            todo = self.n_trials - sum(self.counted(t) for t in trials)
            if todo <= 0 or self.exhausted:
                self.overhead_s += time.perf_counter() - tick
                break
            batch = [study.ask(fixed_distributions=space) for _ in range(min(self.n_jobs, todo))]
            jobs = [self._job_overrides(study, trial, fixed) for trial in batch]
            asked_s = (time.perf_counter() - tick) / len(batch)
            self.overhead_s += time.perf_counter() - tick

            launched = time.perf_counter()
            with self._heartbeat(batch):
                returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            job_s = (time.perf_counter() - launched) / len(batch)
            self.job_idx += len(returns)

            tick = time.perf_counter()
            for trial, ret in zip(batch, returns, strict=True):
                self._tell(study, trial, ret, asked_s=asked_s, job_s=job_s)
            self.trials_run += len(batch)
            self.overhead_s += time.perf_counter() - tick
            self._write_results(study)
            limit = self.max_consecutive_failures
            if limit and self.failures_in_a_row >= limit:
                raise StudyError(
                    f"the last {self.failures_in_a_row} trials failed (the last: "
                    f"{self.last_failure}); the sweep stopped rather than spend the study's "
                    "trials on failures: fix the cause, and the same command continues the study "
                    "(failed trials count towards n_trials)"
                )
        self._write_results(study)

    @contextlib.contextmanager
    def _heartbeat(self, batch: list[optuna.Trial]):
        """While the batch runs, write the time into its trials every HEARTBEAT_S, so that a
        process on another machine can tell them from trials whose process died."""
        stop = threading.Event()
        ids = [self._id(trial) for trial in batch]

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                for trial_id in ids:
                    self.storage_obj.set_trial_user_attr(trial_id, "heartbeat", time.time())

        thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _job_overrides(
        self, study: optuna.Study, trial: optuna.Trial, fixed: dict[str, str]
    ) -> list[str]:
        """The overrides of one trial's job: its parameters, the fixed values, its folder (named by
        the trial number) and the callback that reports to the trial."""
        folder = self.sweep_dir / str(trial.number)
        for key, value in {**owner(), "job_dir": str(folder)}.items():
            trial.set_user_attr(key, value)
        if folder.exists():  # another study's trial in the same sweep folder: never overwrite
            self._finish(study, trial, TrialState.FAIL)
            raise StudyError(
                f"{folder} exists already, but trial {trial.number} of study {self.study_name} "
                "has not run: use another hydra.sweep.dir for this study"
            )
        overrides = [f"{k}={v}" for k, v in {**trial.params, **fixed}.items()]
        overrides.append(f"hydra.sweep.subdir={trial.number}")
        if self.trial_callback:
            callback = {
                "_target_": self.trial_callback,
                "storage": f"'{self.url}'",
                "study_name": f"'{self.study_name}'",
                "trial_number": trial.number,
                "monitor": "${monitor}",
                "run_dir": "${paths.output_dir}",
            }
            overrides += [f"+{CALLBACK_KEY}.{k}={v}" for k, v in callback.items()]
        return overrides

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret, **timing: float) -> None:
        """Tell the study how a trial's job ended, with its timing."""
        for key, seconds in timing.items():
            trial.set_user_attr(key, round(seconds, 4))
        attrs = self.storage_obj.get_trial_user_attrs(self._id(trial))
        self.failures_in_a_row += 1  # reset below where the trial ended well
        if "pruned_at_step" in attrs:  # set by the job's callback when the pruner stopped it
            self.failures_in_a_row = 0
            self._finish(study, trial, TrialState.PRUNED)
            log.info(f"trial {trial.number}: pruned at step {attrs['pruned_at_step']}")
            return
        try:
            returned = ret.return_value  # raises the job's exception if it failed
        except Exception as e:
            self.last_failure = f"trial {trial.number}: {type(e).__name__}: {e}"
            log.warning(f"trial {trial.number} failed: {type(e).__name__}: {e}")
            self._finish(study, trial, TrialState.FAIL)
            return
        try:
            value = float(returned)
        except (TypeError, ValueError):
            value = math.nan
        if math.isnan(value):
            self.last_failure = f"trial {trial.number} returned {returned!r}, not a number"
            log.warning(self.last_failure)
            self._finish(study, trial, TrialState.FAIL)
            return
        self.failures_in_a_row = 0
        self._finish(study, trial, TrialState.COMPLETE, value)
        log.info(f"trial {trial.number}: {value}")

    def _finish(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        state: TrialState,
        value: float | None = None,
    ) -> None:
        """``study.tell``. A sampler that has covered its whole space (grid, brute force) asks to
        stop the study from there; the trial is stored all the same, and the sweep ends."""
        try:
            study.tell(trial, value, state=state)
        except RuntimeError as e:
            if "Study.stop" not in str(e):
                raise
            self.exhausted = True

    # ---- results -----------------------------------------------------------------------------

    def _write_results(self, study: optuna.Study) -> None:
        """Write ``optimization_results.yaml``: the best trial so far, the counts by state, the
        training steps and the sweeper's own overhead."""
        tick = time.perf_counter()
        trials = study.get_trials(deepcopy=False)
        states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.url,
            "direction": self.direction,
            "n_trials": self.n_trials,
            "trials": {k: v for k, v in states.items() if v},
        }
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        if finished:
            best = study.best_trial
            results.update(
                best_trial=best.number,
                best_params=dict(best.params),
                best_value=best.value,
                best_job_dir=best.user_attrs.get("job_dir"),
            )
        results["compute"] = self._compute(trials)
        path = self.sweep_dir / RESULTS
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(results)))
        os.replace(tmp, path)  # another process may write it too: never half a file
        self.overhead_s += time.perf_counter() - tick

    def _compute(self, trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
        """Steps trained against n_trials x max_steps, and seconds per trial: training, the
        reports of the job, and this sweeper's own work (measured, not estimated)."""
        ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        max_steps = OmegaConf.select(self.config, "trainer.max_steps", default=None)
        steps = sum(max(t.intermediate_values, default=0) for t in ended)

        def mean(key: str) -> float | None:
            values = [t.user_attrs[key] for t in ended if key in t.user_attrs]
            return round(sum(values) / len(values), 4) if values else None

        runs = max(self.trials_run, 1)
        sweeper_s = self.overhead_s / runs + self.setup_s / runs
        report_s, train_s = mean("report_s"), mean("train_s")
        out: dict[str, Any] = {
            "trials_ended": len(ended),
            "steps_trained": int(steps),
            "steps_budget": int(max_steps) * len(ended) if max_steps else None,
            "train_s_per_trial": train_s,
            "job_s_per_trial": mean("job_s"),
            "report_s_per_trial": report_s,
            "sweeper_s_per_trial": round(sweeper_s, 4),
        }
        if train_s:
            out["overhead_share"] = round((sweeper_s + (report_s or 0.0)) / train_s, 5)
        return out
