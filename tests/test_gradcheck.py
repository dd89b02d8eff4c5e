"""src.gradcheck: passes on every model, fails on a wrong backward, refuses bad settings."""

import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from src import gradcheck
from src.numpy_nn.modules import LeakyReLUModule
from tests.conftest import CONF

QUICK = ["data=fake", "data.num_train=300", "data.val_size=50", "data.num_test=50"]


def compose_gradcheck(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("gradcheck", overrides=[*QUICK, *overrides])


def assert_passes(results, threshold: float) -> None:
    assert results, "no parameter was checked"
    worst = max(results, key=gradcheck.ParameterError.worst)
    assert worst.worst() <= threshold, worst


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["none", "torch", "autograd", "manual"])
def test_mlp_passes_with_every_norm(norm):
    # PyTorch's init: at the assignment's N(0, 1e-4^2) the second layer's pre-activations are about
    # 1e-6, as small as the finite-difference step, so without batch norm the differences straddle
    # the LeakyReLU's kink (the README says to check deep MLPs at a checkpoint).
    overrides = ["model=mlp", f"model.norm={norm}", "model.hidden_units=[20,20]"]
    overrides.append("model.init=torch")
    cfg = compose_gradcheck(*overrides)
    results = gradcheck.gradcheck(cfg)
    # Every parameter of the model is checked (the norms' scale and shift included).
    names = {r.name for r in results}
    assert names == {n for n, _ in gradcheck.load_model(cfg).named_parameters()}
    assert_passes(results, cfg.threshold)


def test_numpy_mlp_passes_against_finite_differences_and_autograd():
    # One hidden layer: at the assignment's N(0, 1e-4^2) initialisation a second hidden layer's
    # pre-activations are ~1e-6, below any usable step, so differences would cross the kink.
    cfg = compose_gradcheck("model=mlp_numpy", "model.hidden_units=[20]")
    results = gradcheck.gradcheck(cfg)
    assert [r.name for r in results] == [
        f"layers.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")
    ]
    assert all(r.autograd is not None for r in results)
    assert_passes(results, cfg.threshold)


@pytest.mark.slow
def test_convnet_passes():
    cfg = compose_gradcheck("model=convnet", "n_samples=2", "n_coords=1")
    assert_passes(gradcheck.gradcheck(cfg), cfg.threshold)


class WrongLeakyReLU(torch.autograd.Function):
    """LeakyReLU whose backward is 1.5 times the true one: a test double of a broken backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > 0, x, 0.02 * x)

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return 1.5 * torch.where(x > 0, dout, 0.02 * dout)


class WrongLeakyReLUModule(nn.Module):
    def forward(self, x):
        return WrongLeakyReLU.apply(x)


class WrongNumpyLeakyReLU(LeakyReLUModule):
    """The NumPy LeakyReLU with a backward 1.5 times too large."""

    def backward(self, dout):
        return 1.5 * super().backward(dout)


LOAD_MODEL = gradcheck.load_model  # the real one, for the doubles (a test may patch it)


def broken_torch_mlp(cfg):
    net = LOAD_MODEL(cfg)
    layers = net.layers
    for i, module in enumerate(layers):
        if isinstance(module, nn.LeakyReLU):
            layers[i] = WrongLeakyReLUModule()
    return net


def broken_numpy_mlp(cfg):
    net = LOAD_MODEL(cfg)
    net.layers = [
        WrongNumpyLeakyReLU(m.neg_slope) if isinstance(m, LeakyReLUModule) else m
        for m in net.layers
    ]
    return net


def test_a_wrong_torch_backward_fails():
    cfg = compose_gradcheck("model=mlp", "model.hidden_units=[20]")
    results = gradcheck.gradcheck(cfg, net=broken_torch_mlp(cfg))
    by_name = {r.name: r.finite_differences for r in results}
    # Only the layer below the broken activation gets wrong gradients.
    assert by_name["layers.1.weight"] > 0.1
    assert by_name["layers.3.weight"] < cfg.threshold
    assert gradcheck.report(results, cfg.threshold) is not None


def test_a_wrong_numpy_backward_fails_against_both_references():
    cfg = compose_gradcheck("model=mlp_numpy", "model.hidden_units=[20]")
    results = gradcheck.gradcheck(cfg, net=broken_numpy_mlp(cfg))
    first = results[0]
    assert first.name == "layers.0.weight"
    assert first.finite_differences > 0.1 and first.autograd > 0.1


def sign_flipped_first_layer(cfg):
    """The configured MLP whose backward negates its first layer's weight gradient."""
    net = LOAD_MODEL(cfg)
    if isinstance(net, nn.Module):
        net.layers[1].weight.register_hook(lambda grad: -grad)
        return net
    first, backward = net.layers[0], net.layers[0].backward

    def flipped(dout, input_grad=True):
        dx = backward(dout, input_grad)
        first.grads["weight"] = -first.grads["weight"]
        return dx

    first.backward = flipped
    return net


