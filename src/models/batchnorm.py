"""Batch normalization written by hand (assignment part 3), for vectors and for images.

Three ways to the same layer, as the assignment asks:

- ``CustomBatchNormAutograd``: the forward pass in tensor operations; autograd derives the backward.
- ``CustomBatchNormManualFunction``: a ``torch.autograd.Function`` whose backward is the closed form
  of ``docs/derivations.md`` (part 3).
- ``CustomBatchNormManualModule``: the ``nn.Module`` around that function.

Beyond the assignment, the modules keep running averages of the batch statistics (like
``torch.nn.BatchNorm1d``), so a trained model evaluates any batch size, one sample included; and
``CustomBatchNorm2dAutograd`` / ``CustomBatchNorm2dManualModule`` normalise images per channel.
``make_norm`` maps a config name (``none|torch|autograd|manual``) to a layer.

Statistics are taken over every dimension except dimension 1 (the features, or channels): over the
batch for ``(batch, features)``, over the batch and the pixels for ``(batch, channels, h, w)``.
The equations are the same in both cases, with the number of rows ``m = batch * h * w``.
"""

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from src.arguments import check_positive, check_positive_int, is_real

NORMS = ("none", "torch", "autograd", "manual")


def _reduce_dims(input: Tensor) -> list[int]:
    """Every dimension but the features' (dimension 1): the ones the statistics are taken over."""
    return [0, *range(2, input.dim())]


def _feature_shape(input: Tensor) -> tuple[int, ...]:
    """``(1, C, 1, ...)``: the shape that broadcasts a per-feature vector against ``input``."""
    return (1, input.shape[1]) + (1,) * (input.dim() - 2)


