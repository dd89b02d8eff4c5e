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


def test_convnet_follows_the_assignment_table():
    net = ConvNet()
    names = list(net.features._modules)
    assert names == [
        "conv1", "maxpool1", "conv2", "maxpool2", "conv3_a", "conv3_b", "maxpool3",
        "conv4_a", "conv4_b", "maxpool4", "conv5_a", "conv5_b", "maxpool5",
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
    assert (net.classifier.in_features, net.classifier.out_features) == (512, 10)
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
