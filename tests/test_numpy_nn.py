"""The NumPy MLP: every backward pass against central finite differences, and against PyTorch.

Gradient checks run in float64 and compare whole arrays by relative error
``|analytic - numeric| / (|analytic| + |numeric|)`` (Frobenius norms), which must stay below 1e-6.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.models import MLP as TorchMLP
from src.numpy_nn import (
    SGD,
    CrossEntropyModule,
    LeakyReLUModule,
    LinearModule,
    NumpyMLP,
    SoftMaxModule,
    one_hot,
    softmax_cross_entropy_backward,
    train_step,
)

TOLERANCE = 1e-6


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numerical_grad(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central differences of the scalar ``f()`` in each element of ``x`` (perturbed in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def away_from_zero(rng: np.random.Generator, shape) -> np.ndarray:
    """Random values with |v| >= 0.1: finite differences never straddle the LeakyReLU's kink."""
    v = rng.standard_normal(shape)
    return v + 0.1 * np.sign(v)


SHAPES = [(1, 1, 1), (3, 5, 4), (7, 2, 9)]  # (batch, in_features, out_features)


@pytest.mark.parametrize("batch, n_in, n_out", SHAPES)
def test_linear_backward_matches_finite_differences(batch, n_in, n_out):
    rng = np.random.default_rng(batch * 100 + n_in)
    layer = LinearModule(n_in, n_out, rng=rng)
    layer.params["weight"] = rng.standard_normal((n_out, n_in))  # forward reads params every call
    layer.params["bias"] = rng.standard_normal(n_out)
    x, dout = rng.standard_normal((batch, n_in)), rng.standard_normal((batch, n_out))

    def loss() -> float:  # L = <out, dout>, so dL/d(out) = dout
        return float((layer.forward(x) * dout).sum())

    layer.forward(x)
    dx = layer.backward(dout)
    assert rel_error(dx, numerical_grad(loss, x)) < TOLERANCE
    for name in ("weight", "bias"):
        numeric = numerical_grad(loss, layer.params[name])
        assert layer.grads[name].shape == layer.params[name].shape
        assert rel_error(layer.grads[name], numeric) < TOLERANCE


@pytest.mark.parametrize("shape", [(1, 1), (4, 6), (8, 3)])
@pytest.mark.parametrize("neg_slope", [0.0, 0.02, 0.5])
def test_leaky_relu_forward_and_backward(shape, neg_slope):
    rng = np.random.default_rng(shape[0])
    module = LeakyReLUModule(neg_slope)
    x, dout = away_from_zero(rng, shape), rng.standard_normal(shape)
    np.testing.assert_array_equal(module.forward(x), np.where(x > 0, x, neg_slope * x))
    dx = module.backward(dout)

    def loss() -> float:
        return float((module.forward(x) * dout).sum())

    assert rel_error(dx, numerical_grad(loss, x)) < TOLERANCE


@pytest.mark.parametrize("shape", [(1, 2), (5, 3), (4, 10)])
def test_softmax_forward_and_backward(shape):
    rng = np.random.default_rng(shape[1])
    module = SoftMaxModule()
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    s = module.forward(x)
    np.testing.assert_allclose(s, np.exp(x) / np.exp(x).sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    dx = module.backward(dout)

    def loss() -> float:
        return float((module.forward(x) * dout).sum())

    assert rel_error(dx, numerical_grad(loss, x)) < TOLERANCE


def test_softmax_is_stable_for_large_scores():
    s = SoftMaxModule().forward(np.array([[1000.0, 0.0, -1000.0], [5e4, 5e4, 0.0]]))
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s, [[1, 0, 0], [0.5, 0.5, 0]])


