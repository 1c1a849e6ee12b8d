"""The toy production per simulated shower: where its time goes, against the stock ctapipe path, in one run.

For a sample of each kind of file of ``make data`` / ``make data-quality``
(diffuse training gammas and protons, the IRF sample's point-like gammas and
diffuse protons), on the same showers:

1. the event source (shower simulation, trigger, rendering, containers),
   whose shapes (``toysim.images``) are timed against ctapipe's ``toymodel``
   objects on the same shapes (checked equal, bit for bit);
2. ctapipe's ``ImageProcessor`` (cleaning and parameters, the same in both);
3. ctapipe's ``DataWriter`` at the production's compression level vs
   ctapipe's default one (same content).

The per-shower times give the ratio and the time of the default data and of
the quality IRF sample on ``--jobs`` cores.  Writes the table, with machine
and date, to docs/benchmarks.md.

    python benchmarks/toy_production.py [--showers 600] [--jobs 2] [--no-write]
"""

import argparse
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from ctapipe.core import Provenance
from ctapipe.image import ImageProcessor
from ctapipe.image.toymodel import Gaussian, RingGaussian, SkewedGaussian
from ctapipe.io import DataWriter

from ctlearn_mlops.benchmarking import write_section
from ctlearn_mlops.resources import cache_dir
from ctlearn_mlops.toysim import images
from ctlearn_mlops.toysim.dataset import COMPRESSION_LEVEL, IRF_PHYSICS, lst_subarray
from ctlearn_mlops.toysim.showers import ToyPhysics
from ctlearn_mlops.toysim.source import ToyEventSource

REPO = Path(__file__).resolve().parents[1]
#: (file kind, particle, physics, showers of the default data, showers of the quality IRF sample)
KINDS = [
    ("training gammas", "gamma", ToyPhysics(), 3000, 0),
    ("training protons", "proton", ToyPhysics(), 8000, 0),
    ("IRF gammas", "gamma", IRF_PHYSICS["gamma"], 2000, 12000),
    ("IRF protons", "proton", IRF_PHYSICS["proton"], 8000, 200000),
]
#: ctapipe's own default, what the toy files were written with before COMPRESSION_LEVEL
CTAPIPE_DEFAULT_COMPRESSION = DataWriter.compression_level.default_value


def _toymodel(shape):
    """ctapipe's toymodel object of one of the production's shapes."""
    m = u.m
    if isinstance(shape, images.RingShape):
        return RingGaussian(shape.x * m, shape.y * m, shape.radius * m, shape.sigma * m)
    args = (shape.x * m, shape.y * m, shape.length * m, shape.width * m, shape.psi * u.rad)
    if isinstance(shape, images.SkewedGaussianShape):
        return SkewedGaussian(*args, skewness=shape.skewness)
    return Gaussian(*args)


