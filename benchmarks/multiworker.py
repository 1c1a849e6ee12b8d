"""Training over several SLURM tasks: what it exchanges per step, and its epoch time here.

1. bytes exchanged per step by each task, for every shipped config: the ring
   all-reduce of MultiWorkerMirroredStrategy sends (and receives)
   ``2 (N - 1) / N x 4 P`` bytes per task and step, P the network's trainable
   parameters (float32 gradients), N the tasks.  P is counted on the network
   each config builds (input shape from one file of the default data: the
   shape depends on the camera and the channels only).
2. epoch time of the energy config on the default data: one task with 2
   cores against two tasks with one core each, the same global batch
   (64 = 1 x 64 = 2 x 32), submitted with ``sbatch`` to the cluster this
   machine reaches (``--skip-slurm`` leaves it out).  Mean wall time of the
   epochs after the first, from the run's ``events.jsonl``.

Writes the tables, with machine and date, to docs/benchmarks.md and docs/slurm.md.

    python benchmarks/multiworker.py [--skip-slurm] [--epochs 4]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from ctlearn_mlops.benchmarking import write_section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRAIN = REPO / "data" / "default" / "train"


def trainable_parameters(config_path):
    """Trainable parameters of the network a task config builds."""
    import keras
    from ctlearn.core.loader import DLDataLoader
    from ctlearn.core.model import CTLearnModel
    from dl1_data_handler.reader import DLDataReader
    from traitlets.config import Config

    from ctlearn_mlops.config import import_custom_model_file

    content = yaml.safe_load(Path(config_path).read_text())
    if content["Project"].get("custom_model_file"):
        import_custom_model_file(REPO / content["Project"]["custom_model_file"])
    task = content["Project"]["task"]
    training = content.get("TrainCTLearnModel", {})
    config = Config({k: v for k, v in content.items() if k not in ("Project", "FastLoader", "MLflowTracking")})
    one_file = sorted(DEFAULT_TRAIN.glob("gamma_*.dl1.h5"))[:1]
    reader = DLDataReader.from_name(training.get("dl1dh_reader_type", "DLImageReader"),
                                    input_url_signal=one_file, config=config)
    examples = reader.unique_example_identifiers if reader.mode == "stereo" else reader.example_identifiers
    loader = DLDataLoader(reader, list(range(min(len(examples), 2))), tasks=[task], batch_size=1,
                          stack_telescope_images=training.get("stack_telescope_images", False))
    model = CTLearnModel.from_name(training.get("model_type", "ResNet"), input_shape=loader.input_shape,
                                   tasks=[task], config=config).model
    count = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    keras.backend.clear_session()
    return count


def bytes_table():
    rows = ["| config | trainable parameters P | MB per step and task, 2 tasks | 4 tasks | 8 tasks |",
            "|---|---:|---:|---:|---:|"]
    for path in sorted((REPO / "configs").glob("*.yaml")):
        p = trainable_parameters(path)
        per_task = [2 * (n - 1) / n * 4 * p / 1e6 for n in (2, 4, 8)]
        rows.append(f"| `{path.name}` | {p:,} | " + " | ".join(f"{mb:.2f}" for mb in per_task) + " |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def epoch_seconds(run_dir):
    ends = [datetime.fromisoformat(json.loads(line)["time"])
            for line in (run_dir / "events.jsonl").read_text().splitlines() if '"epoch_end"' in line]
    gaps = np.diff([t.timestamp() for t in ends])
    return float(np.mean(gaps)), len(ends)


def submit(config, run_name, ntasks, cpus, work, batch):
    log = work / f"{run_name}-%j.out"
    command = ["sbatch", "--wait", f"--ntasks={ntasks}", f"--cpus-per-task={cpus}", "--time=30", f"--output={log}",
               "bash_template.sh", str(config), "--set", f"TrainCTLearnModel.batch_size={batch}"]
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "RUN_NAME": run_name, "VENV": sys.prefix}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"job {run_name} failed (rc {result.returncode}): {result.stderr.strip()}; log in {work}")
    return work / "models" / "energy" / run_name


def epoch_table(epochs):
    work = Path(tempfile.mkdtemp(prefix="multiworker-", dir=REPO / "data"))
    content = yaml.safe_load((REPO / "configs" / "energy.yaml").read_text())
    content["Project"].update(output_root=str(work / "models"), signal_dir=str(REPO / "data/default/train"),
                              test_signal_dir=str(REPO / "data/default/test"))
    content["TrainCTLearnModel"]["n_epochs"] = epochs
    content.setdefault("ReportTool", {})["reports_root"] = str(work / "reports")
    config = work / "energy.yaml"
    config.write_text(yaml.safe_dump(content))
    one_run = submit(config, "one-task", 1, 2, work, 64)
    one = epoch_seconds(one_run)
    two = epoch_seconds(submit(config, "two-tasks", 2, 1, work, 32))
    # the steps of an epoch: the run's training images in whole global batches of 64 (the training loader drops
    # the last incomplete batch, as ctlearn's DLDataLoader does)
    with open(one_run / "split.csv") as f:
        steps = sum(1 for row in csv.DictReader(f) if row["split"] == "training") // 64
    overhead_ms = (two[0] - one[0]) / steps * 1000
    return "\n".join([
        f"Energy config on the default data, global batch 64, {epochs} epochs, mean of the epochs after the first "
        f"(runs in `{work.relative_to(REPO)}`):",
        "",
        "| layout | s per epoch | ratio |",
        "|---|---:|---:|",
        f"| 1 task x 2 cores (`--ntasks=1 --cpus-per-task=2`, batch 64) | {one[0]:.2f} | 1.00 |",
        f"| 2 tasks x 1 core (`--ntasks=2 --cpus-per-task=1`, batch 32 per task) | {two[0]:.2f} | {two[0] / one[0]:.2f} |",
        "",
        (f"{steps} steps per epoch: two tasks take {overhead_ms:.1f} ms more per step than one task with the same "
         "cores (the all-reduce over loopback and the strategy's own work per step)." if overhead_ms >= 0 else
         f"{steps} steps per epoch: two tasks take {-overhead_ms:.1f} ms less per step than one task with the same "
         "cores: the all-reduce over loopback and the strategy's work per step cost less than what one process "
         "loses running these small layers on two threads instead of two processes on one thread each."),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-slurm", action="store_true", help="only the bytes per step (no sbatch)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each timed run (default 4)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    body = ["### Bytes exchanged per step (ring all-reduce, float32 gradients)", "",
            "Per task and step 2 (N - 1) / N x 4 P bytes: it tends to 8 P as the tasks grow.", "", bytes_table()]
    if not args.skip_slurm:
        body += ["", "### Epoch time: one task with two cores vs two tasks with one core", "", epoch_table(args.epochs)]
    text = "\n".join(body)
    for doc in ("benchmarks.md", "slurm.md"):
        write_section(REPO / "docs" / doc, "multiworker", text)
    print(text)


if __name__ == "__main__":
    main()
