"""Start-up, per-epoch cost and prediction over many files: our tools against stock CTLearn, in one run.

1. start-up, from launch to the first batch (ctlearn's "Training and
   evaluating..." log line, after the reader, the split and the model): stock
   ``ctlearn-train-model`` vs our train tool with a cold and a warm example
   index, on 80 and on 400 DL1 files of a toy production (``data/benchmark/``,
   made once, 25 gamma showers per file);
2. training epoch on the default data: our train tool (every saving callback
   on) against the same model fitted on in-memory arrays (the compute limit),
   wall time per epoch after the first;
3. prediction wall time on the 80 files: the stock ``ctlearn-predict-mono-model``
   (one call per file: it takes one file) vs our ``test_model.py`` (one call
   for all files, example index warm);
4. the peak memory (VmHWM) of each process.

Every process is started as a user would start it (a new interpreter).
Writes the tables, with machine and date, to docs/benchmarks.md.

    python benchmarks/startup.py [--skip-400]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from ctlearn_mlops.benchmarking import write_section
from ctlearn_mlops.rundir import MODEL_DIR

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHOWERS_PER_FILE = 25
READER = {"mode": "mono", "allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT",
          "channels": ["cleaned_image", "cleaned_relative_peak_time"]}


def _write(spec):
    from ctlearn_mlops.toysim.dataset import write_toy_file

    return write_toy_file(spec, overwrite=True)


def production(n_files):
    """``data/benchmark/files<n>/``: n small gamma files (made once; the 80 are the first 80 of the 400)."""
    from ctlearn_mlops.toysim.dataset import DatasetFile, lst_subarray

    directory = REPO / "data" / "benchmark" / f"files{n_files}"
    specs = [DatasetFile(path=directory / f"gamma_bench_obs{40000 + i}.dl1.h5", particle="gamma",
                         n_showers=SHOWERS_PER_FILE, obs_id=40000 + i, seed=7 * 100003 + i) for i in range(n_files)]
    todo = [s for s in specs if not s.path.exists()]
    if todo:
        lst_subarray()
        print(f"making {len(todo)} benchmark files in {directory}", flush=True)
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_write, todo))
    return directory


def measured(command, env=None, until=None, timeout=3600):
    """(seconds, peak MB, stderr) of a process; with ``until``, stop it when that text appears in its log."""
    start = time.perf_counter()
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})}, cwd=REPO)
    peak, lines = 0, []
    os.set_blocking(process.stderr.fileno(), False)
    seconds = None
    while True:
        try:
            with open(f"/proc/{process.pid}/status") as f:
                peak = max(peak, next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) // 1024)
        except (OSError, StopIteration):
            pass
        chunk = process.stderr.read()
        if chunk:
            lines.append(chunk.decode(errors="replace"))
            if until is not None and until in "".join(lines[-3:]):
                seconds = time.perf_counter() - start
                process.kill()
                process.wait()
                break
        if process.poll() is not None:
            lines.append((process.stderr.read() or b"").decode(errors="replace"))
            break
        if time.perf_counter() - start > timeout:
            process.kill()
            raise RuntimeError(f"{command[0]} did not finish in {timeout} s")
        time.sleep(0.05)
    text = "".join(lines)
    if seconds is None:
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed ({process.returncode}):\n{text[-3000:]}")
        seconds = time.perf_counter() - start
    return seconds, peak, text


def energy_config(files_dir, output_root, tmp, name, **sections):
    config = yaml.safe_load((REPO / "configs" / "energy.yaml").read_text())
    config["Project"].update(signal_dir=str(files_dir), signal_patterns=["*.h5"], test_signal_dir=str(files_dir),
                             test_signal_patterns=["*.h5"], output_root=str(output_root))
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def startup(files_dir, tmp):
    """Seconds and peak MB to the first batch: stock, ours cold, ours warm."""
    marker = "Training and evaluating"
    config_path, config = energy_config(files_dir, tmp / "models", tmp, f"ours{files_dir.name}",
                                        ExampleIndex={"directory": str(tmp / f"index{files_dir.name}")})
    stock = {k: v for k, v in config.items() if k in ("DLImageReader", "TableQualityQuery", "SingleCNN")}
    stock["TrainCTLearnModel"] = {**config["TrainCTLearnModel"], "input_dir_signal": str(files_dir),
                                  "file_pattern_signal": ["*.h5"], "reco_tasks": ["energy"],
                                  "output_dir": str(tmp / f"stock{files_dir.name}")}
    stock_path = tmp / f"stock{files_dir.name}.yaml"
    stock_path.write_text(yaml.safe_dump(stock))
    results = {"stock": measured([BIN / "ctlearn-train-model", "--config", stock_path, "--log-level", "INFO"],
                                 until=marker)}
    for label in ("cold", "warm"):
        results[label] = measured([sys.executable, REPO / "scripts" / "train_model.py", "--config", config_path,
                                   "--run-name", f"startup-{label}-{files_dir.name}"], until=marker)
    return {k: v[:2] for k, v in results.items()}


def epoch_times(tmp):
    """Wall seconds per epoch (after the first) of our train tool (fast loader in-process, and with 2 reader
    workers) and of the in-memory compute limit; the peak MB of the in-process run."""
    n_epochs = 6
    seconds, peak = {}, 0
    for workers in (0, 2):
        name = f"epochs{workers}"
        config_path, config = energy_config(REPO / "data" / "default" / "train", tmp / "models", tmp, name,
                                            FastLoader={"enabled": True, "workers": workers},
                                            Project={"signal_patterns": ["gamma_*.dl1.h5"]})
        _, run_peak, _ = measured([sys.executable, REPO / "scripts" / "train_model.py", "--config", config_path,
                                   "--run-name", name, "--epochs", n_epochs])
        run_dir = tmp / "models" / "energy" / name
        ends = [json.loads(line)["ended_at"] for line in (run_dir / "events.jsonl").read_text().splitlines()
                if '"epoch_end"' in line]
        seconds[workers] = float(np.median(np.diff(ends)))
        peak = peak or run_peak
    limit = compute_limit(config, tmp / "models" / "energy" / "epochs0", n_epochs)
    return seconds, limit, peak


def compute_limit(config, run_dir, n_epochs):
    """The config's model fitted on in-memory arrays of the run's training and validation images."""
    import keras
    import pandas as pd
    from ctlearn.core.model import CTLearnModel
    from dl1_data_handler.reader import DLImageReader
    from traitlets.config import Config

    from ctlearn_mlops.loading.sources import DL1ImageSource

    files = sorted(str(p) for p in (REPO / "data" / "default" / "train").glob("gamma_*.dl1.h5"))
    reader = DLImageReader(input_url_signal=files, config=Config({"DLImageReader": READER, "TableQualityQuery":
                                                                   config["TableQualityQuery"]}))
    ids = reader.example_identifiers
    images = DL1ImageSource.of_reader(reader).read(*(np.asarray(ids[c]) for c in ("file_index", "table_index", "tel_id",
                                                                                   "tel_type_id")))
    labels = np.asarray(ids["log_true_energy"], dtype=np.float32)
    split = pd.read_csv(run_dir / "split.csv")["split"].to_numpy()
    train, val = split == "training", split == "validation"
    batch = config["TrainCTLearnModel"]["batch_size"]
    n_train = train.sum() // batch * batch
    model = CTLearnModel.from_name(config["TrainCTLearnModel"]["model_type"], input_shape=images.shape[1:],
                                   tasks=["energy"], config=Config({"SingleCNN": config["SingleCNN"]})).model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"energy": keras.losses.MeanAbsoluteError()})
    ends = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    # the network's one input by position (Keras 3 names it after its layer)
    model.fit(images[train][:n_train], {"energy": labels[train][:n_train]}, batch_size=batch,
              epochs=n_epochs, validation_data=(images[val], {"energy": labels[val]}), verbose=0,
              callbacks=[timer])
    return float(np.median(np.diff(ends)))


def prediction(files_dir, tmp, run_dir):
    """Wall seconds and peak MB: the stock mono predict tool once per file, ours once for all files."""
    files = sorted(files_dir.glob("*.h5"))
    stock = {"DLImageReader": READER, "PredictCTLearnModel": {"batch_size": 8}}
    stock_path = tmp / "stock_predict.yaml"
    stock_path.write_text(yaml.safe_dump(stock))
    stock_seconds, stock_peak = 0.0, 0
    for i, f in enumerate(files):
        command = [BIN / "ctlearn-predict-mono-model", "--config", stock_path, "--input_url", f,
                   "--energy_model", run_dir / MODEL_DIR, "--output", tmp / f"stock_{i}.dl2.h5"]
        try:
            seconds, peak, _ = measured(command)
        except RuntimeError as err:
            # ctlearn 0.10.2 refuses a file with fewer events than its batch: once more with a batch of them all
            small = re.search(r"(\d+) events are not enough to form a batch", str(err))
            if small is None:
                raise
            retry = command[:-1] + [tmp / f"stock_{i}_all.dl2.h5", f"--PredictCTLearnModel.batch_size={small.group(1)}"]
            seconds, peak, _ = measured(retry)
        stock_seconds, stock_peak = stock_seconds + seconds, max(stock_peak, peak)
    config_path, _ = energy_config(files_dir, tmp / "models", tmp, "predict",
                                   ExampleIndex={"directory": str(tmp / f"index{files_dir.name}")})
    ours_seconds, ours_peak, _ = measured([sys.executable, REPO / "scripts" / "test_model.py", "--config", config_path,
                                           "--run", run_dir, "--name", "bench", "--overwrite"])
    return len(files), stock_seconds, stock_peak, ours_seconds, ours_peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-400", action="store_true", help="Only the 80-file production.")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    sizes = [80] if args.skip_400 else [80, 400]
    directories = {n: production(n) for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        starts = {n: startup(directories[n], tmp) for n in sizes}
        ours_epoch, limit_epoch, train_peak = epoch_times(tmp)
        n_files, stock_predict, stock_peak, ours_predict, ours_peak = prediction(
            directories[80], tmp, tmp / "models" / "energy" / "epochs0")

    start_rows = "\n".join(
        f"| {n} | {s['stock'][0]:.1f} s ({s['stock'][1]:,} MB) | {s['cold'][0]:.1f} s ({s['cold'][1]:,} MB) | "
        f"{s['warm'][0]:.1f} s ({s['warm'][1]:,} MB) | {s['warm'][0] / s['stock'][0]:.2f} |"
        for n, s in starts.items()
    )
    body = f"""
