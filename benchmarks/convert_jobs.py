"""Speed-up of scripts/data_processing/convert_data.py with --jobs 2 over --jobs 1.

Converts the same N real simtel files (copies of the eventio sdist's
gamma_test.simtel.gz, LST telescopes) once with each setting, in one run,
and writes the table to docs/benchmarks.md.

    python benchmarks/convert_jobs.py [--files 4] [--jobs 2]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ctlearn_mlops.benchmarking import write_section
from ctlearn_mlops.resources import eventio_resource

REPO = Path(__file__).resolve().parents[1]


def convert(inputs, output, jobs):
    cmd = [
        sys.executable, REPO / "scripts" / "data_processing" / "convert_data.py", "--input", inputs,
        "--output-dir", output, "--jobs", str(jobs), "--allow-truncated", "--log-level", "WARN",
        "--processing-config", REPO / "configs" / "processing" / "dl1_images.yaml",
        *[arg for tel in (1, 2, 3, 4) for arg in ("--allowed-tels", str(tel))],
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()

    source = eventio_resource("gamma_test.simtel.gz")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for i in range(args.files):
            (inputs / f"gamma_{i}.simtel.gz").symlink_to(source)
        serial = convert(inputs, Path(tmp) / "serial", 1)
        parallel = convert(inputs, Path(tmp) / "parallel", args.jobs)
    body = f"""
## simtel -> DL1 conversion: `--jobs {args.jobs}` vs `--jobs 1`

`benchmarks/convert_jobs.py`: {args.files} copies of `gamma_test.simtel.gz`
(eventio 0.11.0 sdist, LST telescopes 1-4) through `convert_data.py`.

| setting | wall time | files/min | speed-up |
|---|---|---|---|
| `--jobs 1` | {serial:.1f} s | {60 * args.files / serial:.2f} | 1.00 |
| `--jobs {args.jobs}` | {parallel:.1f} s | {60 * args.files / parallel:.2f} | {serial / parallel:.2f} |
"""
    write_section(args.output, "convert-jobs", body)
    print(body)


if __name__ == "__main__":
    main()
