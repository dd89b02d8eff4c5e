"""The project's TensorBoard logger flushes now and then, and everything by the end of a run."""

from src.lit.loggers import TensorBoardLogger
from src.scalars import read_scalars


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
