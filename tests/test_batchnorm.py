"""The custom batch norms (part 3): gradients, agreement with torch, shapes, and use in training."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from src.models import MLP, ConvNet
from src.models.batchnorm import (
    CustomBatchNorm2dAutograd,
    CustomBatchNorm2dManualModule,
    CustomBatchNormAutograd,
    CustomBatchNormManualFunction,
    CustomBatchNormManualModule,
    make_norm,
)
from src.train import train
from tests.conftest import compose_cfg

# Which of (input, gamma, beta) require grad: every combination, the empty one included.
GRAD_MASKS = list(itertools.product([False, True], repeat=3))
LAYOUTS = ["rows", "images"]  # (batch, C) and (batch, C, h, w)


def random_inputs(seed: int, layout: str, requires: tuple[bool, bool, bool]):
    """A float64 input of random size with a non-zero mean, and random gamma and beta."""
    g = torch.Generator().manual_seed(seed)
    batch, width = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((2, 9), (1, 7)))
    shape = (batch, width) if layout == "rows" else (batch, width, 3, 2)
    x = 3 * torch.randn(shape, generator=g, dtype=torch.float64) + 1
    gamma = torch.rand(width, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(width, generator=g, dtype=torch.float64)
    return [t.requires_grad_(r) for t, r in zip((x, gamma, beta), requires, strict=True)]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("requires", [m for m in GRAD_MASKS if any(m)])
def test_manual_function_passes_gradcheck(requires, layout, seed):
    inputs = random_inputs(seed, layout, requires)
    assert torch.autograd.gradcheck(CustomBatchNormManualFunction.apply, inputs)


class SpyFunction(CustomBatchNormManualFunction):
    """The manual function, remembering what its backward returned."""

    returned: tuple = ()

    @staticmethod
    def backward(ctx, grad_output):
        SpyFunction.returned = CustomBatchNormManualFunction.backward(ctx, grad_output)
        return SpyFunction.returned


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("requires", GRAD_MASKS)
def test_manual_backward_returns_none_where_no_grad_is_needed(requires, layout):
    x, gamma, beta = random_inputs(0, layout, requires)
    SpyFunction.returned = ()
    out = SpyFunction.apply(x, gamma, beta)
    assert out.requires_grad == any(requires)
    if not any(requires):
        return  # no graph: backward is never called
    out.backward(torch.randn_like(out))
    assert len(SpyFunction.returned) == 4
    for grad, needed, t in zip(SpyFunction.returned, requires, (x, gamma, beta), strict=False):
        assert (grad is not None) == needed
        assert grad is None or grad.shape == t.shape
    assert SpyFunction.returned[3] is None  # eps


# (custom module, torch module, input shape)
PAIRS = [
    (CustomBatchNormAutograd, nn.BatchNorm1d, (16, 5)),
    (CustomBatchNormManualModule, nn.BatchNorm1d, (16, 5)),
    (CustomBatchNorm2dAutograd, nn.BatchNorm2d, (4, 5, 3, 6)),
    (CustomBatchNorm2dManualModule, nn.BatchNorm2d, (4, 5, 3, 6)),
]
PAIR_IDS = [p[0].__name__ for p in PAIRS]


@pytest.mark.parametrize("momentum", [0.1, 0.35])
@pytest.mark.parametrize(("custom_cls", "torch_cls", "shape"), PAIRS, ids=PAIR_IDS)
def test_matches_torch_batchnorm_in_training_and_eval(custom_cls, torch_cls, shape, momentum):
    torch.manual_seed(0)
    n = shape[1]
    custom = custom_cls(n, momentum=momentum).double()
    reference = torch_cls(n, momentum=momentum).double()
    with torch.no_grad():  # parameters away from their ones/zeros start, the same in both
        for p, q in ((custom.gamma, reference.weight), (custom.beta, reference.bias)):
            q.copy_(p.copy_(torch.randn(n, dtype=torch.float64)))

    for step in range(3):  # training: batch statistics; the running averages move
        x = (4 * torch.randn(shape, dtype=torch.float64) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        out, out_ref = custom(x), reference(x_ref)
        torch.testing.assert_close(out, out_ref)
        grad = torch.randn_like(out)
        out.backward(grad)
        out_ref.backward(grad)
        torch.testing.assert_close(x.grad, x_ref.grad)
        torch.testing.assert_close(custom.gamma.grad, reference.weight.grad)
        torch.testing.assert_close(custom.beta.grad, reference.bias.grad)
        custom.zero_grad()
        reference.zero_grad()
        torch.testing.assert_close(custom.running_mean, reference.running_mean)
        torch.testing.assert_close(custom.running_var, reference.running_var)

    custom.eval()
    reference.eval()
    x = torch.randn(shape, dtype=torch.float64)
    out = custom(x)
    torch.testing.assert_close(out, reference(x))
    for i in range(2):  # one sample at a time: the same as within the batch
        torch.testing.assert_close(custom(x[i : i + 1]), out[i : i + 1])


@pytest.mark.parametrize(("custom_cls", "torch_cls", "shape"), PAIRS, ids=PAIR_IDS)
def test_half_precision_input_is_normalised_in_float32(custom_cls, torch_cls, shape):
    # Mixed precision: float32 parameters, bfloat16 activations far from zero, whose statistics
    # in bfloat16 would be visibly off.
    torch.manual_seed(0)
    x = (300 * torch.randn(shape) + 500).to(torch.bfloat16).requires_grad_()
    custom, reference = custom_cls(shape[1]), torch_cls(shape[1])
    out, out_ref = custom(x), reference(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(custom.running_mean, reference.running_mean)
    torch.testing.assert_close(custom.running_var, reference.running_var)
    (grad,) = torch.autograd.grad(out.float().square().sum(), x)
    (grad_ref,) = torch.autograd.grad(out_ref.float().square().sum(), x)
    torch.testing.assert_close(grad, grad_ref)


def test_running_stats_are_buffers_that_follow_the_module():
    bn = CustomBatchNormManualModule(3)
    assert set(dict(bn.named_buffers())) == {"running_mean", "running_var"}
    assert set(dict(bn.named_parameters())) == {"gamma", "beta"}
    assert bn.double().running_var.dtype == torch.float64
    torch.testing.assert_close(bn.running_var, torch.ones(3, dtype=torch.float64))


ALL_CUSTOM = [
    CustomBatchNormAutograd,
    CustomBatchNormManualModule,
    CustomBatchNorm2dAutograd,
    CustomBatchNorm2dManualModule,
]


@pytest.mark.parametrize("cls", ALL_CUSTOM)
@pytest.mark.parametrize("shape", [(4,), (4, 6), (4, 5, 3), (4, 6, 2, 2), (4, 5, 2, 2, 1)])
def test_wrong_input_shape_is_a_clear_error(cls, shape):
    bn = cls(5)
    good = (4, 5) if bn.input_dims == 2 else (4, 5, 2, 2)
    if shape == good:
        pytest.skip("the accepted shape")
    with pytest.raises(ValueError, match=rf"{cls.__name__} expects input of shape \(batch, 5"):
        bn(torch.randn(shape))


@pytest.mark.parametrize("cls", ALL_CUSTOM)
def test_one_value_per_feature_is_an_error_in_training_only(cls):
    bn = cls(5)
    x = torch.randn((1, 5) if bn.input_dims == 2 else (1, 5, 1, 1))
    with pytest.raises(ValueError, match="more than one value per feature"):
        bn(x)
    assert bn.eval()(x).shape == x.shape


def test_manual_function_rejects_mismatched_parameters():
    with pytest.raises(ValueError, match="gamma and beta of shape"):
        CustomBatchNormManualFunction.apply(torch.randn(4, 5), torch.ones(4), torch.zeros(4))


@pytest.mark.parametrize("kwargs", [{"n_neurons": 0}, {"n_neurons": 2.5}, {"momentum": 1.5}])
def test_bad_module_arguments_are_errors(kwargs):
    with pytest.raises(ValueError):
        CustomBatchNormAutograd(**{"n_neurons": 3, **kwargs})


@pytest.mark.parametrize(
    ("kind", "spatial", "expected"),
    [
        ("torch", False, nn.BatchNorm1d),
        ("torch", True, nn.BatchNorm2d),
        ("autograd", False, CustomBatchNormAutograd),
        ("autograd", True, CustomBatchNorm2dAutograd),
        ("manual", False, CustomBatchNormManualModule),
        ("manual", True, CustomBatchNorm2dManualModule),
    ],
)
def test_make_norm_maps_names_to_layers(kind, spatial, expected):
    layer = make_norm(kind, 7, spatial=spatial)
    assert type(layer) is expected
    assert sum(p.numel() for p in layer.parameters()) == 14


def test_make_norm_none_and_unknown_names():
    assert make_norm("none", 7) is None
    with pytest.raises(ValueError, match="norm must be one of none, torch, autograd, manual"):
        make_norm("batch", 7)
    for build in (lambda: MLP(hidden_units=[], norm="BN"), lambda: ConvNet(norm="BN")):
        with pytest.raises(ValueError, match="norm must be one of"):
            build()


@pytest.mark.parametrize("module", [CustomBatchNormAutograd, CustomBatchNormManualModule])
def test_sizes_and_rates_may_be_numpy_scalars_but_not_bools(module):
    layer = module(np.int64(6), eps=np.float32(1e-3), momentum=np.float64(0.5))
    assert layer.n_neurons == 6 and type(layer.n_neurons) is int and layer.momentum == 0.5
    assert layer(torch.randn(4, 6)).shape == (4, 6)
    for bad in ({"n_neurons": True}, {"n_neurons": 6.0}, {"n_neurons": 6, "momentum": True},
                {"n_neurons": 6, "momentum": 1.5}, {"n_neurons": 6, "eps": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            module(**bad)


# A couple of steps of the real entry point on small fake data, for each model and norm.
SMALL_RUN = [
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "data.num_train=128",
    "data.num_test=32",
    "data.val_size=32",
    "data.batch_size=8",
    "data.eval_batch_size=32",
]


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["none", "torch", "autograd", "manual"])
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_training_runs_with_each_norm(model, norm, fast_overrides, tmp_path):
    overrides = [f"model={model}", *fast_overrides, *SMALL_RUN, f"model.norm={norm}"]
    cfg = compose_cfg(*overrides, output_dir=tmp_path / "run")
    assert cfg.model.norm == norm
    metrics = train(cfg)
    assert math.isfinite(metrics["best_val/acc"])
    assert 0 <= metrics["final_test/acc"] <= 1
    assert math.isfinite(metrics["final_test/loss"])
