"""Check a model's backward pass on real data: ``python -m src.gradcheck [model=...] [key=value]``.

Takes one batch of the configured data (``conf/gradcheck.yaml`` composes ``conf/train.yaml``, so
``model=``, ``data=``, ``experiment=`` and every model option work as for ``src.train``) and the
model at its seeded initialisation, or at a checkpoint (``ckpt_path=...``). In float64 it compares,
for a sample of ``n_coords`` coordinates of every parameter, the gradient of the model's backward
pass with central finite differences, and prints the relative error per parameter:

    error = ||g_backward - g_fd|| / max(||g_backward|| + ||g_fd||, floor)

over the sampled coordinates: 1 for a sign-flipped gradient, however small, above rounding. The
differences are taken of the logits and weighted by the exact dL/dlogits, so their rounding scales
with the logits rather than with the loss. ``floor`` is that rounding (estimated per check, see
``rounding_noise``) divided by ``threshold``: a gradient that is zero up to rounding (a convolution
bias before batch norm, a dead unit) passes instead of dividing noise by noise. The NumPy MLP's
hand-written gradients are also compared, on every coordinate, with autograd on a PyTorch MLP
holding the same weights. Dropout is switched off; batch norm stays in training mode (batch
statistics), the mode whose backward training uses.

``run=DIR`` checks a trained run instead: its model and data from its saved config (whose
``_target_``s must be on the allow-list, ``src.targets``), at the checkpoint its final test used.

Exits with status 1 and one sentence when an error exceeds ``threshold``; with status 2 and one
sentence on bad input (settings, data, model options, run folder, checkpoint), before any check
runs.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from src import build
from src.checks import CheckpointError, check_values, load_checkpoint
from src.config import CONFIG_DIR, ConfigError
from src.data import DataError
from src.numpy_nn import CrossEntropyModule, one_hot, softmax_cross_entropy_backward
from src.run_folder import RunFolder, RunFolderError
from src.targets import UntrustedTargetError

#: The check's own settings (conf/gradcheck.yaml), kept when a run's saved config is checked.
SETTINGS = ("n_coords", "n_samples", "eps", "threshold")
#: float64's relative rounding of one operation.
MACHINE_EPSILON = float(np.finfo(np.float64).eps)
#: Safety factor of ``rounding_noise``. The errors measured on gradients that are zero up to
#: rounding were a tenth of the plain estimate in the MLPs, but up to ~600 times it for the
#: ConvNet's convolution biases before batch norm (large pre-norm activations, 2 samples): their
#: shift by eps is rounded before batch norm removes it. A sign flip is caught for gradients above
#: the estimate with this margin (on fake data at the seeded init: 4e-16 for a [100,100,100] MLP,
#: 3e-6 for the ConvNet on 2 samples).
NOISE_MARGIN = 1e4


class GradcheckError(ValueError):
    """Bad input to the gradient check; its message is one sentence for the user."""


@dataclass
class ParameterError:
    """The relative errors of one parameter's gradient (``autograd`` only for the NumPy MLP)."""

    name: str
    shape: tuple[int, ...]
    finite_differences: float
    autograd: float | None = None

    def worst(self) -> float:
        return max(self.finite_differences, self.autograd or 0.0)