@pytest.mark.parametrize("batch, n_classes", [(1, 2), (6, 4), (5, 10)])
def test_cross_entropy_forward_and_backward(batch, n_classes):
    rng = np.random.default_rng(batch)
    labels = rng.integers(n_classes, size=batch)
    y = one_hot(labels, n_classes)
    x = SoftMaxModule().forward(rng.standard_normal((batch, n_classes)))  # probabilities
    module = CrossEntropyModule()
    loss = module.forward(x, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(-np.log(x[np.arange(batch), labels]).mean(), rel=1e-12)
    dx = module.backward(x, y)
    assert rel_error(dx, numerical_grad(lambda: module.forward(x, y), x)) < TOLERANCE


def test_cross_entropy_stays_finite_when_a_probability_underflows():
    module = CrossEntropyModule()
    x, y = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert np.isfinite(module.forward(x, y)) and np.all(np.isfinite(module.backward(x, y)))


@pytest.mark.parametrize("batch, n_classes", [(1, 3), (7, 10)])
def test_fused_softmax_cross_entropy_gradient_equals_the_chain(batch, n_classes):
    rng = np.random.default_rng(n_classes)
    y = one_hot(rng.integers(n_classes, size=batch), n_classes)
    softmax, ce = SoftMaxModule(), CrossEntropyModule()
    probs = softmax.forward(rng.standard_normal((batch, n_classes)))
    chained = softmax.backward(ce.backward(probs, y))
    fused = softmax_cross_entropy_backward(probs, y)
    np.testing.assert_allclose(fused, (probs - y) / batch, rtol=0, atol=0)
    np.testing.assert_allclose(fused, chained, rtol=1e-12, atol=1e-15)


def random_mlp(hidden_units, n_inputs=12, n_classes=4, seed=0, dtype="float64") -> NumpyMLP:
    """A small MLP with O(1) weights, so every layer matters to the gradient check."""
    net = NumpyMLP(n_inputs, hidden_units, n_classes, neg_slope=0.1, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in net.parameters():
        for value in layer.params.values():
            value[...] = 0.5 * rng.standard_normal(value.shape)
    return net


@pytest.mark.parametrize("hidden_units", [[], [7], [6, 5]])
@pytest.mark.parametrize("fused", [False, True])
def test_mlp_backward_matches_finite_differences(hidden_units, fused):
    rng = np.random.default_rng(len(hidden_units))
    net, ce = random_mlp(hidden_units), CrossEntropyModule()
    x = rng.standard_normal((5, 3, 2, 2))  # images are flattened: 12 inputs
    y = one_hot(rng.integers(4, size=5), 4)

    def loss() -> float:
        return ce.forward(net.forward(x), y)

    probs = net.forward(x)
    if fused:  # the training path: straight to dL/d(logits)
        dx = net.backward_from_logits(softmax_cross_entropy_backward(probs, y))
    else:
        dx = net.backward(ce.backward(probs, y))
    assert dx.shape == x.shape
    assert rel_error(dx, numerical_grad(loss, x)) < TOLERANCE
    for layer in net.parameters():
        for name, param in layer.params.items():
            assert rel_error(layer.grads[name], numerical_grad(loss, param)) < TOLERANCE


def test_skipping_the_input_gradient_leaves_the_parameter_gradients():
    net, rng = random_mlp([6, 5]), np.random.default_rng(0)
    x, y = rng.standard_normal((5, 12)), one_hot(rng.integers(4, size=5), 4)
    net.backward_from_logits(softmax_cross_entropy_backward(net.forward(x), y))
    full = {k: dict(m.grads) for k, m in enumerate(net.parameters())}
    dlogits = softmax_cross_entropy_backward(net.forward(x), y)
    assert net.backward_from_logits(dlogits, input_grad=False) is None
    for k, layer in enumerate(net.parameters()):
        for name, grad in layer.grads.items():
            np.testing.assert_array_equal(grad, full[k][name])


@pytest.mark.parametrize(
    "dtype, torch_dtype, tol", [("float64", torch.float64, 1e-10), ("float32", torch.float32, 2e-4)]
)
@pytest.mark.parametrize("hidden_units", [[], [20], [16, 8]])
def test_mlp_matches_pytorch(hidden_units, dtype, torch_dtype, tol):
    net = random_mlp(hidden_units, n_inputs=48, n_classes=5, dtype=dtype)
    reference = TorchMLP(48, hidden_units, 5, neg_slope=0.1).to(torch_dtype)
    linears = [m for m in reference.modules() if isinstance(m, nn.Linear)]
    for layer, linear in zip(net.parameters(), linears, strict=True):
        linear.weight.data.copy_(torch.from_numpy(layer.params["weight"]))
        linear.bias.data.copy_(torch.from_numpy(layer.params["bias"]))

    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 3, 4, 4)).astype(dtype)
    labels = rng.integers(5, size=8)
    probs = net.forward(x)
    loss = CrossEntropyModule().forward(probs, one_hot(labels, 5, dtype))
    dx = net.backward_from_logits(softmax_cross_entropy_backward(probs, one_hot(labels, 5, dtype)))

    x_t = torch.from_numpy(x).requires_grad_()
    logits = reference(x_t)
    loss_t = F.cross_entropy(logits, torch.from_numpy(labels))
    loss_t.backward()
    assert probs.dtype == np.dtype(dtype)
    np.testing.assert_allclose(probs, logits.softmax(dim=1).detach().numpy(), rtol=tol, atol=tol)
    assert loss == pytest.approx(loss_t.item(), rel=tol)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=tol, atol=tol)
    for layer, linear in zip(net.parameters(), linears, strict=True):
        assert layer.grads["weight"].dtype == np.dtype(dtype)
        np.testing.assert_allclose(layer.grads["weight"], linear.weight.grad, rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.grads["bias"], linear.bias.grad, rtol=tol, atol=tol)


