"""Does a sweep amortise start-up? A multirun of the default MLP against one run of it.

The basic launcher runs a multirun's jobs one after another in one process: the imports happen
once. So ``jobs`` jobs should cost about ``jobs`` x one run's training and evaluation, plus one
start-up, plus what Hydra does per job (config, folder, logging set-up): budgeted at 1 s a job.
"""

import os
import sys

from scripts.bench.settings import Benchmark, log
from scripts.bench.startup import ROOT, run_timed
from scripts.bench.timing import Milestones


def measure_multirun(bench: Benchmark, jobs: int, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Wall seconds of one default MLP run (and of its start-up, launch to first step) and of a
    ``jobs``-job multirun of it (``seed=0,...,jobs-1``); the multirun's budget. ``extra``:
    overrides for both (e.g. fewer steps in a test)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    train = [sys.executable, "-m", "src.train", *bench.overrides("mlp", list(extra))]
    milestones = f"+callbacks.milestones._target_={Milestones.__module__}.Milestones"
    log("multirun: one run")
    out = bench.workdir / "multirun"
    start, single_s, _, output = run_timed(
        [*train, f"hydra.run.dir={out}/single", milestones], ROOT, env
    )
    startup_s = Milestones.parse(output)["first_step"][0] - start
    log(f"multirun: {jobs} jobs")
    seeds = ",".join(str(i) for i in range(jobs))
    _, multirun_s, _, _ = run_timed(
        [*train[:3], "-m", *train[3:], f"seed={seeds}", f"hydra.sweep.dir={out}/sweep"], ROOT, env
    )
    run_s = single_s - startup_s  # training, validations, test, record, exit
    return {
        "jobs": jobs,
        "single_s": single_s,
        "startup_s": startup_s,
        "multirun_s": multirun_s,
        "budget_s": jobs * run_s + startup_s + jobs * 1.0,
        "per_job_overhead_s": (multirun_s - startup_s) / jobs - run_s,
    }
