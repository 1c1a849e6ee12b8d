"""Tables and figures of IRF results (``physics.irf``): sensitivity curves, effective area, resolutions, cuts."""

import astropy.units as u
import numpy as np
from astropy.table import Table, vstack
from matplotlib.figure import Figure
from pyirf.binning import bin_center

from ..metrics.coverage import COVERAGE_LEVEL

__all__ = ["COMPARED_RANGE", "COVERAGE_TOLERANCE", "GATE_TOLERANCE", "MIN_COVERAGE_EVENTS", "RESOLUTION_RANGE",
           "coverage_summary", "irf_figures", "resolution_summary", "sensitivity_gate", "sensitivity_records",
           "sensitivity_summary", "plot_sensitivity"]

#: the energy range the CNN and the classical sensitivities are compared in (bin centres)
COMPARED_RANGE = (0.05 * u.TeV, 10 * u.TeV)
#: a bin counts in the comparison when both reconstructions have this many simulated gammas after the cuts
MIN_GAMMA_EVENTS = 10
#: a bin's sensitivity is compared only where its background is measured: so many proton events (unweighted) in the
#: background region after the cuts (10 events: the background known to about 30 %)
MIN_PROTON_EVENTS = 10


#: the true-energy range the array-level resolutions are compared in (bin centres), and the gammas a bin needs
RESOLUTION_RANGE = (0.1 * u.TeV, 10 * u.TeV)
MIN_RESOLUTION_EVENTS = 20

#: a bin's coverage is judged with this many gammas (binomial error of 0.68 at most 0.047), and within this of 0.68
MIN_COVERAGE_EVENTS = 100
COVERAGE_TOLERANCE = 0.05

#: the physics gate's default: a bin fails when its sensitivity is more than this fraction worse than the reference's
GATE_TOLERANCE = 0.10


def _counted_rows(records):
    """Rows of a sensitivity.csv table whose bin counts (``_counted_bins``, the verdict's rule)."""
    return _counted_bins(u.Quantity(records["reco_energy_low_tev"], u.TeV),
                         u.Quantity(records["reco_energy_high_tev"], u.TeV), records)


def _measured_bins(counts):
    """Bins with a finite sensitivity on MIN_GAMMA_EVENTS gammas (``counts``: the relative_sensitivity and
    n_gamma_events columns)."""
    return (np.isfinite(np.asarray(counts["relative_sensitivity"], dtype=float))
            & (np.asarray(counts["n_gamma_events"]) >= MIN_GAMMA_EVENTS))


def _counted_bins(low, high, counts):
    """Measured bins (``_measured_bins``) centred in COMPARED_RANGE with MIN_PROTON_EVENTS protons (``counts``
    also has the n_proton_events_in_ring column)."""
    center = np.sqrt(low * high)
    return ((center >= COMPARED_RANGE[0]) & (center <= COMPARED_RANGE[1]) & _measured_bins(counts)
            & (np.asarray(counts["n_proton_events_in_ring"]) >= MIN_PROTON_EVENTS))


def sensitivity_gate(new, reference, reconstruction="CNN", tolerance=GATE_TOLERANCE):
    """Compare one reconstruction's sensitivity in two sensitivity.csv tables, bin by bin.

    Every bin counted in ``reference`` (the reconstruction's own counts:
    ``COMPARED_RANGE``, ``MIN_GAMMA_EVENTS`` gammas, ``MIN_PROTON_EVENTS``
    protons) is checked: it fails where ``new`` is more than ``tolerance`` (a
    fraction) worse, or has no finite sensitivity on ``MIN_GAMMA_EVENTS``
    gammas there (fewer protons left by a better background rejection do
    not fail it).  Returns one dict per checked bin (``failed`` says which
    failed); ValueError if either table lacks the reconstruction.
    """
    rows = {}
    for name, records in (("new", new), ("reference", reference)):
        mine = records[np.asarray(records["reconstruction"]) == reconstruction]
        if len(mine) == 0:
            raise ValueError(f"the {name} IRF output has no reconstruction {reconstruction!r} (it has "
                             f"{', '.join(dict.fromkeys(np.asarray(records['reconstruction'])))})")
        rows[name] = mine
    new_by_bin = {round(float(r["reco_energy_low_tev"]), 6): (r, bool(c))
                  for r, c in zip(rows["new"], _measured_bins(rows["new"]))}
    checked = []
    for row, counted in zip(rows["reference"], _counted_rows(rows["reference"])):
        if not counted:
            continue
        reference_value = float(row["relative_sensitivity"])
        found = new_by_bin.get(round(float(row["reco_energy_low_tev"]), 6))
        new_value = float(found[0]["relative_sensitivity"]) if found and found[1] else float("nan")
        ratio = new_value / reference_value if np.isfinite(new_value) else float("nan")
        checked.append({"reco_energy_low_tev": float(row["reco_energy_low_tev"]),
                        "reco_energy_high_tev": float(row["reco_energy_high_tev"]),
                        "reference": reference_value, "new": new_value, "ratio": ratio,
                        "failed": not (np.isfinite(ratio) and ratio <= 1 + tolerance)})
    return checked


