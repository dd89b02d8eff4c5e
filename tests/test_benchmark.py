"""The performance tools, ``python -m scripts.bench <subcommand>``: each subcommand runs from a
fresh clone (synthetic data, a few steps) and prints its table; bad options are one sentence."""

from pathlib import Path

import pytest
import torch

from scripts.bench.__main__ import SUBCOMMANDS, check, main, parser
from scripts.bench.settings import Benchmark
from tests.conftest import ROOT

TINY_RUNS = ["--fake", "--device", "cpu", "--threads", "1"]


@pytest.fixture(autouse=True)
def keep_threads():
    """``--threads`` sets torch's threads for the process: give them back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def report_of(argv: list[str], tmp_path: Path, capsys) -> str:
    """Run ``python -m scripts.bench ARGV --output FILE``; the report, printed and written."""
    out = tmp_path / "report.md"
    assert main([*argv, "--output", str(out)]) == 0
    report = out.read_text()
    assert report.strip() in capsys.readouterr().out
    return report


def table_rows(report: str) -> dict[str, str]:
    """The rows of the report's tables by their first cell (header rows included)."""
    return {line.split("|")[1].strip(): line for line in report.splitlines() if line[:2] == "| "}


def test_every_subcommand_is_documented_and_checks_its_options():
    usage = parser().format_help()
    for name, (module, _, _) in SUBCOMMANDS.items():
        assert name in usage and module.__doc__.lstrip().startswith("``python -m scripts.bench")
        assert callable(module.add_arguments) and callable(module.check_arguments)


@pytest.mark.slow
def test_steps_on_fake_data(tmp_path: Path, capsys):
    argv = ["steps", *TINY_RUNS, "--models", "mlp,convnet", "--steps", "2", "--warmup", "1"]
    argv += ["--repeats", "2", "--eval-repeats", "1", "--eval-interval", "4"]
    report = report_of(argv, tmp_path, capsys)
    rows = table_rows(report)
    assert "model" in rows and "MLP [100] (default)" in rows and "ConvNet" in rows
    assert len(rows["ConvNet"].split("|")) == 15  # all 13 columns filled
    assert "2 x 2" in rows["MLP [100] (default)"]  # steps x rounds
    assert "| validation split + test set (default), every 4 steps | 700 |" in report
    assert "| test set only (data.val_size=0), every 4 steps | 500 |" in report
    assert "| target | measured | met |" in report and "data module `setup()`" in report


def test_the_numpy_model_is_skipped_where_it_cannot_run(capsys):
    args = parser().parse_args(["steps", "--models", "mlp_numpy,mlp", "--precision", "bf16-mixed"])
    assert check(args) is None and args.models == ["mlp"]
    assert "NumPy MLP" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["steps", "--models", "resnet"], "unknown model(s) ['resnet']"),
        (["steps", "--steps", "0"], "--steps and --repeats must be positive"),
        (["steps", "--threads", "0"], "--threads must be positive"),
        (["whole-runs", "--steps", "200"], "two different positive step counts"),
        (["whole-runs", "--steps", "200,200"], "two different positive step counts"),
        (["fixed-cost", "--steps", "a,b"], "two different positive step counts"),
        (["batchnorm", "--shapes", "0"], "must be positive"),
        (["numpy", "--batch", "0"], "must be positive"),
        (["diagnostics", "--models", "mlp,resnet"], "unknown model(s) ['resnet']"),
        (["host-copies", "--steps", "0"], "--steps must be positive"),
    ],
)
def test_bad_options_are_one_sentence_before_any_work(argv, says, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1


def test_unknown_options_and_subcommands_exit_1(capsys):
    for argv in (["steps", "--fast"], ["benchmark"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 1 and capsys.readouterr().err.startswith("error: ")


def test_compare_refuses_a_folder_that_is_no_checkout(tmp_path, capsys):
    assert main(["compare", str(ROOT), str(tmp_path)]) == 1
    assert "is not a checkout of this project" in capsys.readouterr().err


@pytest.mark.slow
def test_batchnorm_times_every_layer(tmp_path: Path, capsys):
    argv = ["batchnorm", "--device", "cpu", "--shapes", "1", "--min-run-time", "0.01"]
    rows = table_rows(report_of(argv, tmp_path, capsys))
    assert {"torch BatchNorm1d", "manual module", "torch BatchNorm2d", "autograd 2d"} <= set(rows)
    torch_1d = rows["torch BatchNorm1d"].split("|")
    assert torch_1d[4].strip() == "1.00x" and float(torch_1d[5]) > 0  # its own peak: > 0 MiB


def test_numpy_times_both_steps_at_every_size(tmp_path: Path, capsys):
    argv = ["numpy", "--batch", "8", "--steps", "2", "--repeats", "1", "--device", "cpu"]
    rows = table_rows(report_of(argv, tmp_path, capsys))
    assert "[100]" in rows and "[512, 512, 256]" in rows
    assert all(float(c) > 0 for c in rows["[100]"].split("|")[3:6])


def test_host_copies_on_a_cpu_profile_the_steps_and_say_na(tmp_path: Path, capsys):
    argv = ["host-copies", *TINY_RUNS, "--warmup", "1", "--steps", "2"]
    report = report_of(argv, tmp_path, capsys).strip()
    assert report == "host-to-device copies in 2 mlp steps: n/a (no CUDA device)"


def test_the_fixed_cost_rungs_in_this_process_fit(tmp_path: Path):
    from scripts.bench import fixed_cost

    args = parser().parse_args(["fixed-cost", *TINY_RUNS])
    assert check(args) is None
    bench = Benchmark(args, tmp_path)
    s = bench.setting("linear")
    for rung in ("lightning", "manual", "callbacks"):
        wall, cpu = fixed_cost.fit_seconds(bench, s, rung, 3)
        assert wall > 0 and cpu > 0


@pytest.mark.slow
def test_diagnostics_time_the_callbacks_own_hooks(tmp_path: Path, capsys):
    argv = ["diagnostics", *TINY_RUNS, "--models", "mlp", "--steps", "3", "--warmup", "1"]
    report = report_of([*argv, "--repeats", "1"], tmp_path, capsys)
    rows = [line.split("|") for line in report.splitlines() if line.startswith("| mlp |")]
    assert [r[2].strip() for r in rows] == ["off", "on", "on, histograms always"]
    hooks = [float(r[7]) for r in rows]
    assert hooks[0] == 0 and hooks[1] > 0 and hooks[2] > 0  # only a callback there costs


@pytest.mark.slow  # two fresh Python processes import torch and Lightning, twice: about 40 s
def test_fixed_cost_ladder_reports_every_rung(tmp_path: Path, capsys):
    from scripts.bench.fixed_cost import RUNGS

    argv = ["fixed-cost", *TINY_RUNS, "--repeats", "1", "--steps", "4,12"]
    report = report_of(argv, tmp_path, capsys)
    rows = [line for line in report.splitlines() if line.startswith("| ") and "rung" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["bare loop", *RUNGS.values()]
    # µs per step of every rung, measured (too few steps here for their values to mean much)
    assert all(row.split("|")[2].strip().lstrip("-").isdigit() for row in rows)


@pytest.mark.slow  # three fresh Python processes import torch and Lightning: about 20 s on 2 cores
def test_startup_is_timed_to_the_first_step(tmp_path: Path):
    """One ``python -m src.train`` in a subprocess, to its first step (slow: fresh imports)."""
    from scripts.bench.startup import STARTUP_KEYS, startup

    args = parser().parse_args(["whole-runs", "--fake", "--device", "cpu"])
    check(args)
    starts = startup(Benchmark(args, tmp_path), repeats=1)
    assert set(starts) == set(STARTUP_KEYS)
    built, data, first = (starts[k][0][0] for k in ("built", "data", "first_step"))
    assert 0 < built <= data <= first


@pytest.mark.slow  # six fresh processes import torch and Lightning: about 60 s on 2 cores
def test_whole_runs_and_multirun_are_timed_from_outside(tmp_path: Path):
    """A short and a long ``python -m src.train`` of the near-zero-compute model, twice (each
    run in a folder of its own), and a 2-job multirun beside one run: every number is there, and
    the report's tables show them."""
    from scripts.bench.multirun import measure_multirun
    from scripts.bench.report import multirun_table, whole_run_table, whole_run_targets
    from scripts.bench.whole_runs import measure_whole_runs

    args = parser().parse_args(["whole-runs", "--fake", "--device", "cpu", "--models", "linear"])
    check(args)
    bench = Benchmark(args, tmp_path)
    whole = measure_whole_runs(bench, [bench.setting("linear")], short=2, long=12, repeats=2)
    w = whole["linear"]
    assert (w.short, w.long) == (2, 12) and len(w.project_ms) == 2
    # Ten more steps take time in the project and in the bare loop (a run of 12 steps does more
    # than one of 2); the bare loop's steps are real ones.
    assert min(w.project_ms) > 0 and w.process_ms[0] != 0 and min(w.bare_ms) > 0
    multirun = measure_multirun(
        bench, 2, extra=("trainer.max_steps=3", "trainer.val_check_interval=3")
    )
    assert multirun["jobs"] == 2
    assert 0 < multirun["startup_s"] < multirun["single_s"] < multirun["multirun_s"]
    assert (tmp_path / "multirun" / "sweep" / "1" / "run.yaml").is_file()  # both jobs ran
    assert "| Linear, batch 8 (fixed cost) |" in whole_run_table(whole)
    assert "2-job multirun" in whole_run_targets(whole, None, multirun)
    assert "| one run s (start-up s) |" in multirun_table(multirun)
