"""The classical array direction: ctapipe's HillasReconstructor event by event vs the vectorized one.

Reads every DL1 file of a directory (default: the quality IRF sample,
``data/quality/irf``, of ``make data-quality``; else the default data's),
runs ``TableHillasReconstructor.directions`` on all its images, and ctapipe's
own ``HillasReconstructor`` (one ``ArrayEventContainer`` per event, what
``predict_events.py`` ran until 2026-12-06) on the events of as many files as hold
``--reference-events`` events; the two are compared on those events
(largest difference in deg) and the per-event times give the ratio.
Writes the table, with machine and date, to docs/benchmarks.md.

    python benchmarks/classical_pass.py [--input DIR] [--reference-events 3000] [--no-write]
"""

import argparse
import time
from pathlib import Path

import numpy as np
from astropy.table import vstack
from ctapipe.instrument import FocalLengthKind, SubarrayDescription

from ctlearn_mlops.benchmarking import write_section
from ctlearn_mlops.io import dl2
from ctlearn_mlops.physics.hillas_intersection import TableHillasReconstructor, image_groups
from ctlearn_mlops.physics.reconstruction import hillas_reconstructor_per_event

REPO = Path(__file__).resolve().parents[1]


def _default_input():
    for candidate in (REPO / "data" / "quality" / "irf", REPO / "data" / "default" / "irf"):
        if candidate.is_dir() and any(candidate.glob("*.dl1.h5")):
            return candidate
    raise SystemExit("no DL1 files: run make data-quality (or make data), or give --input")


def _stereo_candidates(images):
    """The images of events with two or more images (the events the per-event pass ever reconstructed)."""
    if not len(images):
        return images
    order, starts, event_of_image = image_groups(images)
    counts = np.diff(np.r_[starts, len(order)])
    return images[order][counts[event_of_image] >= 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=None, help="directory of DL1 files (*.dl1.h5)")
    parser.add_argument("--reference-events", type=int, default=3000,
                        help="array events (at least) given to ctapipe's per-event HillasReconstructor")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    directory = args.input or _default_input()
    paths = sorted(directory.glob("*.dl1.h5"))
    subarray = SubarrayDescription.from_hdf(paths[0], focal_length_choice=FocalLengthKind.EQUIVALENT)

    start = time.perf_counter()
    parts = [_stereo_candidates(dl2.read_telescope_events(p)) for p in paths]
    read_seconds = time.perf_counter() - start
    if not any(len(p) for p in parts):
        raise SystemExit(f"{directory}: no event with two or more images")
    images = vstack([p for p in parts if len(p)])
    reconstructor = TableHillasReconstructor(subarray)
    start = time.perf_counter()
    fast = reconstructor.directions(images)
    fast_seconds = time.perf_counter() - start
    n_events = len(fast["is_valid"])

    chosen, events = [], 0
    for part in parts:
        if events >= args.reference_events:
            break
        if len(part):
            chosen.append(part)
            events += len(image_groups(part)[1])
    subset = vstack(chosen)
    start = time.perf_counter()
    reference = hillas_reconstructor_per_event(subset, subarray)
    reference_seconds = time.perf_counter() - start
    same = reconstructor.directions(subset)
    valid = reference["is_valid"]
    assert np.array_equal(valid, same["is_valid"]), "validity differs from ctapipe's"
    largest = max(np.max(np.abs(same["alt"][valid] - reference["alt"][valid]), initial=0),
                  np.max(np.abs((same["az"][valid] - reference["az"][valid] + 180) % 360 - 180), initial=0))

    per_event_reference = reference_seconds / len(valid)
    per_event_fast = fast_seconds / n_events
    body = f"""
## Classical array direction: vectorized vs ctapipe's HillasReconstructor (`benchmarks/classical_pass.py`)

Data: `{directory.relative_to(REPO) if directory.is_relative_to(REPO) else directory}` ({len(paths)} files,
{len(images)} images of {n_events} array events with two or more images; reading them: {read_seconds:.1f} s).
ctapipe's per-event `HillasReconstructor` ran on the events of the first {len(chosen)} files
({len(valid)} events, {int(valid.sum())} with a direction); the vectorized one on all of them.

| path | events | seconds | ms per event | ratio |
|---|---|---|---|---|
| ctapipe `HillasReconstructor`, event by event | {len(valid)} | {reference_seconds:.2f} | {1e3 * per_event_reference:.3f} | 1 |
| `TableHillasReconstructor.directions`, all at once | {n_events} | {fast_seconds:.3f} | {1e3 * per_event_fast:.4f} | {per_event_reference / per_event_fast:.0f}x faster |

On the whole sample ctapipe's path would take about {per_event_reference * n_events / 60:.1f} min
(its per-event time times the events). Largest difference on the compared events: {largest:.1e} deg.
"""
    print(body)
    if not args.no_write:
        write_section(REPO / "docs" / "benchmarks.md", "classical-pass", body)


if __name__ == "__main__":
    main()