def _figure(width=6.4, height=4.4):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def sensitivity_records(results):
    """One row per reconstruction and bin of reconstructed energy, with the event counts behind it."""
    parts = []
    for label, result in results.items():
        s = result.sensitivity
        part = Table({
            "reconstruction": [label] * len(s),
            "reco_energy_low_tev": s["reco_energy_low"].to_value(u.TeV),
            "reco_energy_high_tev": s["reco_energy_high"].to_value(u.TeV),
            "n_gamma_events": np.asarray(s["n_gamma_events"]),
            "n_gamma_weighted": np.asarray(s["n_gamma_weighted"]),
            "n_proton_events_in_ring": np.asarray(s["n_proton_events_in_ring"]),
            "n_background_on_weighted": np.asarray(s["n_background_on_weighted"]),
            "significance": np.asarray(s["significance"]),
            "relative_sensitivity": np.asarray(s["relative_sensitivity"]),
            "flux_sensitivity_per_tev_cm2_s": s["flux_sensitivity"].to_value(1 / (u.TeV * u.cm ** 2 * u.s)),
            "e2_flux_sensitivity_erg_per_cm2_s": s["e2_flux_sensitivity"].to_value(u.erg / (u.cm ** 2 * u.s)),
            "theta_cut_deg": u.Quantity(s["theta_cut"]).to_value(u.deg),
            "gh_cut": np.asarray(s["gh_cut"]),
        })
        parts.append(part)
    return vstack(parts)


def _comparable(result):
    s = result.sensitivity
    return _counted_bins(s["reco_energy_low"], s["reco_energy_high"], s)


def _comparison(network, classical, low, high):
    """The bins where both sensitivities rest on enough events, with the ratio network / classical in each."""
    both = _comparable(network) & _comparable(classical)
    with np.errstate(divide="ignore", invalid="ignore"):  # bins without events are inf in both: left out below
        ratio = np.asarray(network.sensitivity["relative_sensitivity"], dtype=float) / np.asarray(
            classical.sensitivity["relative_sensitivity"], dtype=float)
    return [{"reco_energy_low_tev": low[i], "reco_energy_high_tev": high[i], "ratio": float(ratio[i])}
            for i in np.flatnonzero(both)]


def sensitivity_summary(results, classical="classical"):
    """Per-bin ratios of each network reconstruction's sensitivity to the classical one, and the verdicts.

    The first network reconstruction (``CNN``) gives the headline numbers
    (``bins_compared``, ``fraction_of_bins_network_better``); every one is in
    ``comparisons`` and in the verdict.
    """
    networks = [label for label in results if label != classical]
    first = next(iter(results.values())).sensitivity
    low = first["reco_energy_low"].to_value(u.TeV)
    high = first["reco_energy_high"].to_value(u.TeV)
    comparisons = {label: _comparison(results[label], results[classical], low, high)
                   for label in networks if classical in results}
    header = ["E_reco / TeV", *results, *(f"{label} / {classical}" for label in comparisons)]
    rows = []
    for i in range(len(first)):
        ratios = []
        for compared in comparisons.values():
            match = [c["ratio"] for c in compared if c["reco_energy_low_tev"] == low[i]]
            ratios.append(match[0] if match else np.nan)
        rows.append([f"{low[i]:.3g}-{high[i]:.3g}",
                     *(float(r.sensitivity["relative_sensitivity"][i]) for r in results.values()), *ratios])
    criteria = (f"bins of reconstructed energy between {COMPARED_RANGE[0]:.2g} and {COMPARED_RANGE[1]:.2g} with at "
                f"least {MIN_GAMMA_EVENTS} gammas and {MIN_PROTON_EVENTS} protons in the background region after "
                "the cuts of both")
    verdicts, fractions = [], {}
    for label, compared in comparisons.items():
        if not compared:
            fractions[label] = None
            verdicts.append(f"{label}: no bin to compare with {classical}")
            continue
        ratios = np.asarray([c["ratio"] for c in compared])
        better = int(np.sum(ratios < 1))
        fractions[label] = better / len(ratios)
        verdicts.append(f"{label} sensitivity better (lower flux) than {classical} in {better} of {len(ratios)} "
                        f"bins, median ratio {np.median(ratios):.2f}")
    headline = networks[0] if networks and comparisons else None
    return {
        "table": (header, rows),
        "comparisons": comparisons,
        "bins_compared": comparisons.get(headline, []),
        "fraction_of_bins_network_better": fractions.get(headline),
        "fraction_of_bins_better": fractions,
        "verdict": ("; ".join(verdicts) + f" ({criteria})." if verdicts
                    else f"no classical reconstruction to compare with ({criteria})"),
    }


