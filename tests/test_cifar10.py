"""The CIFAR-10 loader on standard-layout folders the tests write themselves (no network)."""

import functools
import hashlib
import pickle
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from src.data import CIFAR10DataModule, DataError
from src.data.cifar10 import FOLDER, TEST_FILE, TRAIN_FILES, read_batch


def write_batch(path: Path, labels: np.ndarray, str_keys: bool = False, **replace) -> None:
    """Write one batch like the official files (bytes keys), or a re-export (str keys)."""
    n = len(labels)
    # A cheap, compressible pattern: pixel value = (image index + label) mod 256.
    data = np.broadcast_to(((np.arange(n) + labels) % 256).astype(np.uint8)[:, None], (n, 3072))
    batch = {"data": np.ascontiguousarray(data), "labels": labels.tolist(), "batch_label": "x"}
    batch.update(replace)
    if not str_keys:
        batch = {k.encode(): v for k, v in batch.items()}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=4)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """A full-size standard-layout copy: 5 x 10,000 training and 10,000 test images."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / FOLDER
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate([*TRAIN_FILES, TEST_FILE]):
        write_batch(folder / name, rng.integers(0, 10, 10_000), str_keys=i % 2 == 1)
    return root


@pytest.mark.slow
def test_loads_a_standard_layout_copy(cifar_root):
    dm = CIFAR10DataModule(root=str(cifar_root), download=False, val_size=5000)
    dm.setup()
    shapes = {name: (tuple(x.shape), tuple(y.shape)) for name, (x, y) in dm.splits.items()}
    assert shapes == {
        "train": ((45_000, 3, 32, 32), (45_000,)),
        "val": ((5_000, 3, 32, 32), (5_000,)),
        "test": ((10_000, 3, 32, 32), (10_000,)),
    }
    # mean_image: the training split's mean image is subtracted, the 0..255 scale kept.
    train_x = dm.splits["train"][0]
    assert train_x.mean(dim=0).abs().max() < 1e-3
    assert 100 < train_x.max() - train_x.min() <= 255
    assert dm.eval_splits == ("val", "test")


@pytest.mark.slow
def test_split_depends_on_split_seed_only(cifar_root):
    def val_labels(**kw):
        dm = CIFAR10DataModule(root=str(cifar_root), download=False, val_size=100, **kw)
        dm.setup()
        return dm.splits["val"][1]

    same = val_labels(split_seed=0, shuffle_seed=1).equal(val_labels(split_seed=0, shuffle_seed=2))
    assert same
    assert not val_labels(split_seed=0).equal(val_labels(split_seed=1))


@pytest.mark.slow
def test_val_size_zero_trains_on_everything(cifar_root):
    dm = CIFAR10DataModule(
        root=str(cifar_root), download=False, val_size=0, normalize="standardize"
    )
    dm.setup()
    assert len(dm.splits["train"][1]) == 50_000 and "val" not in dm.splits
    assert dm.eval_splits == ("test",)
    x = dm.splits["train"][0]
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "is missing"),
        ("truncated", "not a readable CIFAR-10 batch"),
        ("shape", "expected uint8 data of shape"),
        ("labels", "labels outside 0..9"),
    ],
)
def test_a_malformed_file_is_named(cifar_root, tmp_path, damage, message):
    folder = tmp_path / FOLDER
    folder.mkdir()
    for name in [*TRAIN_FILES, TEST_FILE]:
        (folder / name).symlink_to(cifar_root / FOLDER / name)
    bad = folder / "data_batch_3"
    bad.unlink()
    labels = np.zeros(10_000, dtype=np.int64)
    if damage == "truncated":
        bad.write_bytes((cifar_root / FOLDER / "data_batch_3").read_bytes()[:1000])
    elif damage == "shape":
        write_batch(bad, labels, data=np.zeros((10_000, 1024), np.uint8))
    elif damage == "labels":
        write_batch(bad, labels + 10)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match=message) as error:
        dm.setup()
    assert "data_batch_3" in str(error.value)


class CreatesAFile:
    """Unpickling this creates ``path``: what a crafted batch file could do to a trusting loader."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("where", ["top", "inside"])
def test_a_batch_file_that_would_run_code_is_refused_unrun(tmp_path, where):
    created = tmp_path / "created_by_unpickling"
    payload = CreatesAFile(created)
    batch = payload if where == "top" else {b"data": np.zeros(3, np.uint8), b"labels": [payload]}
    path = tmp_path / "data_batch_3"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as error:
        read_batch(path)
    assert not created.exists()
    message = str(error.value)
    assert "is refused: it asks to load io.open" in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_of_every_pickle_protocol_load(tmp_path, protocol):
    labels = np.arange(10_000) % 10
    data = (np.arange(10_000 * 3072) % 251).astype(np.uint8).reshape(10_000, 3072)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels.tolist()}, protocol=protocol))
    x, y = read_batch(path)
    assert np.array_equal(x.reshape(10_000, -1), data) and np.array_equal(y, labels)


def test_missing_data_without_download_says_how_to_get_it(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="not found in .*cifar-10-python.tar.gz"):
        dm.prepare_data()


@pytest.fixture(scope="session")
def archive(cifar_root, tmp_path_factory) -> tuple[str, str]:
    """The copy packed like the official archive, served over HTTP on the loopback: (URL, MD5)."""
    served = tmp_path_factory.mktemp("server")
    path = served / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(cifar_root / FOLDER, arcname=FOLDER)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield (
        f"http://127.0.0.1:{server.server_port}/{path.name}",
        hashlib.md5(path.read_bytes()).hexdigest(),
    )
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_verifies_and_extracts(archive, tmp_path):
    url, md5 = archive
    dm = CIFAR10DataModule(root=str(tmp_path / "data"), url=url, md5=md5)
    dm.prepare_data()
    assert sorted(p.name for p in (tmp_path / "data" / FOLDER).iterdir()) == sorted(
        [*TRAIN_FILES, TEST_FILE]
    )


def test_download_with_a_wrong_checksum_fails_clearly(archive, tmp_path):
    url, _ = archive
    dm = CIFAR10DataModule(root=str(tmp_path / "data"), url=url, md5="0" * 32)
    with pytest.raises(DataError, match="download from .* failed"):
        dm.prepare_data()


def test_download_without_network_fails_clearly(archive, tmp_path):
    url, _ = archive
    dm = CIFAR10DataModule(
        root=str(tmp_path / "data"), url=url.replace(".tar.gz", "-absent.tar.gz")
    )
    with pytest.raises(DataError, match="not found in .* and the download from"):
        dm.prepare_data()