def relative_error(a: np.ndarray, b: np.ndarray, floor: float) -> float:
    """``||a - b|| / max(||a|| + ||b||, floor)``: 0 when equal, 1 when unrelated or of opposite
    sign, however small the gradients; ``floor`` only stops a gradient that is zero up to rounding
    from dividing noise by noise."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.linalg.norm(a) + np.linalg.norm(b)), floor)
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0


def rounding_noise(dloss_dlogits: np.ndarray, logits: np.ndarray, eps: float) -> float:
    """An upper estimate of the rounding error of one central difference (``finite_differences``),
    in gradient units: each float64 logit is off by about machine epsilon times its size, and the
    difference of two of them is weighted by dL/dlogits and divided by 2 eps; times
    ``NOISE_MARGIN``, as cancellations upstream (batch norm removing a bias's shift) make more."""
    return NOISE_MARGIN * MACHINE_EPSILON * float(np.abs(dloss_dlogits * logits).sum()) / eps


def noise_floor(noise: float, n: int, threshold: float) -> float:
    """``relative_error``'s floor for ``n`` coordinates: a gradient that is zero up to the
    finite differences' rounding scores at most ``threshold`` (rounding adds up as sqrt(n))."""
    return np.sqrt(n) * noise / threshold


def sample_coordinates(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> list[tuple]:
    """``n`` distinct multi-indices of an array of ``shape`` (all of them if it has fewer)."""
    size = int(np.prod(shape))
    flat = rng.choice(size, size=min(n, size), replace=False)
    return [np.unravel_index(i, shape) for i in np.sort(flat)]


def finite_differences(
    values: Any,
    coords: list[tuple],
    logits: Callable[[], np.ndarray],
    dloss_dlogits: np.ndarray,
    eps: float,
) -> np.ndarray:
    """dL/d``values[c]`` for each coordinate ``c``: central differences of the logits, weighted by
    the exact dL/dlogits (the chain rule's last link).

    Differencing the logits, not the loss, keeps the rounding relative to the logits: at the
    assignment's N(0, 1e-4^2) initialisation they are ~1e-10 while the loss is ~2.3, whose own
    rounding (~1e-10 per coordinate at eps 1e-6) would bury a deep layer's gradient of ~1e-9.
    ``values`` is a float64 array or tensor, changed in place and restored.
    """
    derivatives = []
    for c in coords:
        original = float(values[c])
        values[c] = original + eps
        up, above = logits(), float(values[c])
        values[c] = original - eps
        down, below = logits(), float(values[c])
        values[c] = original
        # The step actually taken (original +- eps rounds): divide by it, not by 2 eps.
        derivatives.append(float((dloss_dlogits * (up - down)).sum()) / (above - below))
    return np.array(derivatives)


def check_parameters(
    parameters: dict[str, Any],
    backward: dict[str, np.ndarray],
    logits: Callable[[], np.ndarray],
    dloss_dlogits: np.ndarray,
    n_coords: int,
    eps: float,
    threshold: float,
    seed: int = 0,
    autograd: dict[str, np.ndarray] | None = None,
) -> list[ParameterError]:
    """Compare each parameter's ``backward`` gradient with finite differences on ``n_coords``
    sampled coordinates, and with ``autograd``'s on every coordinate if given."""
    noise = rounding_noise(dloss_dlogits, logits(), eps)
    rng = np.random.default_rng(seed)
    results = []
    for name, values in parameters.items():
        shape = tuple(values.shape)
        coords = sample_coordinates(shape, n_coords, rng)
        numeric = finite_differences(values, coords, logits, dloss_dlogits, eps)
        sampled = np.array([backward[name][c] for c in coords])
        error = relative_error(sampled, numeric, noise_floor(noise, len(coords), threshold))
        reference = None
        if autograd is not None:
            floor = noise_floor(noise, backward[name].size, threshold)
            reference = relative_error(backward[name], autograd[name], floor)
        results.append(ParameterError(name, shape, error, reference))
    return results


# ------------------------------------------------------------------------------------------------
# Torch models
# ------------------------------------------------------------------------------------------------


def check_torch(
    net: nn.Module, x: Tensor, y: Tensor, n_coords: int, eps: float, threshold: float,
    seed: int = 0,
) -> list[ParameterError]:  # fmt: skip
    """Backward vs central differences for every parameter of ``net``, in float64.

    ``net`` and ``x`` are cast to float64 in place; dropout is switched off.
    """
    net.double().train()
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    x = x.double()

    net.zero_grad(set_to_none=True)
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    (dloss_dlogits,) = torch.autograd.grad(loss, logits, retain_graph=True)
    loss.backward()
    parameters = dict(net.named_parameters())
    backward = {
        name: np.zeros(p.shape) if p.grad is None else p.grad.numpy().copy()
        for name, p in parameters.items()
    }

    @torch.no_grad()
    def logits_now() -> np.ndarray:
        return net(x).numpy()

    return check_parameters(
        {name: p.detach() for name, p in parameters.items()},  # same storage, writable
        backward, logits_now, dloss_dlogits.numpy(), n_coords, eps, threshold, seed,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# The NumPy MLP (duck-typed: a ``layers`` list whose parameter modules have ``params``/``grads``)
# ------------------------------------------------------------------------------------------------


def _numpy_parameters(net: Any) -> list[tuple[str, Any, str]]:
    """(name, module, key) of every parameter, named like the MLP's ``named_parameters``."""
    return [
        (f"layers.{i}.{key}", module, key)
        for i, module in enumerate(net.layers)
        for key in getattr(module, "params", {})
    ]


def numpy_loss_and_backward(net: Any, x: np.ndarray, targets: np.ndarray) -> float:
    """The mean cross-entropy of a batch; fills every module's ``grads`` (the training path:
    the fused softmax + cross-entropy gradient, then the modules' backward)."""
    probs = net.forward(x)
    loss = CrossEntropyModule().forward(probs, targets)
    net.backward_from_logits(softmax_cross_entropy_backward(probs, targets))
    return loss


def torch_twin(net: Any) -> nn.Sequential:
    """A float64 PyTorch MLP with the NumPy MLP's weights and slopes (for autograd)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for module in net.layers:
        if "weight" in getattr(module, "params", {}):
            weight, bias = module.params["weight"], module.params["bias"]
            linear = nn.Linear(weight.shape[1], weight.shape[0]).double()
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight))
                linear.bias.copy_(torch.from_numpy(bias))
            layers.append(linear)
        else:
            layers.append(nn.LeakyReLU(module.neg_slope))
    return nn.Sequential(*layers)


def check_numpy(
    net: Any, x: np.ndarray, y: np.ndarray, n_coords: int, eps: float, threshold: float,
    seed: int = 0,
) -> list[ParameterError]:  # fmt: skip
    """The NumPy MLP's hand-written gradients vs central differences and vs autograd (float64).

    ``net`` must compute in float64 (its parameters float64 arrays). dL/dlogits comes from
    autograd, not from the MLP's own fused softmax + cross-entropy gradient, so that is checked too.
    """
    x = np.asarray(x, dtype=np.float64)
    n_classes = net.layers[-1].params["weight"].shape[0]
    numpy_loss_and_backward(net, x, one_hot(y, n_classes, np.float64))
    params = _numpy_parameters(net)
    grads = {name: module.grads[key].copy() for name, module, key in params}

    twin = torch_twin(net)
    logits = twin(torch.from_numpy(x))
    loss = F.cross_entropy(logits, torch.from_numpy(y).long())
    (dloss_dlogits,) = torch.autograd.grad(loss, logits, retain_graph=True)
    loss.backward()
    # Same order as params: weight, bias per layer.
    twin_grads = [p.grad.numpy() for p in twin.parameters()]
    autograd = {name: g for (name, _, _), g in zip(params, twin_grads, strict=True)}

    return check_parameters(
        {name: module.params[key] for name, module, key in params},
        grads, lambda: net.logits(x), dloss_dlogits.numpy(), n_coords, eps, threshold, seed,
        autograd,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# From config to a report
# ------------------------------------------------------------------------------------------------


def check_settings(cfg: DictConfig) -> None:
    """Refuse bad settings in one sentence, before any work."""
    try:
        check_values(cfg)
    except ConfigError as e:
        raise GradcheckError(str(e)) from None
    for key in ("n_coords", "n_samples"):
        value = cfg[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise GradcheckError(f"{key} must be a positive integer, got {value!r}")
        if value is not None and value < 1:
            raise GradcheckError(f"{key} must be a positive integer, got {value!r}")
    for key in ("eps", "threshold"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise GradcheckError(f"{key} must be a positive number, got {value!r}")


def one_batch(cfg: DictConfig) -> tuple[Tensor, Tensor]:
    """The first training batch of the configured data (at most ``n_samples`` of it), on the CPU."""
    datamodule = build.build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    if cfg.n_samples is not None:
        x, y = x[: cfg.n_samples], y[: cfg.n_samples]
    return x.cpu(), y.cpu()


def load_model(cfg: DictConfig) -> Any:
    """The configured network, float64, seeded; with a checkpoint's weights if ``ckpt_path``."""
    pl.seed_everything(cfg.seed, verbose=False)
    extra = {"dtype": "float64"} if "dtype" in cfg.model else {}  # the NumPy MLP's own dtype
    if cfg.ckpt_path is None:
        return build.build_net(cfg, **extra)
    try:  # read without running its code, as src.train reads checkpoints
        checkpoint = load_checkpoint(cfg.ckpt_path)
    except (CheckpointError, OSError) as e:
        raise GradcheckError(f"ckpt_path={e}") from None
    classifier = build.build_classifier(cfg, **extra)
    try:
        classifier.load_weights(checkpoint)  # as src.evaluate loads them, for every model
    except (KeyError, RuntimeError, ValueError) as e:
        raise GradcheckError(f"ckpt_path={cfg.ckpt_path} does not fit this model ({e})") from None
    return classifier.net


def run_config(cfg: DictConfig) -> DictConfig:
    """With ``run=DIR``: the run's saved config with this check's settings, at the run's tested
    checkpoint (unless ``ckpt_path`` names another). Without: ``cfg`` itself."""
    if cfg.get("run") is None:
        return cfg
    try:
        folder = RunFolder.open(cfg.run)
        saved = folder.config(trusted=cfg.trusted_targets)
    except (RunFolderError, UntrustedTargetError) as e:
        raise GradcheckError(str(e)) from None
    checkpoint = cfg.ckpt_path or str(folder.tested_checkpoint())
    mine = {key: cfg[key] for key in SETTINGS}
    return OmegaConf.merge(saved, mine, {"ckpt_path": checkpoint})


def gradcheck(cfg: DictConfig, net: Any = None) -> list[ParameterError]:
    """Run the check the config describes (on ``net`` if given, else the configured model)."""
    cfg = run_config(cfg)
    check_settings(cfg)
    x, y = one_batch(cfg)
    net = load_model(cfg) if net is None else net
    settings = dict(n_coords=cfg.n_coords, eps=cfg.eps, threshold=cfg.threshold, seed=cfg.seed)
    if isinstance(net, nn.Module):
        return check_torch(net, x, y, **settings)
    return check_numpy(net, x.numpy(), y.numpy(), **settings)


def report(results: list[ParameterError], threshold: float) -> str | None:
    """Print the table; return the failure sentence, or None if every error is within threshold."""
    has_autograd = any(r.autograd is not None for r in results)
    head = f"{'parameter':<28} {'shape':<18} {'vs finite diff.':>15}"
    print(head + (f" {'vs autograd':>12}" if has_autograd else ""))
    for r in results:
        line = f"{r.name:<28} {str(tuple(r.shape)):<18} {r.finite_differences:>15.2e}"
        if r.autograd is not None:
            line += f" {r.autograd:>12.2e}"
        print(line + ("  FAIL" if r.worst() > threshold else ""))
    failed = [r for r in results if r.worst() > threshold]
    if not failed:
        print(f"all {len(results)} parameters within threshold {threshold:g}")
        return None
    worst = max(failed, key=ParameterError.worst)
    return (
        f"gradient check failed for {len(failed)} of {len(results)} parameters, worst "
        f"{worst.name} with relative error {worst.worst():.2e} > threshold {threshold:g}"
    )


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="gradcheck")
def main(cfg: DictConfig) -> None:
    try:
        failure = report(gradcheck(cfg), cfg.threshold)
    except (GradcheckError, ConfigError, DataError, OSError) as e:
        # Bad settings, model or data options (src.build names the key), data, checkpoint.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