def _true_energy_edges(table, i):
    """The JSON edges of bin ``i`` of a per-true-energy table (``true_energy_low``/``_high``)."""
    return {"true_energy_low_tev": float(u.Quantity(table["true_energy_low"][i], u.TeV).value),
            "true_energy_high_tev": float(u.Quantity(table["true_energy_high"][i], u.TeV).value)}


def resolution_summary(results, classical="classical", same_events=None):
    """Array-level angular and energy resolution of each network reconstruction against the classical one.

    Per bin of true energy with its centre in ``RESOLUTION_RANGE`` and at
    least ``MIN_RESOLUTION_EVENTS`` gammas for both (each after its own
    gammaness cut; energy: pyirf's resolution of the selected gammas), the
    ratio network / classical; ``fraction_at_or_below``: the bins where the
    network's resolution is at or below the classical one's.
    ``same_events``: {label: (network, classical) angular_resolution tables}
    of both on the same gammas before any cut
    (``physics.irf.same_event_angular_resolution``), compared the same way.
    """
    same_events = same_events or {}
    if classical not in results:
        return {}
    measures = {
        "angular_resolution_68_deg": lambda r: (r.angular_resolution,
                                                u.Quantity(r.angular_resolution["angular_resolution_68"]).to_value(u.deg)),
        "energy_resolution": lambda r: (r.energy_bias_resolution,
                                        np.asarray(r.energy_bias_resolution["resolution"], dtype=float)),
    }
    summary = {}
    for label, result in results.items():
        if label == classical:
            continue
        summary[label] = {}
        pairs = {name: (measure(result), measure(results[classical])) for name, measure in measures.items()}
        if label in same_events:
            pairs["angular_resolution_68_deg_same_events"] = tuple(
                (t, u.Quantity(t["angular_resolution_68"]).to_value(u.deg)) for t in same_events[label])
        for name, ((table, mine), (other_table, theirs)) in pairs.items():
            center = u.Quantity(table["true_energy_center"], u.TeV)
            enough = ((center >= RESOLUTION_RANGE[0]) & (center <= RESOLUTION_RANGE[1])
                      & (np.asarray(table["n_events"]) >= MIN_RESOLUTION_EVENTS)
                      & (np.asarray(other_table["n_events"]) >= MIN_RESOLUTION_EVENTS)
                      & np.isfinite(mine) & np.isfinite(theirs))
            bins = [{**_true_energy_edges(table, i), "network": float(mine[i]), "classical": float(theirs[i]),
                     "ratio": float(mine[i] / theirs[i])} for i in np.flatnonzero(enough)]
            summary[label][name] = {
                "bins": bins,
                "fraction_at_or_below": (sum(b["ratio"] <= 1 for b in bins) / len(bins)) if bins else None,
            }
    return summary


def coverage_summary(tables, level=COVERAGE_LEVEL):
    """The coverage of each reconstruction's stated 68 % direction radius or energy interval, JSON-ready.

    ``tables``: {label: ``physics.irf.direction_coverage`` or ``energy_coverage`` table}.  Per bin of
    true energy with its centre in ``RESOLUTION_RANGE`` and at least
    ``MIN_COVERAGE_EVENTS`` gammas; ``within_tolerance``: the bins within
    ``COVERAGE_TOLERANCE`` of ``level``.
    """
    summary = {}
    for label, table in tables.items():
        center = u.Quantity(table["true_energy_center"], u.TeV)
        enough = ((center >= RESOLUTION_RANGE[0]) & (center <= RESOLUTION_RANGE[1])
                  & (np.asarray(table["n_events"]) >= MIN_COVERAGE_EVENTS))
        bins = [{**_true_energy_edges(table, i), "n_events": int(table["n_events"][i]),
                 "coverage": float(table["coverage"][i]), "coverage_error": float(table["coverage_error"][i])}
                for i in np.flatnonzero(enough)]
        summary[label] = {"bins": bins, "n_bins": len(bins),
                          "within_tolerance": sum(abs(b["coverage"] - level) <= COVERAGE_TOLERANCE for b in bins)}
    return summary


def _style(i):
    return dict(lw=2.2 if i == 0 else 1.4, marker="o" if i == 0 else "s", ms=4, ls="-" if i == 0 else "--")


