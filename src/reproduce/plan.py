"""What a table's records ask to rerun, whether this checkout can, and what ``DIR`` holds already.

Every read of a run folder goes through ``src.run_folder``; rows are grouped by ``src.results``,
as RESULTS.md's tables are.
"""

import os
import platform
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from omegaconf import OmegaConf

from src import results as report
from src import run_folder
from src.config import compose
from src.run_folder import RunFolder, RunFolderError, find_runs

ROOT = Path(__file__).resolve().parents[2]


class Refusal(ValueError):
    """Input that cannot be reproduced as asked; the message is one sentence."""


@dataclass
class Job:
    """One recorded run and how it is rerun."""

    record: RunFolder
    name: str  # its path under the table folder, and under DIR
    seed: int
    settings: list[str]  # the record's overrides less the machine's keys, then seed=
    out: Path
    how: str = ""  # "skip", "resume" or "start", decided by ``plan_job``
    segments: list[dict] = field(default_factory=list)

    def command(self, extra: list[str]) -> list[str]:
        """The ``src.train`` arguments that rerun it now (``how`` decides start or resume)."""
        if self.how == "resume":
            # The run's saved config holds everything else; added callbacks (+key) stay in it.
            return [f"resume={self.out}", *[o for o in extra if not o.startswith(("+", "~"))]]
        return [*self.settings, *extra, f"hydra.run.dir={self.out}"]


@dataclass
class Row:
    label: str
    jobs: list[Job]
    not_completed: list[str]  # recorded runs that did not complete: never rerun


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the current folder when under it."""
    path = Path(os.path.abspath(path))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def saved_config(record: RunFolder) -> dict:
    """The record's saved config as text, unresolved: nothing of it is built here (as
    src.results reads it), so its targets need not exist in this checkout."""
    return run_folder.read_yaml(record.path / run_folder.CONFIG)


def settings_of(record: RunFolder) -> tuple[list[str], int]:
    """The record's overrides without the machine's keys, then ``seed=`` its saved seed."""
    kept = [o for o in record.overrides() if not report.NOT_SETTINGS.match(o)]
    seed = saved_config(record).get("seed")
    return [*kept, f"seed={seed}"], seed


def read_rows(table: Path, out: Path, first_seeds: int | None) -> list[Row]:
    """The table's rows and the jobs that rerun them; refuses a folder that holds no runs."""
    if not table.is_dir():
        raise Refusal(f"{shown(table)} is not a folder; give a table's folder, e.g. results/NAME")
    folders = find_runs(table)
    if not folders:
        raise Refusal(
            f"{shown(table)} holds no run records (.hydra/ and run.yaml, as src.train writes "
            "them); give a table's folder, e.g. results/NAME"
        )
    by_path = {f.path.resolve(): f for f in folders}
    rows = []
    for group in report.group_by_config(report.find_runs(table)):
        label = report.summarize_group(group)["settings"]
        completed, other = [], []
        for run in group:
            folder = by_path[Path(run["dir"]).resolve()]
            name = folder.path.relative_to(table).as_posix()
            if folder.status != "completed":
                other.append(name)
                continue
            settings, seed = settings_of(folder)
            completed.append(Job(folder, name, seed, settings, out / name))
        completed.sort(key=lambda job: job.seed)
        rows.append(Row(label, completed[:first_seeds], other))
    return rows


def check_buildable(jobs: list[Job], extra: list[str]) -> list[str]:
    """Refuse a record whose command this checkout cannot compose; return the config keys in
    which this checkout's composition differs from the records' (another code version)."""
    drift: dict[str, None] = {}
    for job in jobs:
        try:
            cfg = compose([*job.settings, *extra])
        except Exception as e:  # Hydra's composition errors: unknown option, key or syntax
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise Refusal(
                f"{shown(job.record.path)}: this checkout cannot build the record's config "
                f"(python -m src.train {' '.join(job.settings)}): {reason}"
            ) from None
        choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
        recorded_choices = {
            k: v for k, v in job.record.choices().items() if not k.startswith("hydra")
        }
        composed = OmegaConf.to_container(cfg, resolve=False)
        composed.pop("hydra", None)
        for key in config_differences(saved_config(job.record), composed):
            drift[key] = None
        for group in sorted(set(choices) | set(recorded_choices)):
            if choices.get(group) != recorded_choices.get(group) and recorded_choices:
                drift[f"{group} (config group)"] = None
    return list(drift)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(recorded: dict, composed: dict) -> list[str]:
    """The keys, outside the machine's, whose values differ between two configs."""
    old, new = flatten(recorded), flatten(composed)
    machine = re.compile(r"^(data\.root|paths\.)")
    return [
        k
        for k in sorted(set(old) | set(new))
        if old.get(k, "<absent>") != new.get(k, "<absent>") and not machine.match(k)
    ]


def provenance(jobs: list[Job]) -> str:
    """One line: the records' commits and package versions against this checkout's."""
    here = run_folder.git_state()
    commits = sorted({str((job.record.record().get("git") or {}).get("commit")) for job in jobs})
    head = here.get("commit") or "unknown"
    if commits == [head]:
        code = f"records made at this commit ({head[:7]})"
    else:
        made = ", ".join(c[:7] for c in commits)
        code = f"records made at commit {made}, not this checkout's {head[:7]}: the code may differ"
    if here.get("dirty"):
        code += " (with uncommitted changes here)"
    differ = {}
    for job in jobs:
        for name, recorded in (job.record.record().get("versions") or {}).items():
            installed = installed_version(name)
            if installed != str(recorded):
                differ.setdefault(name, (installed, set()))[1].add(str(recorded))
    if differ:
        packages = "; installed versions differ from the records: " + ", ".join(
            f"{name} {installed} (recorded {', '.join(sorted(recorded))})"
            for name, (installed, recorded) in differ.items()
        )
    else:
        packages = "; installed versions as recorded"
    return code + packages


def installed_version(name: str) -> str | None:
    if name == "python":
        return platform.python_version()
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def plan_job(job: Job) -> None:
    """Skip, resume or start ``job``, from what its folder in DIR holds."""
    if not job.out.exists():
        job.how = "start"
        return
    try:
        rerun = RunFolder.open(job.out)
    except RunFolderError:
        job.how = "start"  # killed before Hydra wrote the run's config: nothing to continue
        return
    if rerun.overrides()[: len(job.settings)] != job.settings:
        raise Refusal(
            f"{shown(job.out)} holds a run of another command than {shown(job.record.path)}'s; "
            "remove it or give another --out"
        )
    if rerun.is_finished():
        job.how = "skip"
    elif rerun.last_checkpoint.is_file():
        job.how = "resume"
    else:
        job.how = "start"  # stopped before its first checkpoint
