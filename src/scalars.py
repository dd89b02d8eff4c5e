"""The curves a run logged, read back from its TensorBoard event files.

The one reader of the project's scalars: the user's tools (``scripts.plot_curves``,
``scripts.plot_diagnostics``, ``scripts.summarize``) and the tests use it. It needs only
TensorBoard, a core dependency; which files are a run's events, ``src.run_folder`` says.
"""

import logging
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from src.run_folder import EVENT_FILES


def read_scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """Every scalar tag the run logged, as ``{tag: {step: value}}`` in step order.

    Only the event files in ``run_dir`` itself are read, not those of its subfolders (a sweep
    folder's other jobs never mix in). As in TensorBoard, a resumed run's restart drops the steps
    its previous start logged after the checkpoint; a step logged twice keeps its last value.
    Raises ``FileNotFoundError`` if ``run_dir`` holds no event files.
    """
    run_dir = Path(run_dir)
    if not any(run_dir.glob(EVENT_FILES)):
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event files")
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})  # 0: keep every point
    tb_log = logging.getLogger("tensorboard")
    level = tb_log.level
    tb_log.setLevel(logging.ERROR)  # a resumed run's purge is expected, not worth a warning
    try:
        events.Reload()
    finally:
        tb_log.setLevel(level)
    scalars = {}
    for tag in events.Tags()[SCALARS]:
        points = sorted(events.Scalars(tag), key=lambda e: e.step)  # stable: the last one wins
        scalars[tag] = {int(e.step): float(e.value) for e in points}
    return scalars