def plot_sensitivity(curves, title="Point-source sensitivity"):
    """``curves``: {label: sensitivity QTable}; E^2 F against reconstructed energy, Crab fractions for scale."""
    fig, ax = _figure()
    for i, (label, s) in enumerate(curves.items()):
        center = np.sqrt(s["reco_energy_low"] * s["reco_energy_high"]).to_value(u.TeV)
        finite = np.isfinite(np.asarray(s["relative_sensitivity"], dtype=float))
        ax.errorbar(center[finite], s["e2_flux_sensitivity"].to_value(u.erg / (u.cm ** 2 * u.s))[finite],
                    xerr=[(center - s["reco_energy_low"].to_value(u.TeV))[finite],
                          (s["reco_energy_high"].to_value(u.TeV) - center)[finite]], label=label, **_style(i))
    from pyirf.spectral import CRAB_HEGRA

    energy = np.geomspace(0.03, 30, 100) * u.TeV
    for fraction in (1, 0.1, 0.01):
        ax.plot(energy, (fraction * CRAB_HEGRA(energy) * energy ** 2).to_value(u.erg / (u.cm ** 2 * u.s)),
                color="gray", lw=0.7, ls=":")
        ax.annotate(f"{fraction:g} Crab", (energy[-1].value, (fraction * CRAB_HEGRA(energy[-1]) * energy[-1] ** 2)
                                           .to_value(u.erg / (u.cm ** 2 * u.s))), fontsize="x-small", color="gray")
    ax.set(xscale="log", yscale="log", xlabel="reconstructed energy / TeV", ylabel="E² F / (erg cm⁻² s⁻¹)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def _per_true_energy(results, getter, ylabel, title, log_y=False):
    fig, ax = _figure()
    for i, (label, result) in enumerate(results.items()):
        x, y = getter(result)
        ax.plot(x, y, label=label, **_style(i))
    ax.set(xscale="log", xlabel="true energy / TeV", ylabel=ylabel, title=title)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def irf_figures(results):
    """[(name, figure, caption)] of the IRF report."""
    figures = [("sensitivity", plot_sensitivity({label: r.sensitivity for label, r in results.items()}),
                "Point-source sensitivity (E² F, 5 sigma, pyirf's criteria) per bin of reconstructed energy; dotted: "
                "fractions of the Crab (HEGRA).")]
    figures.append(("effective_area", _per_true_energy(
        results, lambda r: (bin_center(r.bins["true_energy"]).to_value(u.TeV), r.effective_area.to_value(u.m ** 2)),
        "effective area / m²", "Effective area after gammaness and theta cuts", log_y=True),
        "Effective area of the point-like gammas after the cuts."))
    figures.append(("angular_resolution", _per_true_energy(
        results, lambda r: (r.angular_resolution["true_energy_center"].to_value(u.TeV),
                            u.Quantity(r.angular_resolution["angular_resolution_68"]).to_value(u.deg)),
        "68% containment / deg", "Angular resolution (after the gammaness cut)"),
        "Angular resolution of the array events per bin of true energy."))
    figures.append(("energy_resolution", _per_true_energy(
        results, lambda r: (r.energy_bias_resolution["true_energy_center"].to_value(u.TeV),
                            np.asarray(r.energy_bias_resolution["resolution"])),
        "energy resolution (68%)", "Energy resolution (after the cuts)"),
        "Energy resolution of the array events per bin of true energy (pyirf)."))
    figures.append(("energy_bias", _per_true_energy(
        results, lambda r: (r.energy_bias_resolution["true_energy_center"].to_value(u.TeV),
                            np.asarray(r.energy_bias_resolution["bias"])),
        "energy bias (median)", "Energy bias (after the cuts)"), "Median of E_reco/E_true - 1."))
    fig = Figure(figsize=(10, 4), layout="constrained")
    gh_ax, theta_ax = fig.subplots(1, 2)
    for i, (label, r) in enumerate(results.items()):
        center = bin_center(r.bins["reco_energy"]).to_value(u.TeV)
        gh_ax.plot(center, np.asarray(r.gh_cuts["cut"]), label=label, **_style(i))
        theta_ax.plot(center, u.Quantity(r.theta_cuts["cut"]).to_value(u.deg), label=label, **_style(i))
    gh_ax.set(xscale="log", xlabel="reconstructed energy / TeV", ylabel="gammaness cut", title="Gammaness cut")
    theta_ax.set(xscale="log", xlabel="reconstructed energy / TeV", ylabel="theta cut / deg", title="Theta cut")
    for ax in (gh_ax, theta_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    figures.append(("cuts", fig, "The cuts per bin of reconstructed energy."))
    return figures