def _batch_mean_var(input: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature batch mean and biased variance, shaped to broadcast against ``input``.

    Two passes, the mean and then the squared deviations from it: as accurate as
    ``torch.var_mean`` and, over several dimensions, several times faster on CPU.
    """
    dims = _reduce_dims(input)
    mean = input.mean(dims, keepdim=True)
    centred = input - mean
    return mean, (centred * centred).mean(dims, keepdim=True)


class CustomBatchNormManualFunction(torch.autograd.Function):
    """Batch normalization in training mode, with the closed-form backward of 3.2 a.

    ``CustomBatchNormManualFunction.apply(input, gamma, beta[, eps])`` normalises ``input`` of shape
    ``(batch, C)`` or ``(batch, C, *)`` per feature with the batch mean and the biased batch
    variance, then scales by ``gamma`` and shifts by ``beta`` (both of shape ``(C,)``).
    """

    @staticmethod
    def forward(ctx, input: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
        if input.dim() < 2 or gamma.shape != (input.shape[1],) or beta.shape != gamma.shape:
            raise ValueError(
                f"expected input (batch, C, ...) with gamma and beta of shape (C,), got input "
                f"{tuple(input.shape)}, gamma {tuple(gamma.shape)}, beta {tuple(beta.shape)}"
            )
        shape, dims = _feature_shape(input), _reduce_dims(input)
        # _batch_mean_var inline, to normalise the centred input in place: no more batch-sized
        # tensors than torch's own batch norm.
        x_hat = input - input.mean(dims, keepdim=True)
        inv_std = torch.rsqrt((x_hat * x_hat).mean(dims, keepdim=True) + eps)
        x_hat *= inv_std
        # x_hat and 1/sqrt(var + eps) are all that backward needs besides gamma: no copy of input.
        ctx.save_for_backward(x_hat, gamma, inv_std)
        return torch.addcmul(beta.view(shape), x_hat, gamma.view(shape))

    @staticmethod
    @once_differentiable  # backward uses saved values, not a graph: no second derivatives
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x_hat, gamma, inv_std = ctx.saved_tensors
        need_input, need_gamma, need_beta = ctx.needs_input_grad[:3]
        dims, shape = _reduce_dims(x_hat), _feature_shape(x_hat)
        m = x_hat.numel() // x_hat.shape[1]  # rows per feature: batch (* height * width)

        # dL/dinput uses both parameter gradients: each is computed if it or dL/dinput is needed.
        grad_input = grad_gamma = grad_beta = None
        if need_input or need_gamma:
            grad_gamma = (grad_output * x_hat).sum(dims)
        if need_input or need_beta:
            grad_beta = grad_output.sum(dims)
        if need_input:
            # gamma / (m sqrt(var + eps)) * (m dL/dy - dL/dbeta - x_hat dL/dgamma), built in place
            # in one batch-sized tensor instead of one per operation.
            grad_input = grad_output * m
            grad_input -= grad_beta.view(shape)
            grad_input.addcmul_(x_hat, grad_gamma.view(shape), value=-1)
            grad_input *= gamma.view(shape) * inv_std / m
        return (
            grad_input,
            grad_gamma if need_gamma else None,
            grad_beta if need_beta else None,
            None,  # eps is a constant
        )


class _CustomBatchNorm(nn.Module):
    """What the custom modules share: parameters, running statistics, shape checks, eval mode.

    In training mode the output uses the batch statistics (``_batch_norm``, by subclass) and the
    running averages move towards them: ``running = (1 - momentum) * running + momentum * batch``,
    the variance unbiased, as in ``torch.nn.BatchNorm1d``. In eval mode the running averages
    normalise instead, so the output of a sample does not depend on the rest of its batch.
    """

    input_dims = 2  # (batch, n_neurons)
    input_layout = "(batch, {n})"

    def __init__(self, n_neurons: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        n_neurons = check_positive_int("n_neurons", n_neurons)
        eps = check_positive("eps", eps)
        if not is_real(momentum) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        momentum = float(momentum)
        self.n_neurons, self.eps, self.momentum = n_neurons, eps, momentum
        self.gamma = nn.Parameter(torch.ones(n_neurons))
        self.beta = nn.Parameter(torch.zeros(n_neurons))
        self.register_buffer("running_mean", torch.zeros(n_neurons))
        self.register_buffer("running_var", torch.ones(n_neurons))

    def extra_repr(self) -> str:
        return f"{self.n_neurons}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != self.input_dims or input.shape[1] != self.n_neurons:
            expected = self.input_layout.format(n=self.n_neurons)
            raise ValueError(
                f"{type(self).__name__} expects input of shape {expected}, got {tuple(input.shape)}"
            )
        if input.dtype in (torch.float16, torch.bfloat16):
            # Half-precision statistics lose precision, and squares overflow float16: compute in
            # float32 and give back the input's dtype, as torch's batch norm does.
            return self.forward(input.float()).to(input.dtype)
        if not self.training:
            return self._normalize(input, self.running_mean, self.running_var)
        m = input.numel() // self.n_neurons
        if m < 2:  # one value per feature has no variance (and no unbiased estimate of it)
            raise ValueError(
                f"{type(self).__name__} needs more than one value per feature in training mode, "
                f"got input of shape {tuple(input.shape)}"
            )
        output, mean, var = self._batch_norm(input)
        with torch.no_grad():
            unbiased_var = var.flatten() * (m / (m - 1))
            self.running_mean.lerp_(mean.flatten().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), self.momentum)
        return output

    def _normalize(self, input: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """``gamma * (input - mean) / sqrt(var + eps) + beta``, per feature, in autograd ops."""
        shape = _feature_shape(input)
        x_hat = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return x_hat * self.gamma.view(shape) + self.beta.view(shape)

    def _batch_norm(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The training-mode output, and the batch mean and biased variance it used."""
        raise NotImplementedError


class CustomBatchNormAutograd(_CustomBatchNorm):
    """Batch normalization of ``(batch, n_neurons)`` inputs; autograd computes the backward.

    ``gamma`` (ones) and ``beta`` (zeros) are learned per neuron; ``running_mean`` and
    ``running_var`` are buffers used in eval mode.
    """

    def _batch_norm(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, var = _batch_mean_var(input)
        return self._normalize(input, mean, var), mean.detach(), var.detach()


class CustomBatchNormManualModule(_CustomBatchNorm):
    """Batch normalization of ``(batch, n_neurons)`` inputs with the hand-written backward.

    Training mode goes through ``CustomBatchNormManualFunction``; the parameters and buffers are
    those of ``CustomBatchNormAutograd``.
    """

    def _batch_norm(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # The function keeps the assignment's interface (it returns only the output), so the
        # running averages take one more pass over the batch, outside the graph; first, so that
        # its temporaries are freed before the function's output exists (a lower peak).
        with torch.no_grad():
            mean, var = _batch_mean_var(input)
        output = CustomBatchNormManualFunction.apply(input, self.gamma, self.beta, self.eps)
        return output, mean, var


class CustomBatchNorm2dAutograd(CustomBatchNormAutograd):
    """``CustomBatchNormAutograd`` per channel for images ``(batch, n_neurons, height, width)``:
    statistics over the batch and the pixels, like ``torch.nn.BatchNorm2d``."""

    input_dims = 4
    input_layout = "(batch, {n}, height, width)"


class CustomBatchNorm2dManualModule(CustomBatchNormManualModule):
    """``CustomBatchNormManualModule`` per channel for images ``(batch, n_neurons, height, width)``:
    statistics over the batch and the pixels, like ``torch.nn.BatchNorm2d``."""

    input_dims = 4
    input_layout = "(batch, {n}, height, width)"


def check_norm(kind: object) -> str:
    """Return ``kind`` if it names a normalization of ``NORMS``, or raise a ValueError."""
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {kind!r}")
    return kind


_LAYERS: dict[tuple[str, bool], type[nn.Module]] = {
    ("torch", False): nn.BatchNorm1d,
    ("torch", True): nn.BatchNorm2d,
    ("autograd", False): CustomBatchNormAutograd,
    ("autograd", True): CustomBatchNorm2dAutograd,
    ("manual", False): CustomBatchNormManualModule,
    ("manual", True): CustomBatchNorm2dManualModule,
}


def make_norm(kind: str, n_features: int, spatial: bool = False) -> nn.Module | None:
    """The batch-norm layer that ``kind`` names, for ``n_features`` features (channels when
    ``spatial``, for ``(batch, C, h, w)`` inputs); ``None`` for ``"none"``: no layer at all.

    ``torch`` is ``nn.BatchNorm1d``/``nn.BatchNorm2d``; ``autograd`` and ``manual`` the custom ones.
    """
    if check_norm(kind) == "none":
        return None
    return _LAYERS[kind, spatial](n_features)
