"""StepLogger: one CSV row every N steps; TensorBoard scalars when a writer is given."""
import math

import pandas as pd
import pytest
import torch

from nfrepro.engine.step_log import STEP_COLUMNS, StepLogger


class FakeWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def close(self):
        pass


def test_rows_every_n_steps_and_scalars(tmp_path):
    writer = FakeWriter()
    log = StepLogger(2, tmp_path / "steps.csv", writer)
    for step in range(1, 6):
        log(step, {"epoch": 1, "loss": torch.tensor(1.0 / step), "lr": 0.1, "frac_clipped": 0.0})
    df = pd.read_csv(tmp_path / "steps.csv")
    assert tuple(df.columns) == STEP_COLUMNS and df["step"].tolist() == [2, 4]
    assert math.isclose(df["loss"].iloc[1], 0.25)
    assert ("train/loss", 0.5, 2) in writer.scalars
    with pytest.raises(ValueError, match=">= 1"):
        StepLogger(0)


def test_a_resumed_run_logs_each_step_once(tmp_path):
    path = tmp_path / "steps.csv"
    metrics = {"epoch": 1, "loss": 1.0, "lr": 0.1, "frac_clipped": 0.0}
    log = StepLogger(1, path)
    for step in range(1, 9):  # killed after step 8; the checkpoint was written after step 5
        log(step, metrics)
    for kill in range(3):  # every resume replays steps 6.. and is killed again
        log = StepLogger(1, path)
        log.resume_at(5)
        for step in range(6, 9 + kill):
            log(step, metrics)
    assert pd.read_csv(path)["step"].tolist() == list(range(1, 11))
    StepLogger(1, tmp_path / "new.csv").resume_at(3)  # nothing logged yet: nothing to do


def test_a_resumed_writer_opens_after_the_killed_ones_file(tmp_path):
    """TensorBoard orders event files by name, whose first field is the second the writer opened: the
    resumed writer must not share the killed writer's second (a lower pid would sort it first)."""
    import time

    from nfrepro.engine.step_log import _open_after_earlier_files

    now = int(time.time())
    (tmp_path / f"events.out.tfevents.{now}.host.99999.0").write_bytes(b"")
    (tmp_path / "events.out.tfevents.notanumber.host").write_bytes(b"")  # ignored, not an error
    _open_after_earlier_files(tmp_path)
    assert int(time.time()) > now
