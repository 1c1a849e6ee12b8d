"""The reference models that ship with the repository (``models/reference/<task>/``).

A reference model is a finished quality run reduced to what prediction needs:
its Keras model, its config snapshot (paths made relative to the repository,
so the seeded production ``make data-quality`` writes is found again), its
run record, provenance, training log and split, and what prediction would
otherwise read from the training data: the training images' parameters and
truth (the classical reconstruction is fitted on them) and, for a direction
network, the errors of its images the axis fit weighs them with (measured on
its validation images) and, for an energy network, the errors of its images
that make the array energy's calibrated uncertainty.  So a reference model predicts any DL1 file without
the production it was trained on: ``make demo`` predicts the default IRF
sample with them, ``make irf-reference`` the quality IRF sample, checked
against ``docs/results/quality-irf/``.
"""

import json
import shutil
from pathlib import Path

import yaml

from ..exceptions import ConfigError
from ..rundir import (
    CONFIG_FILE,
    MODEL_DIR,
    PROVENANCE_FILE,
    RUN_FILE,
    SHIPPED_ENERGY_ERROR_MODEL,
    SHIPPED_ERROR_MODEL,
    SHIPPED_TRAINING_IMAGES,
    TRAINING_LOG,
    read_run_info,
)

__all__ = ["QUALITY_RUNS", "REFERENCE_FILES", "main", "make_reference"]

#: what a reference model keeps of its run
REFERENCE_FILES = (MODEL_DIR, CONFIG_FILE, RUN_FILE, PROVENANCE_FILE, TRAINING_LOG, "split.csv")


def _relative(value, repo):
    """A path of the config as the repository sees it (relative), or unchanged if outside it."""
    if isinstance(value, str) and Path(value).is_absolute():
        path = Path(value).resolve()
        if path.is_relative_to(repo):
            return str(path.relative_to(repo))
    return value


def make_reference(run_dir, target, repo):
    """Copy the finished run ``run_dir`` to ``target`` as a reference model; return ``target``."""
    run_dir, target, repo = Path(run_dir), Path(target).resolve(), Path(repo).resolve()
    if not (run_dir / RUN_FILE).is_file():
        raise ValueError(f"{run_dir} is not a run directory (no {RUN_FILE})")
    info = read_run_info(run_dir)
    if info.get("status") != "finished":
        raise ValueError(f"{run_dir} is not a finished run (status {info.get('status')!r})")
    missing = [name for name in REFERENCE_FILES if not (run_dir / name).exists()]
    if missing:
        raise ValueError(f"{run_dir} lacks {', '.join(missing)}")
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_reference(run_dir, target, repo, info, partial)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _write_reference(run_dir, target, repo, info, partial):
    """Fill ``partial`` and put it in place of ``target`` (the old one goes only once the new one is there)."""
    for name in REFERENCE_FILES:
        shutil.copy2(run_dir / name, partial / name)
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    project = config.get("Project") or {}
    for key in ("signal_dir", "background_dir", "test_signal_dir", "test_background_dir", "custom_model_file"):
        if key in project:
            project[key] = _relative(project[key], repo)
    project["output_root"] = str(target.parent.relative_to(repo)) if target.parent.is_relative_to(repo) \
        else str(target.parent)
    project["run_name"] = target.name
    (partial / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    # a reference made again from itself (e.g. to measure its errors with this version) keeps its origin
    info.update(run_name=target.name, reference_of=info.get("reference_of") or str(run_dir), dl2_test=None)
    (partial / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
    _carry_training_data(run_dir, partial)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _carry_training_data(run_dir, target):
    """Write what prediction reads from the training data into ``target``: the training images, the error model
    of a direction or energy network."""
    import logging

    from astropy.table import Table
    from ctapipe.io import write_table

    from ..io.dl2 import TRAINING_IMAGES_TABLE
    from ..loading.loader import FastLoader
    from .event_dl2 import load_run, measure_direction_error_model, measure_energy_error_model, training_images

    log = logging.getLogger(__name__)
    run = load_run(run_dir)
    training = training_images([run], log)
    if training is None:
        raise ValueError(f"{run_dir} has no training images to carry")
    write_table(Table(training), target / SHIPPED_TRAINING_IMAGES, TRAINING_IMAGES_TABLE)
    measure, shipped = {"geometry": (measure_direction_error_model, SHIPPED_ERROR_MODEL),
                        "energy": (measure_energy_error_model, SHIPPED_ENERGY_ERROR_MODEL)}.get(run.role, (None, None))
    if measure is not None and not run.stereo:
        fast = FastLoader()
        fast.cache_dir = None
        model = measure(run, training, fast, 128, log)
        if model is None:
            raise ValueError(f"the errors of {run_dir}'s images cannot be measured (see the warning above): a "
                             f"reference {run.role} model needs them")
        model.to_table().write(target / shipped, format="ascii.ecsv")


#: the runs ``make reference-models`` ships: {task: run directory}
QUALITY_RUNS = {"type": "models/type/quality", "energy": "models/energy/quality",
                "skydirection": "models/skydirection/quality"}


def main(argv=None):
    """``python -m ctlearn_mlops.tools.reference``: the quality runs to ``models/reference/<task>/``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Copy finished quality runs to models/reference/<task>/ (the "
                                                 "reference models: make irf-reference).")
    parser.add_argument("--run", action="append", default=[], metavar="TASK=DIR",
                        help="a run to ship (default: " + ", ".join(f"{t}={d}" for t, d in QUALITY_RUNS.items()) + "); "
                        "a reference model itself makes it again (its direction or energy error model measured anew)")
    parser.add_argument("--output-root", type=Path, default=Path("models/reference"))
    args = parser.parse_args(argv)
    malformed = [item for item in args.run if "=" not in item or not all(item.split("=", 1))]
    if malformed:
        print(f"ERROR --run {malformed[0]}: expected TASK=DIR", file=sys.stderr)
        return 2
    runs = dict(item.split("=", 1) for item in args.run) or QUALITY_RUNS
    repo = Path.cwd()
    for task, run_dir in runs.items():
        try:
            target = make_reference(run_dir, args.output_root / task, repo)
        except (ValueError, OSError, ConfigError) as err:
            print(f"ERROR --run {task}={run_dir}: {err}", file=sys.stderr)
            return 2
        print(f"{run_dir} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
