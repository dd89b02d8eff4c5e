"""A Hydra sweeper that runs an Optuna study kept in a storage: persistent, resumable, pruned,
shared by any number of sweep processes.

Before the first trial it checks the search space against the config, opens or creates the study
(``study.py``) and checks this search against the study's record. Then, until the study has
``n_trials``: fail the trials whose process died (``owners.py``), ask a batch, launch each trial
as the Hydra job numbered by its trial number (its folder is that number), and tell the study how
each ended: COMPLETE with the job's return value, PRUNED if the job's reporter stopped it
(``report.py``), FAIL if it raised. It writes ``optimization_results.yaml`` (``results.py``) as
trials end and prints one line per trial start and end (``console.py``).

``n_trials`` counts every process's trials: the count is read before a batch is asked, so
processes that ask at the same moment can exceed it by at most one batch (``n_jobs``) per other
process.
"""

import contextlib
import functools
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from . import console, results, search
from .errors import SweepError
from .owners import heartbeat, is_alive, owner
from .sampling import SeededPerTrial, make_sampler
from .space import Space, check_against_config, parse
from .study import (
    DEFAULT_JOURNAL,
    join_study,
    journal_path,
    make_pruner,
    open_storage,
    pruner_spec,
    storage_url,
    study_exists,
)

log = logging.getLogger(__name__)

