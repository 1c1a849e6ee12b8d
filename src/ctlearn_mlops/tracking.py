"""What a run records as it goes: events.jsonl and scalars.csv, append-only and flushed.

A crashed or killed run still shows what it did up to the last line.
"""

import csv
import json
import os
import time
import traceback
from pathlib import Path

import keras

from .rundir import utc_now

__all__ = ["EVENTS_FILE", "SCALARS_FILE", "EventLog", "ScalarRecorder", "read_events"]

EVENTS_FILE = "events.jsonl"
SCALARS_FILE = "scalars.csv"


class EventLog:
    """Append one JSON object per line: {"time", "event", ...}."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / EVENTS_FILE

    def write(self, event, **fields):
        record = {"time": utc_now(), "event": event, **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def exception(self, err):
        return self.write(
            "exception", type=type(err).__name__, message=str(err),
            traceback="".join(traceback.format_exception(type(err), err, err.__traceback__)),
        )


def read_events(run_dir):
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return events


class ScalarRecorder(keras.callbacks.Callback):
    """Per epoch: one scalars.csv row per metric and an epoch_end event with metrics and timing.

    Epochs already recorded (a resumed run repeats the epoch it was killed in)
    are not written twice.
    """

    def __init__(self, run_dir, events: EventLog):
        super().__init__()
        self.path = Path(run_dir) / SCALARS_FILE
        self.events = events
        self.recorded = set()
        if self.path.exists():
            with open(self.path) as f:
                self.recorded = {int(row["epoch"]) for row in csv.DictReader(f)}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if epoch in self.recorded:
            return
        logs = {k: float(v) for k, v in (logs or {}).items()}
        new_file = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["epoch", "metric", "value", "time"])
            now = utc_now()
            for metric, value in logs.items():
                writer.writerow([epoch, metric, value, now])
            f.flush()
            os.fsync(f.fileno())
        self.recorded.add(epoch)
        self.events.write("epoch_end", epoch=epoch, metrics=logs, seconds=round(time.monotonic() - self.epoch_start, 3),
                          ended_at=round(time.time(), 3))
