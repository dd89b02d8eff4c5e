"""``model=mlp_numpy`` through the real entry point: config, training, curves, checkpoints."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from src.build import build, build_classifier, build_datamodule
from src.checks import check_run
from src.lit import NumpyClassifier
from src.numpy_nn import SGD, NumpyMLP
from src.scalars import read_scalars
from src.train import ConfigError, train
from tests.conftest import compose_cfg

# Enough steps on the fake data for the NumPy MLP to get well above chance (10 classes: 0.1).
LEARN = ["trainer.max_steps=60", "trainer.val_check_interval=20"]


def numpy_params(ckpt_path: Path) -> dict[str, np.ndarray]:
    state = torch.load(ckpt_path, weights_only=False)["numpy_state_dict"]  # our own file
    return {name: t.numpy() for name, t in state.items()}


def curve_steps(run_dir: Path) -> dict[str, list[int]]:
    """The steps at which each scalar was logged, by tag."""
    return {tag: list(points) for tag, points in read_scalars(run_dir).items()}


def test_config_has_the_assignment_defaults():
    cfg = compose_cfg("model=mlp_numpy")
    assert cfg.classifier._target_ == "src.lit.NumpyClassifier"
    assert cfg.model._target_ == "src.numpy_nn.NumpyMLP"
    assert list(cfg.model.hidden_units) == [100] and cfg.model.neg_slope == 0.02
    assert cfg.model.n_classes == cfg.data.num_classes == cfg.classifier.num_classes == 10
    assert cfg.model.dtype == "float32" and cfg.model.seed == cfg.seed
    assert cfg.optimizer._target_ == "src.numpy_nn.SGD" and cfg.optimizer.lr == 2e-3
    assert cfg.data.batch_size == 200
    assert cfg.trainer.max_steps == 1500 and cfg.trainer.val_check_interval == 100


def test_a_bad_learning_rate_fails_before_build(fast_overrides):
    cfg = compose_cfg(*fast_overrides, "model=mlp_numpy", "optimizer.lr=-1")
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        check_run(cfg, build_datamodule(cfg), build_classifier(cfg))


@pytest.mark.slow
def test_learns_logs_like_the_pytorch_mlp_and_checkpoints(tmp_path, fast_overrides):
    run_dir = tmp_path / "numpy"
    cfg = compose_cfg(*fast_overrides, *LEARN, "model=mlp_numpy", output_dir=run_dir)
    metrics = train(cfg)
    assert metrics["final_test/acc"] > 0.5  # chance is 0.1
    assert metrics["best_val/acc"] > 0.5

    # The same curves as the PyTorch classifier: the same names, logged at the same steps.
    torch_dir = tmp_path / "torch"
    train(compose_cfg(*fast_overrides, *LEARN, "model=mlp", output_dir=torch_dir))
    steps = curve_steps(run_dir)
    assert steps == curve_steps(torch_dir)
    assert {"train/loss", "train/acc", "lr-SGD", "val/acc", "final_test/acc"} <= set(steps)
    val_acc = list(read_scalars(run_dir)["val/acc"].values())
    assert len(val_acc) == 3 and val_acc[-1] > val_acc[0]

    # The best checkpoint loads back into a NumpyClassifier with identical parameters, and the
    # final test evaluated those parameters.
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    fresh = NumpyMLP(3072, [100], 10, 0.02, dtype="float32", seed=123)
    loaded = NumpyClassifier.load_from_checkpoint(
        best,
        net=fresh,
        optimizer=partial(SGD, lr=1e-3),
        num_classes=10,
        weights_only=False,  # our own file
    )
    saved = numpy_params(best)
    assert set(saved) == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}
    for name, value in loaded.net.named_parameters().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, saved[name])
    datamodule = build(cfg).datamodule
    datamodule.setup()
    x, y = datamodule.splits["test"]
    acc = (loaded(x).argmax(dim=1) == y).float().mean().item()
    assert acc == pytest.approx(metrics["final_test/acc"], abs=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_final_test_restores_the_best_checkpoint(tmp_path, fast_overrides, dtype):
    overrides = [*fast_overrides, "model=mlp_numpy", f"model.dtype={dtype}"]
    cfg = compose_cfg(*overrides, output_dir=tmp_path / "run")
    run = build(cfg)
    run.trainer.fit(run.classifier, datamodule=run.datamodule)
    best = Path(run.trainer.checkpoint_callback.best_model_path)
    for value in run.classifier.net.named_parameters().values():
        value[...] = 0  # whatever the network holds now, the test must use the checkpoint's
    run.trainer.test(run.classifier, datamodule=run.datamodule, ckpt_path="best", verbose=False)
    saved = numpy_params(best)
    for name, value in run.classifier.net.named_parameters().items():
        assert value.dtype == saved[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(value, saved[name])
    assert run.trainer.callback_metrics["final_test/loss"] < 2.3025  # not the zeroed net's ln(10)


@pytest.mark.slow
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path, fast_overrides):
    straight = tmp_path / "straight"
    train(compose_cfg(*fast_overrides, "model=mlp_numpy", output_dir=straight))
    first = tmp_path / "first"
    train(compose_cfg(*fast_overrides, "model=mlp_numpy", "trainer.max_steps=3", output_dir=first))
    resumed = tmp_path / "resumed"
    last = first / "checkpoints" / "last.ckpt"
    train(compose_cfg(*fast_overrides, "model=mlp_numpy", f"ckpt_path={last}", output_dir=resumed))

    expected = numpy_params(straight / "checkpoints" / "last.ckpt")
    got = numpy_params(resumed / "checkpoints" / "last.ckpt")
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)
    assert not np.array_equal(numpy_params(last)["layers.0.weight"], expected["layers.0.weight"])


def test_torch_runs_on_one_thread_while_the_numpy_model_trains(tmp_path, fast_overrides):
    """NumPy computes the model; torch's OpenMP threads would only spin against NumPy's BLAS
    threads. One torch thread during fit and test, and the caller's setting back after."""
    import pytorch_lightning as pl

    seen: list[int] = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, *_):
            seen.append(torch.get_num_threads())

        def on_test_batch_end(self, *_):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = compose_cfg(*fast_overrides, "model=mlp_numpy", output_dir=tmp_path / "run")
        run = build(cfg)
        run.trainer.callbacks.append(Probe())
        run.trainer.fit(run.classifier, datamodule=run.datamodule)
        run.trainer.test(run.classifier, datamodule=run.datamodule, verbose=False)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
