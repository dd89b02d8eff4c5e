"""The batched crop-and-flip augmentation: exact, seeded, training batches only, resumable."""

import pytest
import torch
import torch.nn.functional as F

from src.checks import load_checkpoint
from src.data import FakeDataModule
from src.data.augment import RandomCropFlip
from src.train import train
from tests.conftest import compose_cfg


def images(n: int = 16, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1  # no zeros


def reference(x: torch.Tensor, top, left, flip, padding: int) -> torch.Tensor:
    """The same crops and flips, one image at a time, the obvious way."""
    h, w = x.shape[-2:]
    out = []
    for image, t, le, f in zip(x, top, left, flip, strict=True):
        crop = F.pad(image, (padding,) * 4)[:, t : t + h, le : le + w]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


def test_each_image_is_a_padded_crop_then_maybe_flipped():
    x, p = images(), 2
    out = RandomCropFlip(padding=p, seed=3)(x)
    # Replay the generator to know which crops and flips were drawn.
    g = torch.Generator().manual_seed(3)
    n = len(x)
    top = torch.randint(0, 2 * p + 1, (n, 1), generator=g).flatten().tolist()
    left = torch.randint(0, 2 * p + 1, (n, 1), generator=g).flatten().tolist()
    flip = (torch.rand(n, 1, generator=g) < 0.5).flatten().tolist()
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, reference(x, top, left, flip, p))
    assert any(flip) and not all(flip) and len(set(top)) > 1  # a real mix was exercised


def test_no_padding_and_no_flip_is_the_identity():
    x = images()
    assert torch.equal(RandomCropFlip(padding=0, flip_prob=0.0)(x), x)
    assert torch.equal(RandomCropFlip(padding=0, flip_prob=1.0)(x), x.flip(-1))


def test_same_seed_same_augmentation_and_the_global_rng_is_untouched():
    x = images(64)
    torch.manual_seed(0)
    a = RandomCropFlip(seed=1)(x)
    after = torch.rand(1)
    torch.manual_seed(0)
    b = RandomCropFlip(seed=1)(x)
    assert torch.equal(a, b) and torch.equal(torch.rand(1), after)
    assert not torch.equal(RandomCropFlip(seed=2)(x), a)


def test_state_dict_restores_the_draws():
    x, aug = images(), RandomCropFlip(seed=0)
    aug(x)
    state = aug.state_dict()
    expected = aug(x)
    aug(x)
    aug.load_state_dict(state)
    assert torch.equal(aug(x), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_result_on_the_gpu():
    x = images(64)
    assert torch.equal(RandomCropFlip(seed=5)(x.cuda()).cpu(), RandomCropFlip(seed=5)(x))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="padding"):
        RandomCropFlip(padding=-1)
    with pytest.raises(ValueError, match="flip_prob"):
        RandomCropFlip(flip_prob=2)
    with pytest.raises(ValueError, match="N, C, H, W"):
        RandomCropFlip()(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="data.augment"):
        FakeDataModule(val_size=100, augment="yes")


def test_only_the_training_batches_are_augmented():
    def batches(augment: bool):
        dm = FakeDataModule(num_train=200, num_test=100, val_size=50, batch_size=50,
                            eval_batch_size=50, augment=augment)  # fmt: skip
        dm.setup()
        return dm, next(iter(dm.train_dataloader())), [next(iter(b)) for b in dm.val_dataloader()]

    dm, (x, y), evals = batches(augment=True)
    _, (x0, y0), evals0 = batches(augment=False)
    assert torch.equal(y, y0) and not torch.equal(x, x0)  # same order, other pixels
    assert all(torch.equal(a[0], b[0]) for a, b in zip(evals, evals0, strict=True))
    assert torch.equal(next(iter(dm.test_dataloader()))[0], dm.splits["test"][0][:50])


@pytest.mark.slow
def test_a_resumed_run_augments_as_an_uninterrupted_one(fast_overrides, tmp_path):
    """The augmentation's draws travel in the checkpoint (the data module's state)."""
    args = [*fast_overrides, "data.augment=true"]
    whole = train(compose_cfg(*args, output_dir=tmp_path / "whole"))
    train(compose_cfg(*args, "trainer.max_steps=3", output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(compose_cfg(*args, f"ckpt_path={last}", output_dir=tmp_path / "second"))
    # The weights after the last step depend on every augmented batch. (The runs' best-checkpoint
    # metrics need not agree: a run started from a checkpoint in a new folder selects among its
    # own validations only.)
    weights = [
        load_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt")["state_dict"]
        for run in ("whole", "second")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert whole  # the uninterrupted run completed with its metrics
