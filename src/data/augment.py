"""Data augmentation on whole batches of image tensors, on whatever device they sit."""

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomCropFlip:
    """Random crop after zero padding, then a random left-right flip, for a batch ``(N, C, H, W)``.

    Each image is padded by ``padding`` pixels on every side, a random ``H x W`` window of the
    padded image is kept, and with probability ``flip_prob`` it is mirrored left-right: the standard
    CIFAR-10 augmentation. The whole batch is done in one gather, with no loop over the images, on
    the batch's own device.

    The images arrive normalised (the data module subtracts the training mean), so zero padding
    pads with the mean image, not with black.

    The random draws come from this object's own CPU generator, seeded with ``seed``: the same seed
    gives the same crops and flips on every run, on the CPU and on a GPU alike, and the global RNG
    (model initialisation, dropout) is left alone. ``state_dict``/``load_state_dict`` save and
    restore where the draws stand. A ``generator`` passed to a call is used instead of the own one.
    """

    def __init__(self, padding: int = 4, flip_prob: float = 0.5, seed: int = 0):
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
        self.padding, self.flip_prob = padding, flip_prob
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        g = self.generator if generator is None else generator
        n, c, h, w = x.shape
        p = self.padding
        # Drawn on the CPU (a few numbers per image) so the result is the same on every device.
        top = torch.randint(0, 2 * p + 1, (n, 1), generator=g)
        left = torch.randint(0, 2 * p + 1, (n, 1), generator=g)
        flip = torch.rand(n, 1, generator=g) < self.flip_prob

        rows = top + torch.arange(h)  # (n, h): the padded rows each image keeps
        cols = torch.arange(w).expand(n, w)
        cols = left + torch.where(flip, cols.flip(1), cols)  # (n, w), reversed where flipped
        rows, cols = rows.to(x.device), cols.to(x.device)

        padded = F.pad(x, (p, p, p, p)) if p else x
        images = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"].cpu())  # a checkpoint may map it elsewhere
