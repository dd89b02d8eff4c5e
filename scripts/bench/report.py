"""The reports of ``steps`` and ``whole-runs``: Markdown tables of what was measured, and the
targets the project is held to."""

import argparse
import os
import platform
import statistics

import torch

from scripts.bench.settings import LABELS, SLOW_EVAL_BATCHES, Setting


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_eval(s: Setting, seconds: list[float]) -> str:
    """Seconds of one pass over the whole test set; ``~`` where scaled up from a part of it."""
    if not seconds:
        return "n/a"
    return f"{'~' if s.eval_scale != 1 else ''}{med(seconds) * s.eval_scale:.2f}"


def med_pair(pairs: list[tuple[float, float | None]]) -> str:
    """Median wall seconds, and in brackets the median CPU seconds where known."""
    wall = med([w for w, _ in pairs])
    cpus = [c for _, c in pairs if c is not None]
    return f"{wall:.2f} ({med(cpus):.2f})" if cpus else f"{wall:.2f}"


def fmt_mib(values: list[tuple[float | None, float | None]]) -> str:
    """The highest peak over the blocks, and the most it grew over the memory held before."""
    peaks = [p for p, _ in values if p is not None]
    growth = [p - b for p, b in values if p is not None and b is not None]
    if not peaks:
        return "n/a"
    return f"{max(peaks):,.0f} (+{max(growth):,.0f})" if growth else f"{max(peaks):,.0f}"


def spread(values: list[float]) -> str:
    return f"**{med(values):.3f}** ({min(values):.2f}-{max(values):.2f})"


