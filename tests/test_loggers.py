"""The loggers (conf/logger/, src/lit/loggers.py): each chosen one gets the same curves at the same
steps and the run's hyperparameters; a resumed run continues them; a missing extra is one
sentence. Each logger's files are read back with its own reader (TensorBoard's, csv, MLflow's
client, W&B's record format)."""

import csv
import json
import signal
import struct
import sys
import time
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.lit import tracking
from src.lit.loggers import CSVLogger, TensorBoardLogger
from src.lit.tracking import (
    build_loggers,
    check_loggers,
    hyperparameters,
    log_evaluation,
    read_logger_runs,
)
from src.scalars import read_scalars
from src.train import train
from tests.conftest import compose_cfg, run_cli, run_main

Curves = dict[str, dict[int, float]]

# Knobs the FAST runs (tests/conftest.py) must report, and words no hyperparameter may contain.
EXPECTED_PARAMS = {"model": "mlp", "optimizer": "sgd", "optimizer/lr": 0.002, "seed": 42,
                   "data/batch_size": 200, "trainer/max_steps": 6}  # fmt: skip
NEVER_IN_PARAMS = ("url", "md5", "root", "download", "dir", "_target_")


# ------------------------------------------------------------------------------------------------
# Readers: each logger's own files, read back as {tag: {step: value}} and {param: value}
# ------------------------------------------------------------------------------------------------


def csv_points(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every (step, value) of every column of a metrics.csv, in file order, repeats included."""
    points: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            step = int(float(row.pop("step")))
            for tag, value in row.items():
                if value != "":
                    points.setdefault(tag, []).append((step, float(value)))
    return points


def csv_run(run_dir: Path) -> tuple[Curves, dict]:
    points = csv_points(run_dir / "csv" / "metrics.csv")
    return {t: dict(p) for t, p in points.items()}, OmegaConf.load(run_dir / "csv" / "hparams.yaml")


def tensorboard_run(run_dir: Path) -> tuple[Curves, dict]:
    from tbparse import SummaryReader

    params = SummaryReader(str(run_dir)).hparams.set_index("tag").value.to_dict()
    return read_scalars(run_dir), params


def mlflow_run(run_dir: Path) -> tuple[Curves, dict]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    run = client.get_run(read_logger_runs(run_dir)["mlflow"])
    curves = {
        tag: {m.step: m.value for m in client.get_metric_history(run.info.run_id, tag)}
        for tag in run.data.metrics
    }
    return curves, dict(run.data.params)


def wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B ``.wandb`` file (LevelDB's log format: 32 KiB blocks of chunks, each
    with a 7-byte header of checksum, length and type; the file starts with a 7-byte header).
    wandb 0.31 ships no Python reader of its own files."""
    data, block, records, pending = path.read_bytes(), 32768, [], b""
    position = 7
    while position + 7 <= len(data):
        if block - position % block < 7:  # too little left in the block for a header: padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += block - position % block
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(pending)
            pending = b""
    return records


def wandb_parsed_records(path: Path, timeout: float = 20.0) -> list:
    """The records of a finished W&B run's file, parsed. W&B's service process may still be
    writing the last ones when ``finish()`` has returned: read until its exit record is there."""
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout
    while True:
        records = []
        for data in wandb_records(path):
            records.append(wandb_internal_pb2.Record())
            records[-1].ParseFromString(data)
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record"
        time.sleep(0.1)


def wandb_run(run_dir: Path) -> tuple[Curves, dict]:
    curves: Curves = {}
    params: dict = {}
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_parsed_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                items = record.history.item
                values = {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in items}
                step = values.pop("trainer/global_step")
                for tag, value in values.items():
                    if not tag.startswith("_"):
                        curves.setdefault(tag, {})[step] = value
            elif kind == "config":
                params.update({i.key: json.loads(i.value_json) for i in record.config.update})
    return curves, params


READERS = {"csv": csv_run, "tensorboard": tensorboard_run, "mlflow": mlflow_run,
           "wandb": wandb_run}  # fmt: skip


def needs(extra: str) -> None:
    """Skip the test where an optional logger's package is not installed."""
    pytest.importorskip(extra, reason=f"{extra} is not installed (pip install -e '.[{extra}]')")


def fast_run(fast_overrides: list[str], tmp_path: Path, *overrides: str) -> tuple[Path, dict]:
    run_dir = tmp_path / "run"
    return run_dir, train(compose_cfg(*fast_overrides, *overrides, output_dir=run_dir))


# ------------------------------------------------------------------------------------------------
# Every logger: the same curves at the same steps, the hyperparameters, the final metrics
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "option, names",
    [("csv", ["csv"]), ("mlflow", ["mlflow"]), ("[tensorboard,csv]", ["tensorboard", "csv"]),
     ("wandb", ["wandb"])],
)  # fmt: skip
def test_each_logger_gets_the_curves_the_hyperparameters_and_the_final_metrics(
    fast_overrides, tmp_path, option, names
):
    for name in names:
        if name in ("mlflow", "wandb"):
            needs(name)
    run_dir, final = fast_run(fast_overrides, tmp_path, f"logger={option}")
    read = {name: READERS[name](run_dir) for name in names}
    for name, (curves, params) in read.items():
        # FAST: 6 steps, every step logged, validation after steps 3 and 6.
        assert sorted(curves["train/loss"]) == [1, 2, 3, 4, 5, 6]
        assert sorted(curves["val/acc"]) == sorted(curves["test/acc"]) == [3, 6]
        assert curves["lr-SGD"].keys() == {0, 1, 2, 3, 4, 5}  # the rate of the next step
        for tag, value in final.items():
            assert curves[tag] == {6: pytest.approx(value)}
        for key, value in EXPECTED_PARAMS.items():
            if name == "mlflow" and key in ("model", "optimizer"):
                key += "/choice"  # a file beside the folder model/ in MLflow's file store
            assert params[key] in (value, str(value)), key  # MLflow keeps parameters as strings
        assert not [k for k in params if any(word in k for word in NEVER_IN_PARAMS)]
    if len(read) > 1:  # the same numbers, not only the same steps
        (first, _), *others = read.values()
        for curves, _ in others:
            for tag in ("train/loss", "train/acc", "val/acc", "lr-SGD", "final_test/acc"):
                assert curves[tag] == pytest.approx(first[tag]), tag


