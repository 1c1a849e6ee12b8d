"""The figures and tables of one task's evaluation, shared by the run report and the comparison."""

from ..physics.evaluation import LOWER_IS_BETTER, TaskEvaluation, best_baseline
from . import plots

__all__ = ["BINNED_CURVES", "headline_table", "network_beats", "task_figures"]

#: per task: (column of the binned tables, y label, title, log y) of the main curve vs energy
BINNED_CURVES = {
    "energy": [("resolution", "energy resolution (68%, after bias)", "Energy resolution", False),
               ("bias", "energy bias (median of E_reco/E_true - 1)", "Energy bias", False)],
    "type": [("auc", "AUC", "AUC per bin of true energy", False)],
    "cameradirection": [("angular_resolution_68", "68% containment / deg", "Camera-direction resolution", False)],
    "skydirection": [("angular_resolution_68", "68% containment / deg", "Angular resolution", False)],
}


def headline_table(evaluation: TaskEvaluation):
    """(header, rows): one row per headline metric, one column per method."""
    methods = evaluation.methods
    rows = []
    for metric, values in evaluation.headline.items():
        rows.append([metric] + [values.get(m, float("nan")) for m in methods])
    return ["metric"] + methods, rows


def task_figures(evaluation: TaskEvaluation, name_prefix=""):
    """[(name, figure, caption)] for the run report (figure names start with ``name_prefix``)."""
    task = evaluation.task
    network = evaluation.network
    figures = []
    for column, ylabel, title, log_y in BINNED_CURVES[task]:
        reference = 0.0 if column == "bias" else None
        tables = evaluation.binned
        caption = f"{title} per bin of true energy; {network} next to the classical baselines on the same events."
        if column == "resolution":
            # inside one energy bin a constant predictor has no spread, only bias: its resolution says nothing
            tables = {m: t for m, t in tables.items() if m != "median predictor"}
            caption += " The median predictor is shown in the bias figure (per bin it is a constant)."
        figures.append((f"{task}_{column}_vs_energy", plots.plot_binned(
            tables, column, ylabel, f"{title}: {network} and baselines", log_y, reference), caption))
    arrays = evaluation.arrays
    if task == "energy":
        figures.append(("energy_reco_vs_true", plots.plot_energy_scatter(arrays["true_energy"], arrays["reco_energy"],
                                                                         network),
                        "Reconstructed vs true energy (images)."))
        figures.append(("energy_migration", plots.plot_energy_migration(arrays["true_energy"], arrays["reco_energy"]),
                        "Migration matrix: probability of each reconstructed-energy bin for each true-energy bin."))
    elif task == "type":
        curves = {method: (arrays["is_gamma"], score) for method, score in arrays["scores"].items()}
        figures.append(("type_roc", plots.plot_roc(curves, "Gamma efficiency vs background rejection"),
                        "ROC: background rejection vs gamma efficiency for the network and Hillas-parameter cuts."))
        figures.append(("type_gammaness", plots.plot_gammaness(arrays["is_gamma"], arrays["scores"][network], network),
                        "Gammaness of gammas and protons."))
    else:
        unit = "deg"
        figures.append((f"{task}_residuals", plots.plot_residuals(arrays["residuals"], unit, network),
                        "Residuals of the network (reconstructed - true) in the field of view around the pointing, "
                        "in degrees."))
        figures.append((f"{task}_theta2", plots.plot_theta2(arrays["theta"], "theta^2: network and baselines"),
                        "Squared angular distance to the true direction."))
        if task == "skydirection":
            figures.append(("skydirection_bias", plots.plot_sky_bias(arrays["bias"], network),
                            "Median bias in altitude and in azimuth (times cos alt) per bin of true energy."))
    if "coverage" in arrays:
        quantity, stated, column, gaussian = \
            ("energy", "interval", "energy_uncert: a factor 1 + energy_uncert / energy either way", "1-d") \
            if task == "energy" else ("direction", "radius", "ang_distance_uncert", "2-d")
        figures.append((f"{task}_uncertainty_coverage", plots.plot_coverage(arrays["coverage"], quantity=quantity),
                        f"Fraction of the events whose true {quantity} lies within the event's stated 68 % {stated} "
                        f"({column}), per bin of true energy (bins of 20 events or more); calibrated: 0.68."))
        figures.append((f"{task}_uncertainty_reliability", plots.plot_reliability(arrays["reliability"], quantity),
                        f"Observed against expected containment, the stated {stated} scaled to each level as for a "
                        f"{gaussian} Gaussian error."))
    return [(f"{name_prefix}{name}", fig, caption) for name, fig, caption in figures]


def network_beats(evaluation: TaskEvaluation):
    """{metric: True/False}: is the network better than every baseline on that headline metric?"""
    verdict = {}
    network = evaluation.network
    for metric, values in evaluation.headline.items():
        best = best_baseline(values, metric, network)
        if network not in values or best is None or metric.startswith("bias"):
            continue
        lower = metric in LOWER_IS_BETTER
        verdict[metric] = bool(values[network] < values[best]) if lower else bool(values[network] > values[best])
    return verdict
