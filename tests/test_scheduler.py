"""Learning-rate schedules: the rates they set, their config group, the logged curve, refusals."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.lit.schedulers import with_warmup
from src.train import train
from tests.conftest import compose_cfg, run_main


def rates(scheduler_factory, steps: int, lr: float = 1.0) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps under the schedule."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = scheduler_factory(optimizer)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_warmup_rises_linearly_then_the_cosine_runs_its_own_course():
    total, warmup = 20, 4
    cosine = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)  # noqa: E731
    got = rates(lambda opt: with_warmup(opt, cosine, warmup_steps=warmup), total)
    for t, lr in enumerate(got):
        warm = 1 / warmup + (1 - 1 / warmup) * min(t, warmup) / warmup
        assert lr == pytest.approx(warm * (1 + math.cos(math.pi * t / total)) / 2)
    assert got[0] == pytest.approx(1 / warmup) and max(got) > 0.9


def test_no_warmup_is_the_schedule_itself():
    step = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)  # noqa: E731
    assert rates(lambda opt: with_warmup(opt, step), 7) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("warmup_steps", [-1, 2.5, True])
def test_bad_warmup_steps_are_refused(warmup_steps):
    with pytest.raises(ValueError, match="warmup_steps must be a non-negative integer"):
        rates(lambda opt: with_warmup(opt, lambda o: None, warmup_steps=warmup_steps), 1)


def lr_curve(run_dir) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("lr-SGD")]


@pytest.mark.slow
@pytest.mark.parametrize(
    "option, first, last",
    [  # lr 2e-3, 6 steps: the rates of the first and the last optimizer step
        ("none", 2e-3, 2e-3),
        ("step", 2e-3, 2e-3 * 0.5**2),
        ("cosine", 2e-3 / 3, 2e-3 * (1 + math.cos(math.pi * 5 / 6)) / 2),
        ("onecycle", 2e-3 / 25, None),
    ],
)
def test_each_option_trains_and_logs_its_rate_every_step(
    fast_overrides, tmp_path, option, first, last
):
    extra = {"step": ["scheduler.schedule.step_size=2"], "cosine": ["scheduler.warmup_steps=3"]}
    cfg = compose_cfg(*fast_overrides, f"scheduler={option}", *extra.get(option, []),
                      output_dir=tmp_path / "run")  # fmt: skip
    train(cfg)
    curve = lr_curve(tmp_path / "run")
    assert [s for s, _ in curve] == list(range(6))  # every step (log_every_n_steps=1)
    assert curve[0][1] == pytest.approx(first)
    if last is not None:
        assert curve[-1][1] == pytest.approx(last)
    if option == "onecycle":  # up to the peak, then down
        lrs = [lr for _, lr in curve]
        peak = lrs.index(max(lrs))
        assert 0 < peak < 5 and max(lrs) == pytest.approx(2e-3, rel=0.05)


def test_the_scheduler_state_is_in_the_checkpoint(fast_overrides, tmp_path):
    train(compose_cfg(*fast_overrides, "scheduler=cosine", output_dir=tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 6


def test_the_numpy_mlp_refuses_a_schedule(fast_overrides, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(*fast_overrides, "model=mlp_numpy", "scheduler=cosine", monkeypatch=monkeypatch)
    assert exit_info.value.code == 1
    assert (
        "NumPy MLP trains with the assignment's constant learning rate" in capsys.readouterr().err
    )


def test_a_bad_schedule_setting_fails_before_training(fast_overrides, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(*fast_overrides, "scheduler=cosine", "scheduler.warmup_steps=-2",
                 monkeypatch=monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    assert "warmup_steps must be a non-negative integer" in capsys.readouterr().err
