"""The shared data module: decoded images held as tensors, split, normalised, served as batches."""

from abc import abstractmethod

import pytorch_lightning as pl
import torch
from torch import Tensor

from src.data.augment import RandomCropFlip
from src.data.batches import TensorBatches

NORMALIZATIONS = ("mean_image", "standardize", "none")


class DataError(RuntimeError):
    """Data that is missing or malformed: its message says where and what to do."""


class InMemoryDataModule(pl.LightningDataModule):
    """Holds a whole image dataset as tensors and serves batches sliced from them.

    The contract of a data module (``data._target_``): subclass this and say how to get the images
    (``load``) and what they are: ``num_train_images``, ``num_classes`` and ``input_shape`` (also
    keys of the data config, ``data.num_classes`` and ``data.input_shape``, from which the models'
    sizes and the metrics' class count are interpolated), and optionally ``class_names``.

    The images are decoded once, split into train and validation by ``split_seed``, normalised
    with statistics of the training split alone, and kept on the training device (the GPU's memory
    when there is one).

    ``augment`` randomly crops (after padding) and flips the training batches, never the
    validation or test ones (``src.data.augment.RandomCropFlip``, seeded by ``shuffle_seed``).

    Every validation interval evaluates the validation split (for model selection) and the full test
    set (the assignment's curves), in that order: ``eval_splits`` names them.
    """

    #: Images in the source training set; a validation split is held out of them.
    num_train_images: int
    #: How many classes the labels count; the models' outputs and the metrics follow it.
    num_classes: int
    #: The shape of one image, (channels, height, width); the models' inputs follow it.
    input_shape: tuple[int, ...]

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the classes, by label (figures and per-class metrics use them)."""
        return tuple(str(c) for c in range(self.num_classes))

    def __init__(
        self,
        batch_size: int = 200,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        normalize: str = "mean_image",
        split_seed: int = 0,
        shuffle_seed: int = 0,
        augment: bool = False,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name} must be a positive integer, got {value!r}")
        if not isinstance(val_size, int) or not 0 <= val_size < self.num_train_images:
            raise ValueError(
                f"data.val_size must be an integer in [0, {self.num_train_images}), "
                f"got {val_size!r}"
            )
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if not isinstance(augment, bool):
            raise ValueError(f"data.augment must be true or false, got {augment!r}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.normalize = val_size, normalize
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.augment = augment
        # One augmentation for the whole fit: its random draws run on across epochs, and they are
        # saved with checkpoints (state_dict), so a resumed run augments as an uninterrupted one.
        self._augment = RandomCropFlip(seed=shuffle_seed) if augment else None
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._train_batches: TensorBatches | None = None

    @abstractmethod
    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return ``train_x, train_y, test_x, test_y``: uint8 images (N, C, H, W), int64 labels."""

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The splits each validation pass evaluates, in the order of ``val_dataloader``."""
        return ("val", "test") if self.val_size else ("test",)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # decoded once, however many times Lightning calls setup
            return
        train_x, train_y, test_x, test_y = self.load()
        for name, x in (("training", train_x), ("test", test_x)):
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise DataError(
                    f"the {name} images have shape {tuple(x.shape[1:])}, not the data config's "
                    f"input_shape {list(self.input_shape)}"
                )
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and device.type != "cpu":  # the data lives where the model does
            train_x, train_y = train_x.to(device), train_y.to(device)
            test_x, test_y = test_x.to(device), test_y.to(device)

        order = torch.randperm(
            len(train_y), generator=torch.Generator().manual_seed(self.split_seed)
        )
        val_idx, train_idx = order[: self.val_size].to(train_x.device), order[self.val_size :]
        train_idx = train_idx.to(train_x.device)
        raw = {
            "train": (train_x.index_select(0, train_idx), train_y.index_select(0, train_idx)),
            "val": (train_x.index_select(0, val_idx), train_y.index_select(0, val_idx)),
            "test": (test_x, test_y),
        }
        # One float copy of each split, normalised in place: no full-size temporaries.
        self.splits = {name: (x.float(), y) for name, (x, y) in raw.items() if len(y)}
        self._normalize_([x for x, _ in self.splits.values()], self.splits["train"][0])

    def _normalize_(self, splits: list[Tensor], train_x: Tensor) -> None:
        """Normalise float32 images in place, with statistics of the training split alone."""
        if self.normalize == "mean_image":
            # The assignment's preprocessing: subtract the mean image, keep the 0..255 scale.
            mean = train_x.mean(dim=0)
            for x in splits:
                x.sub_(mean)
            return
        for x in splits:
            x.div_(255)
        if self.normalize == "standardize":
            mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
            std = train_x.std(dim=(0, 2, 3), keepdim=True)
            for x in splits:
                x.sub_(mean).div_(std)

    def _batches(self, split: str, batch_size: int, train: bool = False) -> TensorBatches:
        x, y = self.splits[split]
        trainer = self.trainer
        return TensorBatches(
            x,
            y,
            batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.shuffle_seed,
            transform=self._augment if train else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> TensorBatches:
        # One object for the whole fit, so the data order runs on across epochs and resumes.
        if self._train_batches is None:
            self._train_batches = self._batches("train", self.batch_size, train=True)
        return self._train_batches

    def state_dict(self) -> dict:
        """What a checkpoint must hold beyond the data order: where the augmentation's draws are."""
        return {"augment": self._augment.state_dict()} if self._augment is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self._augment is not None and "augment" in state:
            self._augment.load_state_dict(state["augment"])

    def val_dataloader(self) -> list[TensorBatches]:
        return [self._batches(split, self.eval_batch_size) for split in self.eval_splits]

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", self.eval_batch_size)