def _measure(particle, physics, n_showers, subarray, directory):
    recorded = []
    components = images._components

    def recording(*args):
        found = components(*args)
        recorded.extend((shape, q) for shape, q, *_ in found)
        return found

    source = ToyEventSource(input_url=str(cache_dir() / "lst_subarray.h5"), subarray=subarray, particle=particle,
                            n_showers=n_showers, obs_id=1, seed=11, physics=physics)
    images._components = recording
    try:
        start = time.perf_counter()
        events = list(source)
        ours = time.perf_counter() - start
    finally:
        images._components = components
    camera = subarray.tel[subarray.tel_ids[0]].camera.geometry
    x, y, area = camera.pix_x.to_value(u.m), camera.pix_y.to_value(u.m), camera.pix_area.to_value(u.m**2)
    start = time.perf_counter()
    stock = [_toymodel(shape).expected_signal(camera, q) for shape, q in recorded]
    stock_shapes = time.perf_counter() - start
    start = time.perf_counter()
    ours_signals = [images._expected_signal(shape, x, y, area, q) for shape, q in recorded]
    our_shapes = time.perf_counter() - start
    if not all(np.array_equal(a, b) for a, b in zip(stock, ours_signals)):
        raise SystemExit("the production's shapes differ from ctapipe's toymodel")
    processor = ImageProcessor(subarray=subarray)
    start = time.perf_counter()
    for event in events:
        processor(event)
    processing = time.perf_counter() - start
    writing = {}
    for level in (COMPRESSION_LEVEL, CTAPIPE_DEFAULT_COMPRESSION):
        path = directory / f"{particle}-{level}.h5"
        start = time.perf_counter()
        with DataWriter(event_source=source, output_path=path, overwrite=True, write_dl1_images=True,
                        write_dl1_parameters=True, compression_level=level) as writer:
            for event in events:
                writer(event)
        writing[level] = (time.perf_counter() - start, path.stat().st_size)
    return {"events": len(events), "images": sum(len(e.dl1.tel) for e in events), "ours_render": ours,
            "stock_render": ours - our_shapes + stock_shapes, "processing": processing,
            "ours_write": writing[COMPRESSION_LEVEL], "stock_write": writing[CTAPIPE_DEFAULT_COMPRESSION]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--showers", type=int, default=600, help="showers simulated of each kind of file")
    parser.add_argument("--jobs", type=int, default=2, help="cores the production runs on (its --jobs)")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    Provenance().start_activity("toy production benchmark")
    subarray = lst_subarray()
    rows = ["| file kind | events / images of N showers | event source: stock shapes / ours (ms a shower) | "
            f"ImageProcessor | DataWriter: level {CTAPIPE_DEFAULT_COMPRESSION} / level {COMPRESSION_LEVEL} (size ratio) | "
            "total: stock / ours (ms a shower) | ratio |",
            "|---|---|---|---|---|---|---|"]
    totals = {"default": [0.0, 0.0], "irf": [0.0, 0.0]}
    shares = np.zeros(3)
    with tempfile.TemporaryDirectory() as tmp:
        for kind, particle, physics, n_default, n_irf in KINDS:
            found = _measure(particle, physics, args.showers, subarray, Path(tmp))
            per = 1000.0 / args.showers
            stock = (found["stock_render"] + found["processing"] + found["stock_write"][0]) * per
            ours = (found["ours_render"] + found["processing"] + found["ours_write"][0]) * per
            shares += np.array([found["ours_render"], found["processing"], found["ours_write"][0]]) * per * (
                n_default + n_irf)
            for sample, n in (("default", n_default), ("irf", n_irf)):
                totals[sample][0] += stock * n / 1000.0 / args.jobs
                totals[sample][1] += ours * n / 1000.0 / args.jobs
            rows.append(
                f"| {kind} | {found['events']} / {found['images']} of {args.showers} | "
                f"{found['stock_render'] * per:.1f} / {found['ours_render'] * per:.1f} | {found['processing'] * per:.1f} | "
                f"{found['stock_write'][0] * per:.1f} / {found['ours_write'][0] * per:.1f} "
                f"({found['ours_write'][1] / found['stock_write'][1]:.2f}) | {stock:.1f} / {ours:.1f} | "
                f"{stock / ours:.2f}x |")
            print(rows[-1], flush=True)
    shares /= shares.sum()
    body = "\n".join(rows) + (
        f"\n\nOn {args.jobs} cores: the default data (`make data`, 21,000 showers) "
        f"{totals['default'][0]:.0f} s stock / {totals['default'][1]:.0f} s ours; the quality IRF sample (12,000 "
        f"gammas, 200,000 protons) {totals['irf'][0] / 60:.1f} / {totals['irf'][1] / 60:.1f} min (from the times a "
        f"shower above). Of the production's time: the event source (simulation and rendering) {shares[0]:.0%}, "
        f"ctapipe's ImageProcessor "
        f"{shares[1]:.0%}, ctapipe's DataWriter {shares[2]:.0%}.\n")
    print(body)
    if not args.no_write:
        write_section(REPO / "docs" / "benchmarks.md", "toy-production", "### Toy production\n\n" + body)


if __name__ == "__main__":
    main()