DIED = "its sweep process died"  # the failure reason of a trial whose process is gone
# A job's INFO lines go to its log file only: the console tells the search's story (console.py).
CONSOLE_LEVEL = "hydra.job_logging.handlers.console.level"


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
        machine_keys: Sequence[str],
        stale_after_s: float,
        allowed_targets: Sequence[str],
    ) -> None:
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.max_consecutive_failures = max_consecutive_failures
        self.sampler_conf, self.pruner_conf = sampler, pruner
        self.params = params or {}
        self.machine_keys = tuple(machine_keys)
        self.stale_after_s = float(stale_after_s)
        self.allowed_targets = tuple(allowed_targets)
        self.study: optuna.Study | None = None
        self.exhausted = False  # the sampler has tried its whole search space
        # This process's trials: how they ended, and the failures in a row at the end.
        self.trials_run, self.ended_well, self.failures_in_a_row = 0, 0, 0
        self.last_failure = ""
        self.errors: Counter[str] = Counter()
        # Seconds this process spent in the study (asking, telling, checking) and writing results.
        self.overhead_s, self.setup_s = 0.0, 0.0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        # The console tells the search's story (console.py): the launcher's line per job, with
        # every override of the job, and Optuna's own notices are left out.
        launcher_package = type(self.launcher).__module__.rsplit(".", 1)[0]
        logging.getLogger(launcher_package).setLevel(logging.WARNING)
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    # ---- the sweep ---------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        made = not self.sweep_dir.exists()
        try:
            try:
                self._sweep(arguments)
            finally:
                if self.study is not None:
                    self._print_end()
        except SweepError as e:
            if made:
                self._remove_empty_sweep_dir()
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> None:
        start = time.perf_counter()
        space = self._checked_space(arguments)
        pruner = pruner_spec(self.pruner_conf)
        reporter_path, monitor = search.find_reporter(self.config)
        search.check_pruning(pruner, reporter_path, monitor)
        self.objective = str(monitor) if monitor is not None else "value"
        # The reporter is plumbing, and file locations may differ between machines.
        skip = (*self.machine_keys, *([reporter_path] if reporter_path else []))
        record = search.record(self.config, space, pruner, self.direction, skip)
        study, created = self._open_study(pruner, record)
        self.setup_s = time.perf_counter() - start
        trials = study.get_trials(deepcopy=False)
        console.say(
            f"study {study.study_name} {'created' if created else 'joined'} in "
            f"{self.sweep_dir}: {len(space.distributions)} searched keys, {self.n_trials} "
            f"trials in total ({sum(self.counted(t) for t in trials)} there), "
            f"{self.n_jobs} at a time"
        )
        while True:
            tick = time.perf_counter()
            self._fail_dead_trials(study)
            counted = sum(self.counted(t) for t in study.get_trials(deepcopy=False))
            todo = self.n_trials - counted
            if todo <= 0 or self.exhausted:
                self.overhead_s += time.perf_counter() - tick
                break
            batch = [study.ask(fixed_distributions=space.distributions)
                     for _ in range(min(self.n_jobs, todo))]  # fmt: skip
            jobs = [self._job_overrides(study, trial, space) for trial in batch]
            asked_s = (time.perf_counter() - tick) / len(batch)
            self.overhead_s += time.perf_counter() - tick
            for i, trial in enumerate(batch):
                console.say(console.started(trial, counted + i + 1, self.n_trials))

            launched = time.perf_counter()
            beat = functools.partial(self._beat, batch)
            with heartbeat(beat, self.stale_after_s):
                try:
                    returns = self._launch(batch, jobs)
                except Exception as e:  # the launcher's own failure, not the trials'
                    self._give_back(study, batch, f"the launcher failed: {_first_line(e)}")
                    raise SweepError(f"the launcher failed: {_first_line(e)}") from None
            job_s = (time.perf_counter() - launched) / len(batch)

            tick = time.perf_counter()
            for trial, ret in zip(batch, returns, strict=True):
                self._tell(study, trial, ret, asked_s=asked_s, job_s=job_s)
            self.overhead_s += time.perf_counter() - tick
            self._write_results(study)
            limit = self.max_consecutive_failures
            if limit and self.failures_in_a_row >= limit:
                raise SweepError(
                    f"the last {self.failures_in_a_row} trials failed (the last: "
                    f"{self.last_failure}); the sweep stopped rather than spend the study's "
                    "trials on failures: fix the cause, and the same command continues the study "
                    "(failed trials count towards n_trials)"
                )
        self._write_results(study)
        if self.trials_run and not self.ended_well:
            error, times = self.errors.most_common(1)[0]
            raise SweepError(
                f"none of the {self.trials_run} trials of this sweep process completed; the most "
                f"common error ({times} of {self.trials_run}): {error}"
            )

    # ---- before the first trial --------------------------------------------------------------

    def _checked_space(self, arguments: list[str]) -> Space:
        """The search space, refused unless every key and group option exists and every
        interval and range is well formed."""
        if self.n_jobs < 1 or self.n_trials < 0 or self.stale_after_s <= 0:
            raise SweepError(
                "hydra.sweeper.n_jobs must be >= 1, n_trials >= 0 and stale_after_s > 0"
            )
        if self.direction not in ("minimize", "maximize"):
            raise SweepError(f"hydra.sweeper.direction={self.direction}: minimize or maximize")
        params = [f"{k}={v}" for k, v in self.params.items()]
        space = parse([*params, *arguments])
        loader = self.hydra_context.config_loader
        hydra_overrides = list(self.config.hydra.overrides.hydra)
        check_against_config(
            space,
            compose=lambda overrides: loader.load_sweep_config(
                self.config, [*overrides, *self._hidden_overrides(0)]
            ),
            group_options=lambda key: loader.get_group_options(
                key, config_name=self.config.hydra.job.config_name, overrides=hydra_overrides
            ),
        )
        return space

    def _open_study(self, pruner: str | dict, record: dict[str, Any]) -> tuple[optuna.Study, bool]:
        """Create the study (this process records its search) or join it (refused if the search
        differs); a new study is refused in a sweep folder that holds another sweep's jobs."""
        built_pruner = make_pruner(pruner)
        try:
            sampler = make_sampler(self.sampler_conf)
            if isinstance(sampler, SeededPerTrial):
                sampler.build(sampler.seed)  # a bad sampler config fails here, not at a trial
        except Exception as e:
            raise SweepError(f"hydra.sweeper.sampler cannot be built: {_first_line(e)}") from None
        self.url = storage_url(self.storage, self.sweep_dir)
        journal = journal_path(self.url)
        fresh = journal is not None and self.storage is None and not journal.exists()
        if fresh and _job_folders(self.sweep_dir):
            self._refuse_other_jobs()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(self.url)
        if not study_exists(storage, self.study_name) and _job_folders(self.sweep_dir):
            self._refuse_other_jobs()
        study, created = join_study(
            storage, self.url, self.study_name, self.direction, sampler, built_pruner, record,
            allowed=self.allowed_targets,
        )  # fmt: skip
        self.study, self.storage_obj = study, storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        return study, created

    def _refuse_other_jobs(self) -> None:
        raise SweepError(
            f"hydra.sweep.dir={self.sweep_dir} holds the jobs of another sweep, and study "
            f"{self.study_name} is not in it: use another hydra.sweep.dir"
        )

    def _remove_empty_sweep_dir(self) -> None:
        """Remove the sweep folder this process made, if it was refused before any work (an
        empty journal the refused storage left is all it can hold)."""
        journal = self.sweep_dir / DEFAULT_JOURNAL
        with contextlib.suppress(OSError):
            if journal.is_file() and journal.stat().st_size == 0:
                journal.unlink()
            (self.sweep_dir / f"{DEFAULT_JOURNAL}.lock").unlink(missing_ok=True)
            self.sweep_dir.rmdir()

    # ---- the trials --------------------------------------------------------------------------

    @staticmethod
    def counted(trial: FrozenTrial) -> bool:
        """Whether a trial counts towards n_trials: it ran to its end (completed, pruned or
        failed by its own error), or it is running."""
        if trial.state == TrialState.FAIL:  # not counted: died with its process, or never ran
            return "failed_because" not in trial.user_attrs
        return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

    def _id(self, trial: optuna.Trial | FrozenTrial) -> int:
        """The storage's id of a trial of this study."""
        return self.storage_obj.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def _fail_dead_trials(self, study: optuna.Study) -> None:
        """Mark failed the RUNNING trials whose sweep process is gone, so they are replaced."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if is_alive(trial, self.stale_after_s):
                continue
            try:  # another process may fail it at the same moment
                self.storage_obj.set_trial_user_attr(self._id(trial), "failed_because", DIED)
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            console.say(f"trial {trial.number}: {DIED}; marked failed, another takes its place")

    def _job_overrides(self, study: optuna.Study, trial: optuna.Trial, space: Space) -> list[str]:
        """One trial's job: its parameters and the fixed values; and, as Hydra overrides (which
        are not shown as the job's own), its folder named by its number and a console that
        shows the job's warnings only."""
        folder = self.sweep_dir / str(trial.number)
        for key, value in {**owner(), "job_dir": str(trial.number)}.items():
            trial.set_user_attr(key, value)
        if folder.exists():  # another study's trial in the same sweep folder: never overwrite
            self._finish(study, trial, TrialState.FAIL)
            raise SweepError(
                f"{folder} exists already, but trial {trial.number} of study {self.study_name} "
                "has not run: use another hydra.sweep.dir for this study"
            )
        return [*space.overrides(trial.params), *self._hidden_overrides(trial.number)]

    def _hidden_overrides(self, number: int) -> list[str]:
        hidden = [f"hydra.sweep.subdir={number}"]
        if OmegaConf.select(self.config, CONSOLE_LEVEL.rsplit(".", 1)[0]) is not None:
            hidden.append(f"++{CONSOLE_LEVEL}=WARNING")
        return hidden

    def _launch(self, batch: list[optuna.Trial], jobs: list[list[str]]) -> list[JobReturn]:
        """Launch the batch so that each job's number is its trial's number: one launch per run
        of consecutive numbers (another process may have asked the numbers in between)."""
        returns: list[JobReturn] = []
        first = 0
        for i in range(1, len(batch) + 1):
            if i == len(batch) or batch[i].number != batch[i - 1].number + 1:
                returns += self.launcher.launch(jobs[first:i], initial_job_idx=batch[first].number)
                first = i
        return returns

    def _give_back(self, study: optuna.Study, batch: list[optuna.Trial], reason: str) -> None:
        """Fail trials that never ran, not counted towards n_trials: others take their place."""
        for trial in batch:
            trial.set_user_attr("failed_because", reason)
            self._finish(study, trial, TrialState.FAIL)

    def _beat(self, batch: list[optuna.Trial], now: float) -> None:
        """Write the time into the batch's trials (those still running)."""
        for trial in batch:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.storage_obj.set_trial_user_attr(self._id(trial), "heartbeat", now)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn, **timing) -> None:
        """Tell the study how a trial's job ended, with its timing, and say it."""
        for key, seconds in timing.items():
            trial.set_user_attr(key, round(seconds, 4))
        frozen = self.storage_obj.get_trial(self._id(trial))
        self.trials_run += 1
        if "pruned_at_step" in frozen.user_attrs:  # set by the job's reporter
            step = frozen.user_attrs["pruned_at_step"]
            reports = frozen.intermediate_values
            last = reports[max(reports)] if reports else None  # its last report, at or before
            self._finish(study, trial, TrialState.PRUNED)
            self._ended_well()
            outcome = f"pruned at step {step}, {self.objective} {console.metric(last)}"
        elif ret.status == JobStatus.FAILED:
            # The job's exception (reading ret.return_value would print all its overrides).
            error = ret._return_value
            self._failed(study, trial, f"{type(error).__name__}: {_first_line(error)}")
            return
        else:
            try:
                value = float(ret.return_value)
            except (TypeError, ValueError):
                value = math.nan
            if math.isnan(value):
                self._failed(study, trial, f"returned {ret.return_value!r}, not a number")
                return
            self._finish(study, trial, TrialState.COMPLETE, value)
            self._ended_well()
            outcome = f"completed, {self.objective} {console.metric(value)}"
        console.say(console.ended(trial.number, outcome, console.best_trial(study)))

    def _ended_well(self) -> None:
        self.ended_well += 1
        self.failures_in_a_row = 0

    def _failed(self, study: optuna.Study, trial: optuna.Trial, error: str) -> None:
        self.errors[error] += 1
        self.failures_in_a_row += 1
        self.last_failure = f"trial {trial.number}: {error}"
        self._finish(study, trial, TrialState.FAIL)
        console.say(console.ended(trial.number, f"failed: {error}", console.best_trial(study)))

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

    def _write_results(self, study: optuna.Study) -> Path:
        tick = time.perf_counter()
        trials = study.get_trials(deepcopy=False)
        max_steps = OmegaConf.select(self.config, "trainer.max_steps", default=None)
        runs = max(self.trials_run, 1)
        compute = results.compute(trials, max_steps, (self.overhead_s + self.setup_s) / runs)
        path = results.write(self.sweep_dir, study, self.url, self.n_trials, compute)
        self.overhead_s += time.perf_counter() - tick
        return path

    def _print_end(self) -> None:
        """The best trials as a table, and where the results are."""
        print(console.top_table(self.study, self.objective), flush=True)
        console.say(f"results: {self.sweep_dir / results.RESULTS}")


def _job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders (with Hydra's ``.hydra/``) in a sweep folder."""
    if not sweep_dir.is_dir():
        return []
    return [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
