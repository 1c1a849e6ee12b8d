"""The measurement of docs/physics.md "the reference energy network with its bias removed" (not part of the package).

Copies an event DL2 file and replaces its CNN array energy (``CTLearn``) by
a bias-corrected one: in two folds by obs_id parity, the median of
log10(E_reco / E_true) of the other fold's gammas in 30 bins of true energy
(0.03-30 TeV, 30 or more gammas) is the bias curve b; each event's corrected
energy is the x with x + b(x) = log10(E_reco), by fixed-point iteration.  No
event is corrected with a curve fitted on itself.  The uncertainty column is
scaled with the energy.

    python docs/results/energy-bias-correction/cross_fit.py data/dl2/reference-irf.dl2.h5 data/dl2/biascorr-irf.dl2.h5
    python scripts/compute_irf.py --input data/dl2/biascorr-irf.dl2.h5 --name biascorr --fov-offset-max 2.0
    cp reports/irf/biascorr/metrics.json reports/irf/biascorr/sensitivity.csv docs/results/energy-bias-correction/
"""

import argparse
import shutil

import numpy as np
import tables

ENERGY = "/dl2/event/subarray/energy/CTLearn"
EDGES = np.linspace(np.log10(0.03), np.log10(30), 31)
CENTRES = 0.5 * (EDGES[1:] + EDGES[:-1])


def bias_curve(log_reco, log_true, mask):
    """Median log10(E_reco / E_true) per bin of true energy with 30 or more events of ``mask``."""
    bias = np.full(len(CENTRES), np.nan)
    for i in range(len(CENTRES)):
        selected = mask & (log_true >= EDGES[i]) & (log_true < EDGES[i + 1])
        if selected.sum() >= 30:
            bias[i] = np.median(log_reco[selected] - log_true[selected])
    known = np.isfinite(bias)
    return CENTRES[known], bias[known]


def unbiased(log_reco, curve):
    """The log10 energy whose median reconstruction is ``log_reco`` (fixed point of x = log_reco - b(x))."""
    x = log_reco.copy()
    for _ in range(30):
        x = log_reco - np.interp(x, *curve)
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args()
    with tables.open_file(args.input) as dl2:
        shower = dl2.root.simulation.event.subarray.shower.read()
        energy = dl2.get_node(ENERGY).read()
    if not ((shower["obs_id"] == energy["obs_id"]).all() and (shower["event_id"] == energy["event_id"]).all()):
        raise SystemExit(f"{args.input}: {ENERGY} and the simulated showers are not in the same order")
    reco = energy["CTLearn_energy"]
    valid = energy["CTLearn_is_valid"] & np.isfinite(reco) & (reco > 0)
    log_reco = np.log10(np.where(valid, reco, 1.0))
    log_true = np.log10(shower["true_energy"])
    gamma = shower["true_shower_primary_id"] == 0
    corrected = log_reco.copy()
    for fold in (0, 1):
        curve = bias_curve(log_reco, log_true, gamma & valid & (shower["obs_id"] % 2 != fold))
        this_fold = valid & (shower["obs_id"] % 2 == fold)
        corrected[this_fold] = unbiased(log_reco[this_fold], curve)
    new_energy = reco.copy()
    new_energy[valid] = 10 ** corrected[valid]
    new_uncert = energy["CTLearn_energy_uncert"].copy()
    new_uncert[valid] *= new_energy[valid] / reco[valid]
    shutil.copy(args.input, args.output)
    with tables.open_file(args.output, "a") as dl2:
        table = dl2.get_node(ENERGY)
        table.modify_column(colname="CTLearn_energy", column=new_energy)
        table.modify_column(colname="CTLearn_energy_uncert", column=new_uncert)
    for low, high in [(0.1, 0.3), (0.3, 1), (1, 3), (3, 10)]:
        s = gamma & valid & (shower["true_energy"] >= low) & (shower["true_energy"] < high)
        print(f"gammas {low}-{high} TeV: median E_reco/E_true - 1 {np.median(10 ** (log_reco[s] - log_true[s])) - 1:+.3f}"
              f" -> {np.median(10 ** (corrected[s] - log_true[s])) - 1:+.3f}")


if __name__ == "__main__":
    main()