@pytest.mark.parametrize(
    "model, first", [("mlp", "layers.1.weight"), ("mlp_numpy", "layers.0.weight")]
)
def test_a_sign_flipped_tiny_gradient_fails(model, first):
    # At the assignment's N(0, 1e-4^2) initialisation the first weight gradient of a [100,100,100]
    # MLP is tiny (~1e-9 on the sampled coordinates): an absolute floor of 1e-4 under the relative
    # error scored its sign flip 2.5e-5, a pass. Relative to its own size a flip scores 1.
    cfg = compose_gradcheck(f"model={model}", "model.hidden_units=[100,100,100]")
    honest = {r.name: r for r in gradcheck.gradcheck(cfg)}
    assert honest[first].worst() <= cfg.threshold
    net = sign_flipped_first_layer(cfg)
    flipped = {r.name: r for r in gradcheck.gradcheck(cfg, net=net)}
    assert flipped[first].finite_differences > 0.5
    if model == "mlp_numpy":
        assert flipped[first].autograd > 0.5
        gradient = net.layers[0].grads["weight"]
    else:
        gradient = net.layers[1].weight.grad.numpy()
    assert np.linalg.norm(gradient) < 1e-5  # the whole tensor's: a small gradient, caught
    assert gradcheck.report(list(flipped.values()), cfg.threshold) is not None


def test_zero_gradients_pass_against_rounding():
    # A bias before batch norm has a zero gradient; its finite differences are rounding alone.
    cfg = compose_gradcheck("model=mlp", "model.norm=torch", "model.hidden_units=[20]")
    results = {r.name: r for r in gradcheck.gradcheck(cfg)}
    assert results["layers.1.bias"].finite_differences <= cfg.threshold


def run_cli(monkeypatch, *args: str, data: list[str] = QUICK) -> int:
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["src.gradcheck", *data, *args])
    try:
        gradcheck.main()
    except SystemExit as e:
        return e.code
    finally:
        GlobalHydra.instance().clear()
    return 0


def test_cli_exit_status(monkeypatch, capsys):
    assert run_cli(monkeypatch, "model=mlp_numpy", "model.hidden_units=[10]") == 0
    assert "within threshold" in capsys.readouterr().out

    monkeypatch.setattr(gradcheck, "load_model", broken_numpy_mlp)
    assert run_cli(monkeypatch, "model=mlp_numpy", "model.hidden_units=[10]") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: gradient check failed") and "\n" not in err


def test_missing_data_and_bad_model_options_are_one_sentence(monkeypatch, capsys, tmp_path):
    no_data = [f"data.root={tmp_path}", "data.download=false"]
    assert run_cli(monkeypatch, "model=mlp", data=no_data) == 2
    assert capsys.readouterr().err.strip().startswith("error: CIFAR-10 not found")
    assert run_cli(monkeypatch, "model=mlp", "model.neg_slope=-1") == 2
    err = capsys.readouterr().err.strip()
    assert "neg_slope must be" in err and "\n" not in err


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["n_coords=0", "eps=-1", "threshold=0", "n_samples=1.5"])
def test_bad_settings_are_one_sentence(monkeypatch, capsys, bad):
    assert run_cli(monkeypatch, "model=mlp", bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad.split('=')[0]} must be") and "\n" not in err


def test_checkpoint_weights_are_checked(tmp_path):
    cfg = compose_gradcheck("model=mlp", "model.hidden_units=[10]")
    net = gradcheck.load_model(cfg)
    trained = {f"net.{k}": v + 1.0 for k, v in net.state_dict().items()}
    torch.save({"state_dict": trained}, tmp_path / "torch.ckpt")
    loaded = gradcheck.load_model(
        compose_gradcheck(
            "model=mlp", "model.hidden_units=[10]", f"ckpt_path={tmp_path / 'torch.ckpt'}"
        )
    )
    assert all(torch.equal(loaded.state_dict()[k[4:]], v) for k, v in trained.items())

    numpy_cfg = ["model=mlp_numpy", "model.hidden_units=[10]"]
    net = gradcheck.load_model(compose_gradcheck(*numpy_cfg))
    state = {k: torch.from_numpy(v + 1.0) for k, v in net.state_dict().items()}
    torch.save({"state_dict": {}, "numpy_state_dict": state}, tmp_path / "numpy.ckpt")  # as saved
    loaded = gradcheck.load_model(compose_gradcheck(*numpy_cfg, f"ckpt_path={tmp_path}/numpy.ckpt"))
    assert all(np.array_equal(loaded.state_dict()[k], v.numpy()) for k, v in state.items())

    with pytest.raises(gradcheck.GradcheckError, match="does not fit"):
        gradcheck.load_model(compose_gradcheck(*numpy_cfg, f"ckpt_path={tmp_path}/torch.ckpt"))