def test_hyperparameters_are_the_knobs_not_urls_checksums_or_paths():
    cfg = compose_cfg("model=mlp", "scheduler=cosine")  # CIFAR-10: its config has url, md5, root
    params = hyperparameters(cfg, cfg.hydra.runtime.choices)
    assert set(params) == {
        "model", "optimizer", "scheduler", "seed",
        "model/hidden_units", "model/neg_slope", "model/dropout", "model/norm", "model/init",
        "optimizer/lr", "optimizer/momentum", "optimizer/weight_decay",
        "scheduler/warmup_steps", "scheduler/schedule/eta_min",  # T_max follows max_steps
        "data/batch_size", "data/normalize", "data/augment", "data/val_size",
        "trainer/max_steps", "trainer/precision",
    }  # fmt: skip
    assert params["model/hidden_units"] == "[100]" and params["scheduler"] == "cosine"
    convnet = compose_cfg("model=convnet")
    assert "model/n_channels" not in hyperparameters(convnet, convnet.hydra.runtime.choices)


# ------------------------------------------------------------------------------------------------
# Resume: no step twice
# ------------------------------------------------------------------------------------------------


def test_a_resumed_csv_log_keeps_the_rows_before_its_checkpoint_and_repeats_no_step(tmp_path):
    first = CSVLogger(str(tmp_path), name="csv", version="")
    for step in range(1, 8):
        first.log_metrics({"lr-SGD": 0.1 * step}, step=step - 1)  # the rate of the next step
        first.log_metrics({"train/loss": 1.0 / step}, step=step)
        first.save()
    # Resumed from a checkpoint after step 4: 5 on is logged again, and the rate at 4.
    resumed = CSVLogger(str(tmp_path), name="csv", version="", purge_step=5)
    resumed.log_metrics({"lr-SGD": 0.4}, step=4)
    resumed.log_metrics({"train/loss": 0.5}, step=5)
    resumed.finalize("success")
    points = csv_points(tmp_path / "csv" / "metrics.csv")
    assert points["train/loss"] == [(s, pytest.approx(1.0 / s)) for s in range(1, 5)] + [(5, 0.5)]
    assert [s for s, _ in points["lr-SGD"]] == [0, 1, 2, 3, 4]


def test_a_fresh_csv_log_in_a_used_folder_starts_over(tmp_path):
    """Without a step to resume from (e.g. `hydra.run.dir` of an earlier run), as Lightning does."""
    CSVLogger(str(tmp_path), name="csv", version="").log_metrics({"a": 1.0}, step=1)
    again = CSVLogger(str(tmp_path), name="csv", version="")
    again.log_metrics({"a": 2.0}, step=1)
    again.save()
    assert csv_points(tmp_path / "csv" / "metrics.csv") == {"a": [(1, 2.0)]}


