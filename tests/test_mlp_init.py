"""model.init: the PyTorch MLP starts like the NumPy MLP (assignment) or as PyTorch does (torch)."""

import pytest
import torch
from torch import nn

from src.models import MLP
from src.models.mlp import ASSIGNMENT_WEIGHT_STD
from src.numpy_nn.modules import WEIGHT_INIT_STD
from tests.conftest import compose_cfg


def linears(mlp: MLP) -> list[nn.Linear]:
    return [m for m in mlp.modules() if isinstance(m, nn.Linear)]


def test_assignment_init_matches_the_numpy_mlp():
    assert ASSIGNMENT_WEIGHT_STD == WEIGHT_INIT_STD  # one standard deviation for both MLPs
    torch.manual_seed(0)
    mlp = MLP(hidden_units=[300, 200], init="assignment", norm="torch")
    for layer in linears(mlp):
        assert torch.all(layer.bias == 0)
        assert layer.weight.mean().abs() < 1e-5
        assert layer.weight.std().item() == pytest.approx(1e-4, rel=0.05)
    norm = next(m for m in mlp.modules() if isinstance(m, nn.BatchNorm1d))
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_torch_init_is_pytorchs_default():
    torch.manual_seed(0)
    ours = MLP(hidden_units=[50], init="torch")
    torch.manual_seed(0)
    theirs = [nn.Linear(3072, 50), nn.Linear(50, 10)]  # created in the same order
    for got, want in zip(linears(ours), theirs, strict=True):
        assert torch.equal(got.weight, want.weight) and torch.equal(got.bias, want.bias)


def test_the_default_is_the_assignments():
    assert compose_cfg("data=fake").model.init == "assignment"


def test_an_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of"):
        MLP(init="xavier")
