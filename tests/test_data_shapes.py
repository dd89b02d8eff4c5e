"""Models and metrics take their sizes from the data config: ``data=fake_small`` (1-channel 16x16
images in 4 classes) trains, evaluates and gradchecks, and old saved configs still build."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src import build, gradcheck
from src.data import DataError
from tests.conftest import CONF, FAST, compose_cfg, run_main
from tests.test_evaluate import run_evaluate

SMALL = ["data=fake_small", "data.num_train=200", "data.val_size=40", "data.num_test=60",
         "data.batch_size=20"]  # fmt: skip


def test_the_sizes_follow_the_data_config():
    cifar = compose_cfg("model=mlp").model
    assert cifar.n_inputs == 3072 and cifar.n_classes == 10
    small = compose_cfg("data=fake_small", "model=mlp_numpy").model
    assert small.n_inputs == 16 * 16 and small.n_classes == 4
    convnet = compose_cfg("data=fake_small", "model=convnet").model
    assert convnet.n_channels == 1 and list(convnet.image_size) == [16, 16]


def test_images_of_another_shape_than_the_config_says_are_refused():
    cfg = compose_cfg(*FAST)
    datamodule = build.build_datamodule(cfg)
    load = datamodule.load

    def cropped():  # a source whose images are not what the config says (3, 32, 32)
        train_x, train_y, test_x, test_y = load()
        return train_x[..., :16, :16], train_y, test_x, test_y

    datamodule.load = cropped
    with pytest.raises(DataError, match=r"shape \(3, 16, 16\), not the data config's"):
        datamodule.setup("fit")


@pytest.mark.parametrize(
    "model, extra",
    [("mlp", ["model.init=torch"]), ("mlp_numpy", []),
     pytest.param("convnet", ["data.batch_size=8"], marks=pytest.mark.slow)],
)  # fmt: skip
def test_another_shape_and_class_count_trains_evaluates_and_gradchecks(
    tmp_path, monkeypatch, model, extra
):
    run_dir = tmp_path / "run"
    run_main(*FAST, *SMALL, f"model={model}", *extra, f"paths.data_dir={tmp_path / 'data'}",
             f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)  # fmt: skip
    record = OmegaConf.load(run_dir / "run.yaml")
    assert record.status == "completed" and 0 <= record.metrics["final_test/acc"] <= 1

    run_evaluate(f"run={run_dir}", monkeypatch=monkeypatch)
    evaluated = OmegaConf.load(run_dir / "eval" / "metrics.yaml")
    assert list(evaluated.classes) == ["0", "1", "2", "3"]
    assert len(evaluated.test.confusion_matrix) == 4 and evaluated.test.n == 60
    assert evaluated.test.acc == pytest.approx(record.metrics["final_test/acc"], abs=1e-6)
    assert (run_dir / "eval" / "test_misclassified.png").is_file()

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("gradcheck", overrides=[f"run={run_dir}", "n_samples=2", "n_coords=1"])
    results = gradcheck.gradcheck(cfg)
    assert gradcheck.report(results, cfg.threshold) is None