@pytest.mark.slow
def test_a_killed_run_resumed_with_csv_logs_each_step_once_as_an_uninterrupted_one(
    fast_overrides, tmp_path
):
    run = ["logger=csv", "trainer.max_steps=24", "trainer.val_check_interval=8",
           "data.batch_size=50"]  # fmt: skip
    whole_dir = tmp_path / "whole"
    train(compose_cfg(*fast_overrides, *run, output_dir=whole_dir))
    run_dir = tmp_path / "killed"
    kill = ["+callbacks.killer._target_=tests.killer.KillAtStep", "+callbacks.killer.step=19"]
    killed = run_cli(*fast_overrides, *run, *kill, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL  # after step 19; its last checkpoint: step 16
    assert max(s for s, _ in csv_points(run_dir / "csv" / "metrics.csv")["train/loss"]) >= 17
    resumed = run_cli(f"resume={run_dir}", "trusted_targets=[tests]", cwd=tmp_path)  # the killer
    assert resumed.returncode == 0, resumed.stderr

    points = csv_points(run_dir / "csv" / "metrics.csv")
    for tag, tag_points in points.items():
        steps = [s for s, _ in tag_points]
        assert len(steps) == len(set(steps)), f"{tag} repeats steps"
    assert [s for s, _ in points["train/loss"]] == list(range(1, 25))
    whole = csv_points(whole_dir / "csv" / "metrics.csv")
    for tag in ("train/loss", "val/acc", "lr-SGD", "final_test/acc"):
        assert sorted(points[tag]) == pytest.approx(sorted(whole[tag])), tag


def test_a_resumed_tensorboard_log_from_an_older_runs_single_logger_node(tmp_path):
    """Runs saved before several loggers could be chosen have one `logger: {_target_: ...}`."""
    legacy = OmegaConf.create({"_target_": "pytorch_lightning.loggers.TensorBoardLogger",
                               "save_dir": str(tmp_path), "name": "", "version": ""})  # fmt: skip
    check_loggers(legacy)
    (first,) = build_loggers(legacy, tmp_path)
    for step in range(1, 8):
        first.log_metrics({"train/loss": 1.0}, step=step)
    first.finalize("success")
    (resumed,) = build_loggers(legacy, tmp_path, purge_step=5)
    resumed.log_metrics({"train/loss": 2.0}, step=5)
    resumed.finalize("success")
    assert read_scalars(tmp_path)["train/loss"] == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 2.0}


@pytest.mark.slow
def test_a_resumed_mlflow_run_continues_the_run_its_folder_names(fast_overrides, tmp_path):
    needs("mlflow")
    run_dir, _ = fast_run(fast_overrides, tmp_path, "logger=mlflow")
    run_id = read_logger_runs(run_dir)["mlflow"]
    cfg = compose_cfg(*fast_overrides, "logger=mlflow", output_dir=run_dir)
    (resumed,) = build_loggers(cfg.logger, run_dir, purge_step=7)
    assert resumed.run_id == run_id
    resumed.log_hyperparams({"trainer/max_steps": 12, "new/knob": 1})  # a changed one is kept
    resumed.log_metrics({"train/loss": 0.25}, step=7)
    resumed.finalize("success")
    curves, params = mlflow_run(run_dir)
    assert sorted(curves["train/loss"]) == [1, 2, 3, 4, 5, 6, 7]
    assert params["trainer/max_steps"] == "6" and params["new/knob"] == "1"

    (run_dir / "loggers.yaml").write_text("mlflow: 0123456789abcdef\n")  # not in this store
    with pytest.raises(ValueError, match="the MLflow run 0123456789abcdef that .* cannot be"):
        build_loggers(cfg.logger, run_dir, purge_step=7)