def step_table(settings: list[Setting], device: torch.device) -> str:
    memory = "peak GPU MiB (+growth)" if device.type == "cuda" else "peak RSS MiB (+growth)"
    lines = [
        "| model | batch | steps x rounds | project ms/step | bare ms/step | ratio (range) "
        "| CPU-time ratio (range) | project img/s | bare img/s "
        f"| project {memory} | bare {memory} | test pass: project s | bare s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in settings:
        p, b = med(s.project.ms), med(s.bare.ms)
        lines.append(
            f"| {LABELS.get(s.name, s.name)} | {s.batch_size} | {s.steps} x {len(s.ratios)} "
            f"| {p:.2f} | {b:.2f} | {spread(s.ratios)} | {spread(s.cpu_ratios)} "
            f"| {s.batch_size / p * 1e3:,.0f} | {s.batch_size / b * 1e3:,.0f} "
            f"| {fmt_mib(s.project.peak)} | {fmt_mib(s.bare.peak)} "
            f"| {fmt_eval(s, s.project.eval_s)} | {fmt_eval(s, s.bare.eval_s)} |"
        )
    return "\n".join(lines)


TARGETS = {"convnet": 1.03}
#: Project minus bare loop, ms per step of a whole run of the default MLP.
FIXED_COST_MS = 0.3
NUMPY_RATIO = 1.3
STARTUP_S = 4.0


def whole_run_table(whole: dict) -> str:
    """Whole runs timed from outside, per model: ms per step of the project (first step to end
    of training; and whole processes), of a bare loop, their difference and ratio."""
    if not whole:
        return ""
    any_w = next(iter(whole.values()))
    lines = [
        f"Whole runs: `python -m src.train` of {any_w.short:,} and {any_w.long:,} steps (no "
        "validation, no test), the difference of their training times (first step to end of "
        "training) per extra step; in brackets the same from whole processes, start-up included. "
        f"Bare: a loop of {any_w.long - any_w.short:,} steps. Medians over "
        f"{len(any_w.project_ms)} pairs.",
        "",
        "| model | whole run ms/step (processes) | bare ms/step "
        "| fixed cost per step, µs (CPU µs) | ratio (range) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, w in whole.items():
        fixed = med(w.project_ms) - med(w.bare_ms)
        fixed_cpu = med(w.project_cpu_ms) - med(w.bare_cpu_ms)
        ratios = [p / b for p, b in zip(w.project_ms, w.bare_ms, strict=True)]
        lines.append(
            f"| {LABELS.get(name, name)} | {med(w.project_ms):.3f} ({med(w.process_ms):.3f}) "
            f"| {med(w.bare_ms):.3f} | **{fixed * 1e3:,.0f}** ({fixed_cpu * 1e3:,.0f}) "
            f"| {spread(ratios)} |"
        )
    return "\n".join(lines)


def multirun_table(m: dict | None) -> str:
    if not m:
        return ""
    return "\n".join(
        [
            f"A sweep: a {m['jobs']}-job multirun of the default MLP (`-m seed=0,...`, basic "
            "launcher) against one run of it. One run's work is its time from launch minus its "
            "start-up (launch to first step), so it includes the process's exit and its first "
            "calls' warm-up, which a multirun pays once: the cost per job beyond it can be "
            "negative.",
            "",
            "| one run s (start-up s) | multirun s | budget s | per job beyond one run's work s |",
            "|---:|---:|---:|---:|",
            f"| {m['single_s']:.1f} ({m['startup_s']:.1f}) | {m['multirun_s']:.1f} "
            f"| {m['budget_s']:.1f} | {m['per_job_overhead_s']:.2f} |",
        ]
    )


class Targets:
    """The table of targets: what is held to which limit, the value measured, met or not."""

    def __init__(self):
        self.rows = ["| target | measured | met |", "|---|---:|:---:|"]

    def row(self, what: str, value: float, limit: float, unit: str = "") -> None:
        self.rows.append(
            f"| {what} | {value:.3f}{unit} | {'yes' if value <= limit else '**no**'} |"
        )

    def __str__(self) -> str:
        """The table, or "" when no target applies to what was measured."""
        return "\n".join(self.rows) if len(self.rows) > 2 else ""


def step_targets(
    settings: list[Setting], shares: list[dict[str, float]], loads: dict | None, fake: bool
) -> str:
    """The targets of ``steps``: step ratios, data set-up, validation share."""
    targets = Targets()
    by_name = {s.name: s for s in settings}
    for name, limit in TARGETS.items():
        if name in by_name:
            s = by_name[name]
            targets.row(
                f"{LABELS[name]}: project / bare ms/step <= {limit:.2f}", med(s.ratios), limit
            )
            targets.row(
                f"{LABELS[name]}: the same in CPU time <= {limit:.2f}", med(s.cpu_ratios), limit
            )
    if "mlp_numpy" in by_name:
        s = by_name["mlp_numpy"]
        targets.row(
            f"{LABELS['mlp_numpy']}: project / bare ms/step <= {NUMPY_RATIO}",
            med(s.ratios),
            NUMPY_RATIO,
        )
    if "mlp_numpy" in by_name and "mlp" in by_name:
        # Paired by repetition: the NumPy and the PyTorch blocks of one round ran close in time.
        numpy_mlp, torch_mlp = by_name["mlp_numpy"], by_name["mlp"]
        for variant, a, b in (
            ("project", numpy_mlp.project.ms, torch_mlp.project.ms),
            ("bare", numpy_mlp.bare.ms, torch_mlp.bare.ms),
        ):
            ratio = med([x / y for x, y in zip(a, b, strict=False)])
            targets.row(f"NumPy MLP / PyTorch MLP step ({variant}) <= 1.5", ratio, 1.5)
    if loads and not fake:
        setup = loads["setup"]
        targets.row("CIFAR-10 setup() <= 3 s (wall)", med([w for w, _ in setup]), 3.0, " s")
        targets.row("CIFAR-10 setup() <= 3 s (CPU time)", med([c for _, c in setup]), 3.0, " s")
    for share, what in zip(shares, ("", ", data.val_size=0"), strict=False):
        targets.row(
            f"validation share of the default MLP run{what} < 15%", share["share"] * 100, 15, " %"
        )
    return str(targets)


def whole_run_targets(whole: dict, starts: dict | None, multirun: dict | None) -> str:
    """The targets of ``whole-runs``: fixed cost, the NumPy ratio, start-up, the multirun."""
    targets = Targets()
    if "mlp" in whole:
        w = whole["mlp"]
        fixed = med(w.project_ms) - med(w.bare_ms)
        what = f"{LABELS['mlp']}: fixed cost per step, whole runs <= {FIXED_COST_MS} ms"
        targets.row(what, fixed, FIXED_COST_MS, " ms")
    if "mlp_numpy" in whole:
        w = whole["mlp_numpy"]
        ratio = med(w.project_ms) / med(w.bare_ms)
        what = f"{LABELS['mlp_numpy']}: project / bare ms/step, whole runs <= {NUMPY_RATIO}"
        targets.row(what, ratio, NUMPY_RATIO)
    if starts:
        walls = [w for w, _ in starts["first_step"]]
        cpus = [c for _, c in starts["first_step"] if c is not None]
        what = f"start-up to first step <= {STARTUP_S:g} s"
        targets.row(f"{what} (wall)", med(walls), STARTUP_S, " s")
        if cpus:
            targets.row(f"{what} (CPU time)", med(cpus), STARTUP_S, " s")
    if multirun:
        m = multirun
        targets.rows.append(
            f"| {m['jobs']}-job multirun <= {m['jobs']} runs' training and evaluation + one "
            f"start-up + {m['jobs']} s | {m['multirun_s']:.1f} s of {m['budget_s']:.1f} s "
            f"| {'yes' if m['multirun_s'] <= m['budget_s'] else '**no**'} |"
        )
    return str(targets)


def environment(args: argparse.Namespace) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = args.device
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    busy = f", load average {load[0]:.1f} on {os.cpu_count()} cores" if load else ""
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    return f"{device.type}: {what}{busy}; {versions}"


def bare_share(share: dict[str, float], bare_step_s: float) -> float:
    """The share the same evaluations would take in a bare loop: bare forward passes against
    bare training steps."""
    evals = share["n_evals"] * share["bare_s"]
    return evals / (evals + share["full_steps"] * bare_step_s)


def setting_line(args: argparse.Namespace) -> str:
    data = "synthetic data (data=fake)" if args.fake else f"CIFAR-10 from {args.data_root}"
    return f"{data}; precision {args.precision}" + (", torch.compile" if args.compile else "")


def render_steps(args, settings, shares, loads, seconds) -> str:
    """The report of ``python -m scripts.bench steps``."""
    parts = [
        f"Training steps through `src.train` vs a bare loop ({setting_line(args)}).",
        f"Machine: {environment(args)}.",
        "",
        step_table(settings, args.device),
        "",
        f"Test pass: one evaluation of the {settings[0].test_images:,} test images "
        "(project: `trainer.test`; bare: an `inference_mode` loop over the same tensors, in "
        "batches of `data.eval_batch_size`); ~: timed on "
        f"{SLOW_EVAL_BATCHES} batches and scaled up. CPU-time ratio: the same ratio in the "
        "process's CPU time (all threads), which a busy machine disturbs less than wall time.",
    ]
    if shares:
        parts += [
            "",
            "Validation in the default MLP run (a real fit of three validation intervals; an "
            "interval's evaluation costs its step's time minus the median step, checkpoints "
            "included; bare: an `inference_mode` forward pass over the same images):",
            "",
            "| evaluated every interval | images | evaluation ms | of which the validation loop "
            "| bare forward ms | ms per training step | evaluations per run | share of the "
            "training loop | a bare loop's share |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        bare_step = {s.name: med(s.bare.ms) / 1e3 for s in settings}.get("mlp", float("nan"))
        names = ("validation split + test set (default)", "test set only (data.val_size=0)")
        for share, what in zip(shares, names, strict=False):
            parts.append(
                f"| {what}, every {share['interval']} steps | {share['eval_images']:,} "
                f"| {share['eval_s'] * 1e3:.0f} | {share['validation_s'] * 1e3:.0f} "
                f"| {share['bare_s'] * 1e3:.0f} | {share['step_s'] * 1e3:.2f} "
                f"| {share['n_evals']} | **{share['share']:.1%}** "
                f"| {bare_share(share, bare_step):.1%} |"
            )
    parts += [
        "",
        "| data loading (median) | wall s (CPU s) |",
        "|---|---:|",
        f"| data module `load()` (read, decode) | {med_pair(loads['load'])} |",
        f"| data module `setup()` (load, split, normalise) | {med_pair(loads['setup'])} |",
    ]
    targets = step_targets(settings, shares, loads, args.fake)
    parts += ["", targets] if targets else []
    parts += ["", f"Benchmark wall time {seconds:.0f} s."]
    return "\n".join(parts)


STARTUP_LABELS = {
    "import torch": "`python -c 'import torch'`",
    "import pytorch_lightning": "`python -c 'import pytorch_lightning'`",
    "built": "`python -m src.train`: run built (imports, config, model)",
    "data": "`python -m src.train`: data set up",
    "first_step": "`python -m src.train`: **first training step**",
}


def render_whole_runs(args, whole, starts, multirun, seconds) -> str:
    """The report of ``python -m scripts.bench whole-runs``."""
    parts = [
        f"Whole runs of `python -m src.train`, timed from outside ({setting_line(args)}).",
        f"Machine: {environment(args)}.",
    ]
    if whole:
        parts += ["", whole_run_table(whole)]
    if starts:
        parts += ["", "| start-up (median) | wall s (CPU s) |", "|---|---:|"]
        parts += [f"| {label} | {med_pair(starts[k])} |" for k, label in STARTUP_LABELS.items()]
    if multirun:
        parts += ["", multirun_table(multirun)]
    targets = whole_run_targets(whole, starts, multirun)
    parts += ["", targets] if targets else []
    parts += ["", f"Benchmark wall time {seconds:.0f} s."]
    return "\n".join(parts)
