"""Figures: data in, a matplotlib Figure out (no I/O).

Figures are made without pyplot: importing this module leaves matplotlib's
backend (a notebook's inline one, say) as it was, and figures need no closing.
"""

import astropy.units as u
import numpy as np
from matplotlib.figure import Figure

from ..metrics import roc_curve
from ..physics.evaluation import ENERGY_BINS, NETWORK

__all__ = [
    "plot_binned",
    "plot_coverage",
    "plot_energy_migration",
    "plot_energy_scatter",
    "plot_gammaness",
    "plot_on_off_theta2",
    "plot_reliability",
    "plot_residuals",
    "plot_roc",
    "plot_sky_bias",
    "plot_spectra",
    "plot_theta2",
    "plot_training_curves",
]


def _figure(width=6.4, height=4.4):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _style(label, index):
    if label in (NETWORK, "CNN stereo", "CNN axis fit") or index == 0:
        return dict(lw=2.2, marker="o", ms=4, zorder=3)
    return dict(lw=1.3, marker="s", ms=3, ls="--", alpha=0.85)


def plot_training_curves(logs, title="Training"):
    """``logs``: {label: DataFrame of training_log.csv}; one panel per metric, train solid, validation dashed."""
    metric_names = sorted({c for df in logs.values() for c in df.columns if c not in ("epoch", "lr") and not c.startswith("val_")})
    fig = Figure(figsize=(4.2 * len(metric_names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metric_names), squeeze=False)
    for ax, metric in zip(axes[0], metric_names):
        for i, (label, df) in enumerate(logs.items()):
            color = f"C{i}"
            epochs = df["epoch"] + 1
            ax.plot(epochs, df[metric], color=color, marker="o", ms=3, label=f"{label} training")
            if f"val_{metric}" in df:
                ax.plot(epochs, df[f"val_{metric}"], color=color, ls="--", marker="s", ms=3, label=f"{label} validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle(title)
    return fig


def plot_binned(tables, column, ylabel, title, log_y=False, reference=None):
    """One curve per table (bins of true energy); ``tables`` = {label: QTable}."""
    fig, ax = _figure()
    for i, (label, table) in enumerate(tables.items()):
        center = u.Quantity(table["true_energy_center"], u.TeV).to_value(u.TeV)
        low = u.Quantity(table["true_energy_low"], u.TeV).to_value(u.TeV) if "true_energy_low" in table.colnames else center
        high = u.Quantity(table["true_energy_high"], u.TeV).to_value(u.TeV) if "true_energy_high" in table.colnames else center
        values = u.Quantity(table[column]).value
        ax.errorbar(center, values, xerr=[center - low, high - center], label=label, **_style(label, i))
    if reference is not None:
        ax.axhline(reference, color="gray", lw=0.8)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("true energy / TeV")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def plot_energy_scatter(true_energy, reco_energy, network=NETWORK):
    fig, ax = _figure(5.6, 4.8)
    edges = np.log10(ENERGY_BINS.to_value(u.TeV))
    finite = np.isfinite(reco_energy) & (reco_energy > 0)
    h = ax.hist2d(np.log10(true_energy[finite]), np.log10(reco_energy[finite]), bins=[edges, edges], cmap="viridis", cmin=1)
    fig.colorbar(h[3], ax=ax, label="images")
    ax.plot(edges[[0, -1]], edges[[0, -1]], color="w", lw=1)
    ax.set_xlabel("log10(true energy / TeV)")
    ax.set_ylabel("log10(reconstructed energy / TeV)")
    ax.set_title(f"{network}: reconstructed vs true energy")
    return fig


def plot_energy_migration(true_energy, reco_energy):
    """Migration matrix: P(reco bin | true bin)."""
    fig, ax = _figure(5.6, 4.8)
    edges = np.log10(ENERGY_BINS.to_value(u.TeV))
    finite = np.isfinite(reco_energy) & (reco_energy > 0)
    counts, _, _ = np.histogram2d(np.log10(true_energy[finite]), np.log10(reco_energy[finite]), bins=[edges, edges])
    with np.errstate(invalid="ignore", divide="ignore"):
        probability = counts / counts.sum(axis=1, keepdims=True)
    mesh = ax.pcolormesh(edges, edges, probability.T, cmap="magma", vmin=0, vmax=1)
    fig.colorbar(mesh, ax=ax, label="P(reco bin | true bin)")
    ax.set_xlabel("log10(true energy / TeV)")
    ax.set_ylabel("log10(reconstructed energy / TeV)")
    ax.set_title("energy migration matrix")
    return fig


def plot_roc(curves, title="ROC"):
    """``curves`` = {label: (is_gamma, score)}: background rejection vs gamma efficiency."""
    fig, ax = _figure(5.6, 4.8)
    for i, (label, (is_gamma, score)) in enumerate(curves.items()):
        gamma_eff, background_eff = roc_curve(is_gamma, score)
        style = _style(label, i)
        style.pop("marker"), style.pop("ms")
        ax.plot(gamma_eff, 1 - background_eff, label=label, **style)
    ax.set_xlabel("gamma efficiency")
    ax.set_ylabel("background rejection")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower left")
    return fig


def plot_gammaness(is_gamma, gammaness, network=NETWORK):
    fig, ax = _figure()
    bins = np.linspace(0, 1, 41)
    ax.hist(gammaness[is_gamma], bins=bins, histtype="step", lw=2, density=True, label="gammas")
    ax.hist(gammaness[~is_gamma], bins=bins, histtype="step", lw=2, density=True, label="protons")
    ax.set_xlabel("gammaness")
    ax.set_ylabel("density")
    ax.set_title(f"{network} gammaness")
    ax.legend()
    return fig


def plot_residuals(residuals, unit="deg", network=NETWORK):
    """Histograms of the per-axis residuals (reconstructed - true)."""
    fig, ax = _figure()
    values = np.concatenate([v[np.isfinite(v)] for v in residuals.values()])
    limit = np.quantile(np.abs(values), 0.98) if len(values) else 1
    bins = np.linspace(-limit, limit, 61)
    for name, value in residuals.items():
        ax.hist(value[np.isfinite(value)], bins=bins, histtype="step", lw=2, label=f"{name}: median {np.nanmedian(value):+.3f}")
    ax.set_xlabel(f"reconstructed - true / {unit}")
    ax.set_ylabel("images")
    ax.set_title(f"{network} residuals")
    ax.legend(fontsize="small")
    return fig


def plot_theta2(thetas, title="theta^2"):
    """``thetas`` = {label: theta in deg}."""
    fig, ax = _figure()
    all_theta2 = np.concatenate([t[np.isfinite(t)] ** 2 for t in thetas.values()])
    limit = np.quantile(all_theta2, 0.95) if len(all_theta2) else 1
    bins = np.linspace(0, limit, 41)
    for i, (label, theta) in enumerate(thetas.items()):
        ax.hist(theta[np.isfinite(theta)] ** 2, bins=bins, histtype="step", lw=2.2 if i == 0 else 1.3, label=label)
    ax.set_xlabel("theta^2 / deg^2")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_sky_bias(table, network=NETWORK):
    fig, ax = _figure()
    center = u.Quantity(table["true_energy_center"], u.TeV).to_value(u.TeV)
    for name in table.colnames[1:]:
        ax.plot(center, np.asarray(table[name], dtype=float), marker="o", label=name)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("true energy / TeV")
    ax.set_ylabel("median (reconstructed - true) / deg")
    ax.set_title(f"{network} direction bias")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_coverage(tables, level=0.68, min_events=20, tolerance=0.05, quantity="direction"):
    """``tables`` = {label: coverage_per_energy_bin table}: observed coverage of the stated 68 % radius (of a
    ``quantity`` "direction") or interval (of an "energy") per bin (bins of ``min_events`` or more; the band:
    ``level`` +- ``tolerance``)."""
    fig, ax = _figure()
    for i, (label, table) in enumerate(tables.items()):
        center = u.Quantity(table["true_energy_center"], u.TeV).to_value(u.TeV)
        enough = np.asarray(table["n_events"]) >= min_events
        ax.errorbar(center[enough], np.asarray(table["coverage"], dtype=float)[enough],
                    yerr=np.asarray(table["coverage_error"], dtype=float)[enough], label=label, **_style(label, i))
    ax.axhspan(level - tolerance, level + tolerance, color="gray", alpha=0.2, label=f"{level:.2f} +- {tolerance}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("true energy / TeV")
    ax.set_ylabel(f"fraction within the stated 68 % {'radius' if quantity == 'direction' else 'interval'}")
    ax.set_title(f"Coverage of the per-event {quantity} uncertainty")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_reliability(curves, quantity="direction"):
    """``curves`` = {label: (expected, observed)} containment: the diagonal is a calibrated uncertainty."""
    fig, ax = _figure(5.2, 4.8)
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--", label="calibrated")
    for i, (label, (expected, observed)) in enumerate(curves.items()):
        ax.plot(expected, observed, label=label, **_style(label, i))
    ax.set_xlabel("expected containment (stated " + ("radius scaled as a 2-d" if quantity == "direction"
                                                     else "interval scaled as a 1-d") + " Gaussian)")
    ax.set_ylabel("observed containment")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Reliability of the per-event {quantity} uncertainty")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_spectra(spectra, injected, title="Spectral energy distribution"):
    """E^2 dN/dE of fitted spectra against the injected one.

    ``spectra`` = {label: (sed, (energy, e2dnde, error))}: the flux points
    (QTable: e_ref, e2dnde, e2dnde_err, is_ul, e2dnde_ul) and the fitted model
    with its 1-sigma band; ``injected`` = (label, energy, e2dnde).
    """
    fig, ax = _figure(7.2, 4.8)
    unit = u.Unit("erg cm-2 s-1")
    label, energy, e2dnde = injected
    ax.plot(u.Quantity(energy, u.TeV).value, u.Quantity(e2dnde, unit).value, color="k", lw=1.5, ls=":", label=label)
    for i, (name, (sed, (model_energy, value, error))) in enumerate(spectra.items()):
        color = f"C{i}"
        x, y, err = (u.Quantity(model_energy, u.TeV).value, u.Quantity(value, unit).value,
                     u.Quantity(error, unit).value)
        ax.plot(x, y, color=color, lw=1.6, label=f"{name}: fitted power law")
        # (on a log axis: a lower edge below zero is drawn at a hundredth of the fit)
        ax.fill_between(x, np.clip(y - err, 0.01 * y, None), y + err, color=color, alpha=0.2)
        points = ~np.asarray(sed["is_ul"]) & np.isfinite(u.Quantity(sed["e2dnde"], unit).value)
        e_ref = u.Quantity(sed["e_ref"], u.TeV).value
        ax.errorbar(e_ref[points] * (1 + 0.03 * i), u.Quantity(sed["e2dnde"], unit).value[points],
                    yerr=u.Quantity(sed["e2dnde_err"], unit).value[points], color=color, fmt="o", ms=4,
                    label=f"{name}: flux points")
        limits = np.asarray(sed["is_ul"]) & np.isfinite(u.Quantity(sed["e2dnde_ul"], unit).value)
        ax.errorbar(e_ref[limits] * (1 + 0.03 * i), u.Quantity(sed["e2dnde_ul"], unit).value[limits],
                    yerr=0.3 * u.Quantity(sed["e2dnde_ul"], unit).value[limits], uplims=True, color=color, fmt="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("E / TeV")
    ax.set_ylabel("E^2 dN/dE / (erg cm^-2 s^-1)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_on_off_theta2(counts, cut=None, title="theta^2 to the source (ON) and the reflected position (OFF)"):
    """``counts`` = {label: (theta_on, theta_off)} in deg, events after the gammaness cuts; ``cut``: the
    largest theta cut (deg), marked."""
    fig, ax = _figure()
    limit = 0.3 if cut is None else max(0.3, 2 * float(cut) ** 2)
    bins = np.linspace(0, limit, 31)
    for i, (label, (on, off)) in enumerate(counts.items()):
        color = f"C{i}"
        ax.hist(np.asarray(on) ** 2, bins=bins, histtype="step", lw=2, color=color, label=f"{label}: ON")
        ax.hist(np.asarray(off) ** 2, bins=bins, histtype="stepfilled", alpha=0.25, color=color,
                label=f"{label}: OFF")
    if cut is not None:
        ax.axvline(float(cut) ** 2, color="k", ls=":", lw=1, label="largest theta cut")
    ax.set_xlabel("theta^2 / deg^2")
    ax.set_ylabel("events")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig
