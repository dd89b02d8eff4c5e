"""The speed benchmark runs from a fresh clone (synthetic data) and prints its tables."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench_script():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_benchmark_smoke_on_fake_data(bench_script, tmp_path: Path, keep_threads):
    out = tmp_path / "bench.md"
    argv = ["--fake", "--models", "mlp,convnet", "--steps", "2", "--warmup", "1"]
    argv += ["--repeats", "2", "--eval-repeats", "1", "--startup-repeats", "0"]
    argv += ["--eval-interval", "4", "--threads", "1", "--device", "cpu", "--output", str(out)]
    argv += ["--whole-run-repeats", "0"]  # subprocess runs: tested on their own below (slow)
    report = bench_script.main(argv)
    assert out.read_text() == report + "\n"
    lines = report.splitlines()
    assert any(line.startswith("| model | batch |") for line in lines)
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert "MLP [100] (default)" in rows and "ConvNet" in rows
    assert len(rows["ConvNet"].split("|")) == 15  # all 13 columns filled
    assert "2 x 2" in rows["MLP [100] (default)"]  # steps x rounds
    assert "| validation split + test set (default), every 4 steps | 700 |" in report
    assert "| test set only (data.val_size=0), every 4 steps | 500 |" in report
    assert "| target | measured | met |" in report
    assert "data module `setup()`" in report


def test_benchmark_skips_the_numpy_model_where_it_cannot_run(bench_script, capsys):
    args = bench_script.parse_args(["--models", "mlp_numpy,mlp", "--precision", "bf16-mixed"])
    assert args.models == ["mlp"]
    assert "NumPy MLP" in capsys.readouterr().err


def test_benchmark_refuses_unknown_models(bench_script):
    with pytest.raises(SystemExit):
        bench_script.parse_args(["--models", "resnet"])


@pytest.mark.slow  # three fresh Python processes import torch and Lightning: about 20 s on 2 cores
def test_startup_is_timed_to_the_first_step(bench_script, tmp_path: Path):
    """One ``python -m src.train`` in a subprocess, to its first step (slow: fresh imports)."""
    args = bench_script.parse_args(["--fake", "--device", "cpu"])
    bench = bench_script.Benchmark(args, tmp_path)
    starts = bench_script.startup(bench, repeats=1)
    assert set(starts) == set(bench_script.STARTUP_KEYS)
    built, data, first = (starts[k][0][0] for k in ("built", "data", "first_step"))
    assert 0 < built <= data <= first


def test_benchmark_refuses_bad_whole_run_steps(bench_script):
    for steps in ("200", "200,200", "0,100", "a,b"):
        with pytest.raises(SystemExit):
            bench_script.parse_args(["--whole-run-steps", steps])
    assert bench_script.parse_args(["--whole-run-steps", "300,100"]).whole_run_steps == [100, 300]


def test_whole_runs_only_time_models_that_are_benchmarked(bench_script):
    args = bench_script.parse_args(["--models", "mlp,convnet", "--whole-runs", "linear,mlp"])
    assert args.whole_runs == ["mlp"]


@pytest.mark.slow  # four fresh processes import torch and Lightning: about 40 s on 2 cores
def test_whole_runs_and_multirun_are_timed_from_outside(bench_script, tmp_path: Path):
    """A short and a long ``python -m src.train`` of the near-zero-compute model, and a 2-job
    multirun beside one run: every number is there, and the report's tables show them."""
    from scripts.bench.multirun import measure_multirun
    from scripts.bench.steps import measure_steps
    from scripts.bench.whole_runs import measure_whole_runs

    args = bench_script.parse_args(["--fake", "--device", "cpu", "--models", "linear"])
    args.steps, args.warmup = 2, 1
    bench = bench_script.Benchmark(args, tmp_path)
    settings = [bench.setting("linear")]
    runs = measure_steps(bench, settings, repeats=1)
    whole = measure_whole_runs(bench, settings, runs, short=2, long=12, repeats=1)
    w = whole["linear"]
    assert (w.short, w.long) == (2, 12)
    # Ten more steps take time in the project and in the bare loop (a run of 12 steps does more
    # than one of 2); the bare loop's steps are real ones.
    assert w.project_ms[0] > 0 and w.process_ms[0] != 0 and w.bare_ms[0] > 0
    multirun = measure_multirun(
        bench, 2, extra=("trainer.max_steps=3", "trainer.val_check_interval=3")
    )
    assert multirun["jobs"] == 2
    assert 0 < multirun["startup_s"] < multirun["single_s"] < multirun["multirun_s"]
    assert (tmp_path / "multirun" / "sweep" / "1" / "run.yaml").is_file()  # both jobs ran
    from scripts.bench.report import multirun_table, targets_table, whole_run_table

    assert "| Linear, batch 8 (fixed cost) |" in whole_run_table(whole, settings)
    assert "2-job multirun" in targets_table(settings, [], None, None, True, whole, multirun)
    assert "| one run s (start-up s) |" in multirun_table(multirun)


def test_compare_checkouts_refuses_a_folder_that_is_no_checkout(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare", ROOT / "scripts" / "compare_checkouts.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main([str(ROOT), str(tmp_path)])
    assert "is not a checkout of this project" in capsys.readouterr().err


def test_fixed_cost_ladder_reports_every_rung(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fixed_cost", ROOT / "scripts" / "fixed_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        report = module.main(["--fake", "--repeats", "1", "--steps", "4,12"])
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in report.splitlines() if line.startswith("| ") and "rung" not in line]
    assert len(rows) == 1 + len(module.RUNGS)  # the bare loop, then each rung
    # µs per step of every rung, measured (too few steps here for their values to mean much)
    assert all(row.split("|")[2].strip().lstrip("-").isdigit() for row in rows)
    assert [row.split("|")[1].strip() for row in rows[1:]] == list(module.RUNGS.values())
