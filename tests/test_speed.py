"""Speed: the pre-training precision and compile checks (``src.checks``), the classifier's logging
interval, and the benchmark's timing callbacks and bare loops (``scripts/bench``).

No timing is asserted here (timings depend on the machine and its load); only that things run,
count right and refuse what a device cannot do.
"""

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from scripts.bench import timing
from scripts.bench.loops import bare_numpy_steps, bare_torch_steps
from scripts.bench.timing import Milestones, StepClock, StepTimer
from src import checks
from src.build import build_classifier
from src.checks import canonical_precision, check_compile, check_precision
from src.lit.classifier import logs_this_step
from tests.conftest import FAST, compose_cfg

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [(32, "32-true"), ("32", "32-true"), ("bf16", "bf16-mixed"), ("16-mixed", "16-mixed")],
)
def test_canonical_precision(given, canonical):
    assert canonical_precision(given) == canonical


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="not a precision"):
        canonical_precision("8-mixed")


@pytest.mark.parametrize("precision", ["32-true", 32, "bf16-mixed"])
def test_cpu_precisions_that_work(precision):
    check_precision(precision, CPU)


def test_fp16_autocast_on_cpu_is_refused_with_the_alternative():
    # Lightning would silently train bf16-mixed instead (with a warning).
    with pytest.raises(ValueError, match="needs a CUDA GPU.*use 32 or bf16-mixed"):
        check_precision("16-mixed", CPU)


def test_lightnings_other_precisions_pass():
    assert check_precision("64", CPU) == "64-true"


@pytest.mark.parametrize(
    ("accelerator", "device"), [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"), ("tpu", "cpu")]
)
def test_training_device(accelerator, device):
    assert checks.training_device(accelerator).type == device


def test_numpy_model_trains_in_full_precision_only():
    # The classifier knows what it computes in; the checks ask it (src.checks.check_run).
    numpy_classifier = build_classifier(compose_cfg(*FAST, "model=mlp_numpy"))
    numpy_classifier.check_precision(check_precision("32", CPU))
    with pytest.raises(ValueError, match="NumPy"):
        numpy_classifier.check_precision(check_precision("bf16-mixed", CPU))
    build_classifier(compose_cfg(*FAST)).check_precision("bf16-mixed")


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(checks, "cuda_supports_bf16", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    with pytest.raises(ValueError, match="Old GPU.*no native bfloat16"):
        check_precision("bf16-mixed", torch.device("cuda"))


def test_compile_on_cpu_needs_a_cxx_compiler(monkeypatch):
    monkeypatch.setattr(checks.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        check_compile(CPU)
    monkeypatch.setattr(checks.shutil, "which", lambda name: f"/usr/bin/{name}")
    check_compile(CPU)


def test_compile_refuses_other_devices():
    with pytest.raises(ValueError, match="not on mps"):
        check_compile(torch.device("mps"))


def test_old_gpus_cannot_compile(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    with pytest.raises(ValueError, match="capability 6.1"):
        check_compile(torch.device("cuda"))


def test_milestones_are_found_in_noisy_output():
    output = (
        "train:   0%|          | 0/1 [00:00<?, ?it/s]   MILESTONE first_step 100.5 3.25\n"
        "MILESTONE built 99.0 2.0\nMILESTONE first_step 200.0 9.0\nnoise\n"
    )
    assert Milestones.parse(output) == {"first_step": (100.5, 3.25), "built": (99.0, 2.0)}


def test_logs_this_step_follows_lightnings_logging_interval(tmp_path: Path):
    from src.build import build

    cfg = compose_cfg(
        *FAST, "trainer.max_steps=7", "trainer.log_every_n_steps=3", output_dir=tmp_path / "run"
    )
    with open_dict(cfg):
        cfg.paths.data_dir = str(tmp_path / "data")
    run = build(cfg)
    seen: list[tuple[int, bool]] = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, *_):
            seen.append((trainer.global_step, logs_this_step(trainer)))

    run.trainer.callbacks.append(Spy())
    run.trainer.fit(run.classifier, datamodule=run.datamodule)
    assert [step for step, logs in seen if logs] == [2, 5]  # the 3rd and the 6th step
    assert logs_this_step(None)


def test_peak_memory_is_read_on_cpu():
    timing.reset_peak_memory(CPU)
    peak = timing.peak_memory(CPU)
    assert peak is not None and peak > 0


def test_bare_torch_steps_train_the_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(20, 3, 2, 2), torch.randint(3, (20,))
    before = net[1].weight.detach().clone()
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    bare_torch_steps(net, optimizer, x, y, batch_size=8, steps=5, generator=torch.Generator())
    assert len(steps) == 5  # 2 batches an epoch: the order wraps around
    assert not torch.equal(before, net[1].weight)


def test_bare_numpy_steps_train_the_model():
    from src.numpy_nn import SGD, NumpyMLP

    net = NumpyMLP(12, [4], 3, 0.02, dtype="float32", seed=0)
    optimizer = SGD(net.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 12)).astype("float32")
    y = rng.integers(3, size=20)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    bare_numpy_steps(net, optimizer, x, y, batch_size=8, steps=3, rng=rng)
    after = net.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_step_timer_and_clock_time_a_real_fit(tmp_path: Path):
    from src.build import build

    cfg = compose_cfg(*FAST, "trainer.max_steps=5", output_dir=tmp_path / "run")
    with open_dict(cfg):
        cfg.paths.data_dir = str(tmp_path / "data")
    run = build(cfg)
    timer, clock = StepTimer(warmup=1, steps=3), StepClock()
    run.trainer.callbacks.extend([timer, clock])
    run.trainer.fit(run.classifier, datamodule=run.datamodule)
    assert timer.ms_per_step > 0 and timer.cpu_ms_per_step >= 0
    assert timer.peak_mib > 0
    assert len(clock.starts) == 5 and clock.end >= clock.starts[-1]
    assert len(timer.eval_seconds) == len(clock.validations) == 1  # every 3 steps (FAST)


# The entry point refuses, before training, what the device cannot do.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.precision=16-mixed"], "needs a CUDA GPU"),
        (["model=mlp_numpy", "trainer.precision=bf16-mixed"], "NumPy"),
        (["model=mlp_numpy", "compile=true"], "NumPy model is not a torch module"),
    ],
)
def test_the_entry_point_refuses_what_the_device_cannot_do(
    tmp_path, monkeypatch, capsys, overrides, message
):
    from tests.conftest import run_main

    args = ["data=fake", "trainer.accelerator=cpu", f"paths.output_root={tmp_path}", *overrides]
    with pytest.raises(SystemExit) as exit_:
        run_main(*args, monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    stderr = capsys.readouterr().err
    assert message in stderr and "Traceback" not in stderr
    assert not list(tmp_path.rglob("events.out.*"))


@pytest.mark.slow
def test_compile_without_a_compiler_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from tests.conftest import run_main

    monkeypatch.setattr(checks.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit):
        run_main("data=fake", "compile=true", "trainer.accelerator=cpu",
                 f"paths.output_root={tmp_path}", monkeypatch=monkeypatch)  # fmt: skip
    assert "C++ compiler" in capsys.readouterr().err


def test_bf16_mixed_trains_on_cpu(tmp_path: Path):
    from src.build import build

    cfg = compose_cfg(*FAST, "trainer.precision=bf16-mixed", output_dir=tmp_path / "run")
    with open_dict(cfg):
        cfg.paths.data_dir = str(tmp_path / "data")
    run = build(cfg)
    run.trainer.fit(run.classifier, datamodule=run.datamodule)
    assert run.trainer.global_step == 6 and run.trainer.precision == "bf16-mixed"


@pytest.mark.slow  # Inductor compiles C++ for the CPU: tens of seconds
def test_compile_keeps_checkpoint_names_and_trains(tmp_path: Path):
    from src.build import build

    cfg = compose_cfg(*FAST, "compile=true", "trainer.max_steps=3", output_dir=tmp_path / "run")
    with open_dict(cfg):
        cfg.paths.data_dir = str(tmp_path / "data")
    run = build(cfg)
    names = set(run.classifier.state_dict())
    run.trainer.fit(run.classifier, datamodule=run.datamodule)
    assert run.trainer.global_step == 3
    assert set(run.classifier.state_dict()) == names  # no "_orig_mod." in checkpoints
    assert not any("_orig_mod" in name for name in names)