## Start-up, epoch and prediction over many files (`benchmarks/startup.py`)

Each tool started as a new process, as a user starts it; peak memory is the
process' VmHWM.  Files: toy productions of {SHOWERS_PER_FILE} gamma showers per file
(`data/benchmark/`, made once by the script), LST 1-4, `configs/energy.yaml`.

**Start-up**, from launch to the first batch (ctlearn's "Training and
evaluating..." line: reader, split, model built):

| DL1 files | stock `ctlearn-train-model` | ours, cold index | ours, warm index | warm vs stock |
|---|---|---|---|---|
{start_rows}

**Training epoch** on the default data (`configs/energy.yaml`, every saving
callback on; wall time between epoch ends after the first, median of 5): the
same model on in-memory arrays {limit_epoch:.2f} s; ours with the fast loader
in-process {ours_epoch[0]:.2f} s, **{ours_epoch[0] / limit_epoch:.2f}x the compute limit** (peak
{train_peak:,} MB); with 2 reader workers {ours_epoch[2]:.2f} s ({ours_epoch[2] / limit_epoch:.2f}x: on 2 cores the
workers take cores from the network).

**Prediction** of {n_files} files: stock `ctlearn-predict-mono-model`, one call per
file (it takes one file) with a batch of 8 (it refuses a file with fewer events
than its batch: such a file is run again with a batch of all its events, the
refused call not counted), {stock_predict:.0f} s in all (peak {stock_peak:,} MB per call); ours,
`test_model.py` on all of them in one call (the config's test files), {ours_predict:.0f} s
(peak {ours_peak:,} MB):
**{ours_predict / stock_predict:.2f}x the stock time**.
"""
    write_section(args.output, "startup", body)
    print(body)


if __name__ == "__main__":
    main()