def test_linear_initialisation_follows_the_assignment():
    layer = LinearModule(3072, 100, rng=np.random.default_rng(0))
    weight, bias = layer.params["weight"], layer.params["bias"]
    assert weight.shape == (100, 3072) and bias.shape == (100,)
    assert abs(weight.mean()) < 1e-6 and weight.std() == pytest.approx(1e-4, rel=0.02)
    assert not bias.any()
    assert set(layer.grads) == {"weight", "bias"}


@pytest.mark.parametrize("hidden_units", [[], [100], [512, 512, 256]])
def test_mlp_layers_shapes_and_seed(hidden_units):
    net = NumpyMLP(3072, hidden_units, 10, 0.02, dtype="float32", seed=7)
    widths = [3072, *hidden_units, 10]
    shapes = list(zip(widths[1:], widths[:-1], strict=True))  # (out_features, in_features)
    assert [m.params["weight"].shape for m in net.parameters()] == shapes
    kinds = [type(m) for m in net.layers]
    assert kinds == [LinearModule, LeakyReLUModule] * len(hidden_units) + [LinearModule]
    probs = net.forward(np.zeros((2, 3, 32, 32), dtype=np.float32))
    assert probs.shape == (2, 10) and probs.dtype == np.float32
    again = NumpyMLP(3072, hidden_units, 10, 0.02, dtype="float32", seed=7)
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_dict_round_trip():
    net, other = random_mlp([6], seed=0), random_mlp([6], seed=5)
    state = net.state_dict()
    x = np.random.default_rng(0).standard_normal((3, 12))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.forward(x), net.forward(x))
    state["layers.0.weight"][...] = 0  # a copy: the network is not touched
    assert net.named_parameters()["layers.0.weight"].any()
    with pytest.raises(ValueError, match="names"):
        other.load_state_dict({"layers.0.weight": state["layers.0.weight"]})
    with pytest.raises(ValueError, match="shape"):
        random_mlp([7]).load_state_dict(net.state_dict())


