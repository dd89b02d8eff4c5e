"""src/scalars.py: the one reader of a run's TensorBoard curves."""

import pytest
from torch.utils.tensorboard import SummaryWriter

from src.scalars import read_scalars


def test_reads_every_tag_by_step_from_the_folder_itself(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:
        for step in (1, 2, 3):
            writer.add_scalar("val/acc", step / 4, step)  # exact in float32, as events store it
        writer.add_scalar("final_test/acc", 0.5, 3)
    with SummaryWriter(str(tmp_path / "other_job")) as writer:  # a subfolder never mixes in
        writer.add_scalar("val/acc", 0.9, 7)
    scalars = read_scalars(tmp_path)
    assert scalars == {"val/acc": {1: 0.25, 2: 0.5, 3: 0.75}, "final_test/acc": {3: 0.5}}


def test_a_resumed_run_shows_what_tensorboard_shows(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:  # the first start, killed after step 6
        for step in range(1, 7):
            writer.add_scalar("train/loss", 1.0, step)
    with SummaryWriter(str(tmp_path), purge_step=5) as writer:  # resumed from step 4's checkpoint
        for step in (5, 6):
            writer.add_scalar("train/loss", 2.0, step)
    assert read_scalars(tmp_path) == {"train/loss": {1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2}}


def test_a_folder_without_events_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        read_scalars(tmp_path)
