"""CIFAR-10 from the official python archive (or any copy in its standard layout)."""

import codecs
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from src.data.datamodule import DataError, InMemoryDataModule

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGES_PER_FILE = 10_000
#: (channels, height, width) of every image.
INPUT_SHAPE = (3, 32, 32)

try:  # NumPy 2 (pickles name numpy._core; those of NumPy 1, like the official files, numpy.core)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # NumPy 1
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

#: Everything a CIFAR-10 batch file may name besides dicts, lists, strings, bytes and numbers:
#: NumPy arrays, their dtypes and scalars, as NumPy 1 and 2 pickle them (``_frombuffer``: pickle
#: protocol 5; ``_codecs.encode``: how protocol 2 writes bytes in Python 3).
BATCH_GLOBALS = {
    **{
        (module, name): getattr(_multiarray, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    },
    **{
        (module, "_frombuffer"): _numeric._frombuffer
        for module in ("numpy.core.numeric", "numpy._core.numeric")
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class ForeignObjectError(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR-10 batch does not hold; the message names it."""


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds and nothing else: ``find_class`` admits only
    ``BATCH_GLOBALS``, so a crafted file cannot make unpickling call anything (``os.system``,
    ``open``, ...); it raises ``ForeignObjectError`` naming what it asked for instead."""

    def find_class(self, module: str, name: str):
        try:
            return BATCH_GLOBALS[module, name]
        except KeyError:
            raise ForeignObjectError(f"{module}.{name}") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR-10 batch as uint8 images (N, 3, 32, 32) and int64 labels.

    The content is validated rather than checksummed, so faithful re-exports of the data load too;
    dict keys may be ``str`` or ``bytes`` (the official files, pickled by Python 2, use bytes).
    The file is read by ``BatchUnpickler``: a file that holds anything else is refused without
    running any of it.
    """
    try:
        with path.open("rb") as f:
            batch = BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing: the CIFAR-10 copy is incomplete") from None
    except ForeignObjectError as e:
        raise DataError(
            f"{path} is refused: it asks to load {e}, and a CIFAR-10 batch holds only dicts, "
            "lists, strings, bytes, numbers and NumPy arrays"
        ) from None
    except Exception as e:
        raise DataError(
            f"{path} is not a readable CIFAR-10 batch ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch: it lacks the 'data' or 'labels' key")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.shape != (IMAGES_PER_FILE, 3 * 32 * 32):
        raise DataError(
            f"{path} is malformed: expected uint8 data of shape ({IMAGES_PER_FILE}, 3072), "
            f"found {data.dtype} of shape {data.shape}"
        )
    if labels.shape != (IMAGES_PER_FILE,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path} is malformed: expected {IMAGES_PER_FILE} integer labels")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path} is malformed: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images of 32x32 pixels in 10 classes.

    Reads ``root/cifar-10-batches-py``; when it is missing and ``download`` is set, fetches the
    official archive from ``url`` and verifies its MD5 before extracting it into ``root``.
    """

    num_train_images = 50_000
    class_names = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        url: str = URL,
        md5: str | None = MD5,
        num_classes: int = 10,
        input_shape: Sequence[int] = INPUT_SHAPE,
        **kwargs,
    ):
        # In the data config so that the models' and the metrics' sizes follow the data.
        if num_classes != 10:
            raise ValueError(f"data.num_classes must be 10 for CIFAR-10, got {num_classes!r}")
        if isinstance(input_shape, str) or list(input_shape) != list(INPUT_SHAPE):
            raise ValueError(
                f"data.input_shape must be {list(INPUT_SHAPE)} for CIFAR-10, got {input_shape!r}"
            )
        super().__init__(**kwargs)
        self.num_classes, self.input_shape = num_classes, INPUT_SHAPE
        self.root, self.download, self.url, self.md5 = Path(root), download, url, md5

    @property
    def folder(self) -> Path:
        return self.root / FOLDER

    def prepare_data(self) -> None:
        """Make sure the files are there: download them if allowed, else say how to get them."""
        if self.folder.is_dir():
            return
        how = (
            f"download {URL} and extract it into {self.root}, "
            "or point data.root at a folder that holds cifar-10-batches-py"
        )
        if not self.download:
            raise DataError(f"CIFAR-10 not found in {self.folder} (data.download=false): {how}")
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(self.url, str(self.root), md5=self.md5)
        except Exception as e:  # no network, a bad checksum, a full disk: all end the same way
            raise DataError(
                f"CIFAR-10 not found in {self.folder} and the download from {self.url} failed "
                f"({type(e).__name__}: {e}); {how}"
            ) from None
        if not self.folder.is_dir():
            raise DataError(f"the archive from {self.url} holds no {FOLDER} folder; {how}")

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.prepare_data()
        train = [read_batch(self.folder / name) for name in TRAIN_FILES]
        test_x, test_y = read_batch(self.folder / TEST_FILE)
        train_x = np.concatenate([x for x, _ in train])
        train_y = np.concatenate([y for _, y in train])
        return (
            torch.from_numpy(train_x),
            torch.from_numpy(train_y),
            torch.from_numpy(test_x),
            torch.from_numpy(test_y),
        )