def test_a_resumed_wandb_run_continues_its_id_and_takes_the_evaluation(tmp_path):
    needs("wandb")
    run_dir = tmp_path / "run"
    cfg = compose_cfg("data=fake", "logger=wandb", output_dir=run_dir)
    (first,) = build_loggers(cfg.logger, run_dir)
    for step in range(1, 5):
        first.log_metrics({"train/loss": 1.0}, step=step)
    first.finish()
    (resumed,) = build_loggers(cfg.logger, run_dir, purge_step=3)
    assert resumed.experiment.id == read_logger_runs(run_dir)["wandb"]
    resumed.log_metrics({"train/loss": 2.0}, step=3)
    resumed.finish()
    from PIL import Image  # matplotlib's dependency

    figure = tmp_path / "figure.png"
    Image.new("RGB", (4, 4)).save(figure)
    log_evaluation(cfg.logger, run_dir, 3, {"eval/test/acc": 0.5}, {"eval/test/figure": figure})
    curves, _ = wandb_run(run_dir)
    # W&B's history is append-only: step 3 is there twice, the resumed value last.
    assert curves["train/loss"] == {1: 1.0, 2: 1.0, 3: 2.0, 4: 1.0}
    assert curves["eval/test/acc"] == {3: 0.5} and curves["eval/test/figure._type"] == {
        3: "image-file"
    }


# ------------------------------------------------------------------------------------------------
# src.evaluate's figures, and missing extras
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluation_figures_go_to_the_runs_mlflow_artifacts(fast_overrides, tmp_path, monkeypatch):
    needs("mlflow")
    from mlflow import MlflowClient

    from src.evaluate import main as evaluate_main

    run_dir = tmp_path / "outputs" / "run"
    run_main(*fast_overrides, "logger=mlflow", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["src.evaluate", f"run={run_dir}"])
    try:
        evaluate_main()
    finally:
        GlobalHydra.instance().clear()
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    run_id = read_logger_runs(run_dir)["mlflow"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/test_confusion_matrix.png", "eval/test_misclassified.png"} <= artifacts
    history = client.get_metric_history(run_id, "eval/test/acc")
    assert [m.step for m in history] == [6]


@pytest.mark.parametrize(
    "option, sentence",
    [("[tensorboard,mlflow]", "logger=mlflow needs MLflow, an optional extra that is not "
      "installed here: pip install -e '.[mlflow]'"),
     ("wandb", "logger=wandb needs Weights & Biases, an optional extra that is not installed "
      "here: pip install -e '.[wandb]'")],
)  # fmt: skip
def test_a_logger_whose_extra_is_missing_is_one_sentence_before_the_run(
    fast_overrides, tmp_path, monkeypatch, capsys, option, sentence
):
    monkeypatch.setattr(tracking, "find_spec", lambda name: None)  # as without mlflow and wandb
    with pytest.raises(SystemExit) as exit_:
        run_main(*fast_overrides, f"logger={option}", monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {sentence}"
    assert not list(tmp_path.rglob("mlflow.db")) and not list(tmp_path.rglob("wandb"))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))  # refused before any logger starts
    assert not (tmp_path / "outputs").exists()  # and no run folder is left


def test_no_logger_at_all_is_refused():
    with pytest.raises(ValueError, match="no logger is chosen"):
        check_loggers(compose_cfg("data=fake", "logger=[]").get("logger"))


def test_the_cost_per_logging_step_is_timed(capsys):
    from scripts.bench.loggers import main as time_loggers

    time_loggers(["--steps", "2", "--repeats", "1", "csv"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| logger= |") and lines[2].startswith("| `csv` | ")


# ------------------------------------------------------------------------------------------------
# The project's TensorBoard logger flushes now and then, and everything by the end of a run
# ------------------------------------------------------------------------------------------------


def test_saves_within_flush_secs_do_not_flush_and_the_end_writes_everything(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="", version="", flush_secs=3600)
    flushes = []
    experiment = logger.experiment
    real_flush = experiment.flush
    experiment.flush = lambda: (flushes.append(1), real_flush())
    for step in range(1, 6):
        logger.log_metrics({"train/loss": 1.0 / step}, step=step)
        logger.save()  # Lightning calls this after every log_metrics
    assert flushes == []
    logger.flush()
    assert len(flushes) == 1
    logger.log_metrics({"train/loss": 0.1}, step=6)
    logger.save()
    assert len(flushes) == 1
    logger.finalize("success")
    assert len(flushes) >= 2
    assert sorted(read_scalars(tmp_path)["train/loss"]) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "hparams.yaml").is_file()


def test_a_save_after_flush_secs_flushes(tmp_path, monkeypatch):
    logger = TensorBoardLogger(str(tmp_path), name="", version="", flush_secs=10)
    flushes = []
    monkeypatch.setattr(logger.experiment, "flush", lambda: flushes.append(1))
    clock = [1000.0]
    monkeypatch.setattr("src.lit.loggers.time.monotonic", lambda: clock[0])
    logger._flushed_at = clock[0]
    logger.save()
    assert flushes == []
    clock[0] += 10.5
    logger.save()
    assert flushes == [1]
