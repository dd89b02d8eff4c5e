import numpy as np
import pytest
import torch
from torch import nn

from src.models import MLP, ConvNet
from src.models.batchnorm import (
    CustomBatchNorm2dAutograd,
    CustomBatchNorm2dManualModule,
    CustomBatchNormAutograd,
    CustomBatchNormManualModule,
)


@pytest.mark.parametrize("hidden", [[], [100], [512, 512, 256]])
def test_mlp_layers_and_output_shape(hidden):
    net = MLP(hidden_units=hidden)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    widths = [3072, *hidden, 10]
    assert [(m.in_features, m.out_features) for m in linears] == list(
        zip(widths, widths[1:], strict=False)
    )
    assert net(torch.randn(4, 3, 32, 32)).shape == (4, 10)


def test_mlp_uses_leaky_relu_slope_and_dropout():
    net = MLP(hidden_units=[8, 8], neg_slope=0.3, dropout=0.5)
    slopes = [m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.3, 0.3]
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2


@pytest.mark.parametrize(
    "kwargs", [{"hidden_units": "abc"}, {"hidden_units": [0]}, {"neg_slope": -1}, {"dropout": 1.0}]
)
def test_mlp_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MLP(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLP(n_inputs=True),
        lambda: MLP(hidden_units=[True]),
        lambda: MLP(n_classes=True),
        lambda: MLP(neg_slope=True),
        lambda: MLP(dropout=False),
        lambda: MLP(neg_slope=float("nan")),
        lambda: ConvNet(n_channels=True),
        lambda: ConvNet(n_classes=2.0),
        lambda: ConvNet(norm="batch"),
    ],
)
def test_models_refuse_bools_and_non_integer_sizes(make):
    with pytest.raises(ValueError):
        make()


def test_models_accept_numpy_scalars():
    # Callers write np.prod(x.shape[1:]) and read sizes from arrays: NumPy numbers are numbers.
    mlp = MLP(
        n_inputs=np.prod((3, 32, 32)),
        hidden_units=[np.int64(20), np.int32(10)],
        n_classes=np.int64(10),
        neg_slope=np.float32(0.1),
        dropout=np.float64(0.2),
    )
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3072, 20), (20, 10), (10, 10)]
    assert all(type(m.in_features) is int for m in linears)
    slopes = [m.negative_slope for m in mlp.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [pytest.approx(0.1)] * 2
    assert mlp(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    net = ConvNet(n_channels=np.int64(3), n_classes=np.int16(7), norm="none")
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_torch_leaky_relu_takes_the_slope_at_exactly_zero():
    # docs/derivations.md, eq. 1.3: f'(0) = a. The PyTorch MLP must agree with the NumPy one here.
    net = MLP(n_inputs=3, hidden_units=[3], n_classes=3, neg_slope=0.25)
    activation = next(m for m in net.modules() if isinstance(m, nn.LeakyReLU))
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    out = activation(x)
    out.sum().backward()
    assert out.tolist() == [-0.25, 0.0, 2.0]
    assert x.grad.tolist() == [0.25, 0.25, 1.0]


def test_convnet_follows_the_assignment_table():
    # The names of the assignment's Table 1, so a reader can hold the two side by side.
    net = ConvNet()
    names = list(net.features._modules)
    assert names == [
        "conv0", "maxpool1", "conv1", "maxpool2", "conv2_a", "conv2_b", "maxpool3",
        "conv3_a", "conv3_b", "maxpool4", "conv4_a", "conv4_b", "maxpool5",
    ]  # fmt: skip
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512),
    ]  # fmt: skip
    assert all(
        c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs
    )
    for name in names:  # every conv is followed by batch norm and ReLU
        if name.startswith("conv"):
            block = net.features._modules[name]
            assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5
    assert all((p.kernel_size, p.stride, p.padding) == (3, 2, 1) for p in pools)
    assert (net.linear.in_features, net.linear.out_features) == (512, 10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("norm", "layer"),
    [
        ("none", None),
        ("torch", nn.BatchNorm1d),
        ("autograd", CustomBatchNormAutograd),
        ("manual", CustomBatchNormManualModule),
    ],
)
def test_mlp_norm_sits_between_each_hidden_linear_and_its_activation(norm, layer):
    torch.manual_seed(0)
    net = MLP(hidden_units=[8, 6], norm=norm)
    between = [nn.Linear, nn.LeakyReLU] if layer is None else [nn.Linear, layer, nn.LeakyReLU]
    assert [type(m) for m in net.layers] == [nn.Flatten, *between, *between, nn.Linear]
    norms = [m for m in net.layers if layer is not None and type(m) is layer]
    assert [sum(p.numel() for p in m.parameters()) for m in norms] == ([16, 12] if layer else [])
    torch.manual_seed(0)  # the norm layers take nothing from the generator: the same linears
    plain = MLP(hidden_units=[8, 6])
    linears = [(m.weight, m.bias) for m in net.modules() if isinstance(m, nn.Linear)]
    plain_linears = [(m.weight, m.bias) for m in plain.modules() if isinstance(m, nn.Linear)]
    for (w, b), (w0, b0) in zip(linears, plain_linears, strict=True):
        assert torch.equal(w, w0) and torch.equal(b, b0)
    assert net(torch.randn(4, 3, 32, 32)).shape == (4, 10)


@pytest.mark.parametrize(
    ("norm", "layer"),
    [
        ("none", None),
        ("torch", nn.BatchNorm2d),
        ("autograd", CustomBatchNorm2dAutograd),
        ("manual", CustomBatchNorm2dManualModule),
    ],
)
def test_convnet_norm_replaces_the_batchnorm_of_every_block(norm, layer):
    net = ConvNet(norm=norm)
    blocks = [m for name, m in net.features.named_children() if name.startswith("conv")]
    expected = [nn.Conv2d, nn.ReLU] if layer is None else [nn.Conv2d, layer, nn.ReLU]
    assert len(blocks) == 8
    assert all([type(m) for m in block] == expected for block in blocks)