def test_sgd_step_updates_every_parameter_in_place():
    net = random_mlp([6])
    rng = np.random.default_rng(0)
    before = net.state_dict()
    for layer in net.parameters():
        layer.grads = {k: rng.standard_normal(v.shape) for k, v in layer.params.items()}
    SGD(net.parameters(), lr=0.1).step()
    for i, layer in zip((0, 2), net.parameters(), strict=True):
        for name in ("weight", "bias"):
            expected = before[f"layers.{i}.{name}"] - 0.1 * layer.grads[name]
            np.testing.assert_allclose(layer.params[name], expected, rtol=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LinearModule(0, 3),
        lambda: LinearModule(2.5, 3),
        lambda: LeakyReLUModule(-0.1),
        lambda: NumpyMLP(hidden_units="abc"),
        lambda: NumpyMLP(hidden_units=[0]),
        lambda: NumpyMLP(n_inputs=0),
        lambda: NumpyMLP(n_classes=True),
        lambda: NumpyMLP(neg_slope=-1),
        lambda: NumpyMLP(dtype="int32"),
        lambda: NumpyMLP(dtype="nonsense"),
        lambda: SGD([], lr=0),
        lambda: SGD([], lr=-1e-3),
        lambda: SGD([], lr="fast"),
        lambda: SGD([], lr=True),
        lambda: LinearModule(True, 3),
        lambda: LeakyReLUModule(False),
        lambda: LeakyReLUModule(np.float64("nan")),
        lambda: NumpyMLP(hidden_units=[np.bool_(True)]),
        lambda: NumpyMLP(hidden_units={5, 3}),
        lambda: NumpyMLP(hidden_units=np.array([[5, 3]])),
        lambda: NumpyMLP(n_inputs=12).forward(np.zeros((2, 13))),
    ],
)
def test_bad_arguments_raise_value_errors(make):
    with pytest.raises(ValueError):
        make()


def test_numpy_nn_imports_without_torch():
    # A fresh interpreter: this test process has torch loaded already.
    code = "import sys, src.numpy_nn; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_numpy_scalars_are_accepted_as_sizes_and_rates():
    # Callers write np.prod(x.shape[1:]): NumPy integers are integers, NumPy floats are numbers.
    layer = LinearModule(np.prod((2, 26)), np.int64(10))
    assert layer.params["weight"].shape == (10, 52)
    assert LeakyReLUModule(np.float32(0.5)).forward(np.array([-2.0]))[0] == -1.0
    net = NumpyMLP(np.int64(12), [np.int32(5), np.uint8(3)], np.int64(4), np.float32(0.1), seed=0)
    assert net.hidden_units == [5, 3] and all(type(h) is int for h in net.hidden_units)
    assert NumpyMLP(12, np.array([5, 3]), 4).hidden_units == [5, 3]
    assert net.forward(np.zeros((2, 12))).shape == (2, 4)
    assert SGD(net.parameters(), lr=np.float32(0.5)).lr == 0.5


def test_leaky_relu_takes_the_slope_at_exactly_zero():
    # docs/derivations.md, eq. 1.3: f'(v) = 1 for v > 0 and a for v <= 0, PyTorch's convention.
    module = LeakyReLUModule(0.25)
    x = np.array([[-1.0, 0.0, -0.0, 2.0]])
    np.testing.assert_array_equal(module.forward(x), [[-0.25, 0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(module.backward(np.ones_like(x)), [[0.25, 0.25, 0.25, 1.0]])
    reference = torch.tensor(x, requires_grad=True)
    nn.LeakyReLU(0.25)(reference).sum().backward()
    np.testing.assert_array_equal(module.backward(np.ones_like(x)), reference.grad.numpy())


def test_train_step_is_forward_cross_entropy_backward_and_sgd():
    net, rng = random_mlp([6], seed=1), np.random.default_rng(1)
    initial = net.state_dict()
    x, y = rng.standard_normal((5, 12)), rng.integers(4, size=5)
    reference = random_mlp([6], seed=1)
    expected_probs = reference.forward(x)
    targets = one_hot(y, 4)
    expected_loss = CrossEntropyModule().forward(expected_probs, targets)
    reference.backward(CrossEntropyModule().backward(expected_probs, targets))  # the unfused chain
    SGD(reference.parameters(), lr=0.1).step()

    loss, probs = train_step(net, SGD(net.parameters(), lr=0.1), x, y)
    assert isinstance(loss, float) and loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-12)  # from before the update
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[name], value, rtol=1e-10, atol=1e-14)
    assert not np.allclose(net.state_dict()["layers.0.weight"], initial["layers.0.weight"])
