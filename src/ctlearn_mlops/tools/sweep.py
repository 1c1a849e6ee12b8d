"""Submit a parameter sweep as one SLURM job array: one run per set of overrides.

Each point of the sweep is a list of ``Section.key=value`` overrides; element i
of the array trains, tests and reports the run ``<name>-<i>`` with them
(bash_template.sh), and the runs are ready for compare_models.py.
"""

import argparse
import itertools
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from ..output import refuse, show

__all__ = ["main", "expand_grid", "write_sweep_file"]


def expand_grid(grid):
    """{"A.b": [1, 2], "C.d": [3]} -> ["A.b=1;C.d=3", "A.b=2;C.d=3"] (all combinations)."""
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        points.append(";".join(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                               for k, v in zip(keys, values)))
    return points


def write_sweep_file(path, points):
    for point in points:
        if "\n" in point:
            raise ValueError(f"a sweep point may not contain a newline: {point!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(points) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Example: python scripts/submit_sweep.py --config configs/energy.yaml --name lr "
                                            "--grid TrainCTLearnModel.optimizer.base_learning_rate=0.0003,0.001,0.003")
    parser.add_argument("--config", type=Path, help="task config")
    parser.add_argument("positional_config", type=Path, nargs="?", metavar="CONFIG",
                        help="the task config as a first argument (old spelling of --config)")
    parser.add_argument("--name", required=True, help="sweep name: runs are <name>-0, <name>-1, ...")
    parser.add_argument("--point", action="append", default=[],
                        help="one run's overrides, 'A.b=1;C.d=2' (repeatable)")
    parser.add_argument("--grid", action="append", default=[],
                        help="Section.key=v1,v2,... : all combinations of the --grid options (values parsed as YAML)")
    parser.add_argument("--sbatch-option", action="append", default=[], help="extra sbatch option, e.g. --time=02:00:00")
    parser.add_argument("--template", type=Path, default=Path("bash_template.sh"), help="the batch script (default: bash_template.sh)")
    parser.add_argument("--dry-run", action="store_true", help="write the sweep file, print the sbatch command, submit nothing")
    args = parser.parse_args(argv)

    if args.positional_config is not None:
        if args.config is not None:
            parser.error("give the task config once, with --config")
        refuse("submit_sweep.py", "warning: the config as a first argument is now --config CONFIG (still accepted)")
        args.config = args.positional_config
    if args.config is None:
        parser.error("the task config is required: --config configs/<task>.yaml")
    if not args.config.is_file():
        parser.error(f"config not found: {args.config}")
    grid = {}
    for item in args.grid:
        key, _, values = item.partition("=")
        if not values:
            parser.error(f"--grid expects Section.key=v1,v2,..., got {item!r}")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    points = list(args.point) + (expand_grid(grid) if grid else [])
    if not points:
        parser.error("give at least one --point or --grid")
    sweep_file = write_sweep_file(Path("sweeps") / f"{args.name}.txt", points)
    command = [
        "sbatch", "--parsable", f"--array=0-{len(points) - 1}", f"--job-name={args.name}",
        f"--export=ALL,SWEEP_FILE={sweep_file.absolute()},RUN_NAME_PREFIX={args.name}",
        *args.sbatch_option, str(args.template), str(args.config),
    ]
    for i, point in enumerate(points):
        show(f"{args.name}-{i}: {point}")
    show(shlex.join(command))
    if args.dry_run:
        return 0
    result = subprocess.run(command, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode
