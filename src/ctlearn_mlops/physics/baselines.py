"""Classical reconstructions on the same events as the network.

Every baseline with free parameters is fitted on the run's training images
when the DL2 file carries them (``training``, written by the predict tool),
as the network was.  Without them it is fitted by two-fold cross-fitting over
the test showers (the parameters applied to a shower never saw it).  Either
way a baseline is never flattered by fitting on the events it is scored on.

The "Hillas BDT" baselines are the classical mono reconstruction of IACT
analyses (random forests or boosted trees on the image parameters, as in
lstchain): gradient-boosted trees on intensity, width, length, distance,
skewness, leakage, pixel count and the time gradient.
"""

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from ctapipe.coordinates import TelescopeFrame
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..showers import shower_keys

__all__ = [
    "bdt_disp_direction",
    "bdt_disp_theta",
    "bdt_energy",
    "bdt_gamma_score",
    "centroid_theta",
    "disp_theta",
    "gamma_images",
    "has_training",
    "head_tail_sign",
    "hillas_logistic_score",
    "intensity_fit_energy",
    "median_energy",
    "shower_folds",
    "true_source_telescope_frame",
    "width_score",
]


def _shower_reuse(table):
    return np.asarray(table["shower_reuse"]) if "shower_reuse" in table.colnames else 1


def shower_folds(dl2):
    """0/1 fold of each image; all images of a shower (and all reuses of a CORSIKA shower) share the fold."""
    keys = shower_keys(dl2["obs_id"], dl2["event_id"], _shower_reuse(dl2))
    key = keys["obs_id"] * 1_000_003 + keys["shower"]
    return (np.bitwise_xor(key, key >> 7) * 2654435761 % 2**32 >> 16) % 2


def has_training(training):
    """Whether ``training`` holds images to fit on (else the baselines cross-fit over the test showers)."""
    return training is not None and len(training) > 0


def gamma_images(table):
    """The gamma images of a table (energy and direction are fitted on gammas only)."""
    if table is None or "true_shower_primary_id" not in table.colnames:
        return table
    return table[_is_gamma(table)]


def _fit_and_apply(dl2, training, fit, apply):
    """apply(fit(table), dl2): fitted on ``training`` if given, else on the other fold of dl2's showers."""
    if has_training(training):
        return np.asarray(apply(fit(training), dl2), dtype=float)
    folds = shower_folds(dl2)
    out = np.full(len(dl2), np.nan)
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        if train.any() and test.any():
            out[test] = apply(fit(dl2[train]), dl2[test])
    return out


def _values(table, column, unit=None):
    quantity = u.Quantity(table[column])
    return np.asarray(quantity.to_value(unit) if unit is not None else quantity.value, dtype=float)


def _log_energy(table):
    return np.log10(_values(table, "true_energy", u.TeV))


def _log_intensity(table):
    return np.log10(np.clip(_values(table, "hillas_intensity"), 1e-3, None))


def _is_gamma(table):
    return np.asarray(table["true_shower_primary_id"]) == 0


def median_energy(dl2, training=None):
    """Each image predicted at the median true energy of the training gamma images (TeV)."""
    return 10 ** _fit_and_apply(
        dl2, gamma_images(training), lambda table: np.median(_log_energy(table)), lambda median, table: np.full(len(table), median),
    )


def intensity_fit_energy(dl2, training=None):
    """log10 E = a + b log10(intensity), fitted on the training gamma images (TeV)."""
    return 10 ** _fit_and_apply(
        dl2, gamma_images(training),
        lambda table: np.polyfit(_log_intensity(table), _log_energy(table), 1),
        lambda line, table: np.polyval(line, _log_intensity(table)),
    )


def true_source_telescope_frame(dl2):
    """(fov_lon, fov_lat) in deg of the true direction, in each telescope's frame."""
    pointing = SkyCoord(
        alt=u.Quantity(dl2["pointing_altitude"]), az=u.Quantity(dl2["pointing_azimuth"]), frame=AltAz(),
    )
    source = SkyCoord(alt=u.Quantity(dl2["true_alt"]), az=u.Quantity(dl2["true_az"]), frame=AltAz())
    source = source.transform_to(TelescopeFrame(telescope_pointing=pointing))
    return source.fov_lon.to_value(u.deg), source.fov_lat.to_value(u.deg)


def _centroid(dl2):
    return _values(dl2, "hillas_fov_lon", u.deg), _values(dl2, "hillas_fov_lat", u.deg)


def centroid_theta(dl2):
    """Distance (deg) between the Hillas centroid and the true direction (nothing to fit)."""
    true_lon, true_lat = true_source_telescope_frame(dl2)
    lon, lat = _centroid(dl2)
    return np.hypot(lon - true_lon, lat - true_lat)


def head_tail_sign(dl2):
    """+1 or -1 per image: which way along the major axis (psi) the shower develops.

    From the sign of the time gradient along the axis, where the image has one;
    else from the sign of the skewness.  The convention that turns it into "the
    source is on this side" is fitted by the caller.
    """
    slope = _values(dl2, "timing_slope") if "timing_slope" in dl2.colnames else np.zeros(len(dl2))
    sign = np.sign(np.nan_to_num(slope))
    skewness = np.sign(np.nan_to_num(_values(dl2, "hillas_skewness")))
    # time gradient and skewness agree on a developing shower only up to a
    # convention, taken from the images that have both (no truth needed)
    both = (sign != 0) & (skewness != 0)
    agreement = np.median(sign[both] * skewness[both]) if both.any() else 1.0
    sign = np.where(sign == 0, skewness * (1.0 if agreement >= 0 else -1.0), sign)
    return np.where(sign == 0, 1.0, sign)


def _source_along_axis(table):
    """Distance of the true source from the centroid, and its signed offset along the major axis (deg)."""
    true_lon, true_lat = true_source_telescope_frame(table)
    lon, lat = _centroid(table)
    psi = _values(table, "hillas_psi", u.rad)
    along = (true_lon - lon) * np.cos(psi) + (true_lat - lat) * np.sin(psi)
    return np.hypot(true_lon - lon, true_lat - lat), along


def _disp_position(table, signed_disp):
    """(fov_lon, fov_lat) in deg of centroid + signed_disp along the major axis, in the telescope frame."""
    lon, lat = _centroid(table)
    psi = _values(table, "hillas_psi", u.rad)
    return lon + signed_disp * np.cos(psi), lat + signed_disp * np.sin(psi)


def _theta_from_disp(table, signed_disp):
    """Distance (deg) between the true source and centroid + signed_disp along the major axis."""
    true_lon, true_lat = true_source_telescope_frame(table)
    lon, lat = _disp_position(table, signed_disp)
    return np.hypot(lon - true_lon, lat - true_lat)


def _elongation(table):
    width, length = _values(table, "hillas_width", u.deg), _values(table, "hillas_length", u.deg)
    return np.clip(1 - width / np.where(length > 0, length, np.nan), 1e-3, None)


def disp_theta(dl2, training=None):
    """Distance (deg) between the disp estimate and the true direction.

    disp = xi (1 - width/length) along the major axis from the centroid; the
    side comes from the head-tail sign (time gradient, else skewness).  xi and
    the sign convention are fitted on the training images.
    """
    def fit(table):
        distance, along = _source_along_axis(table)
        xi = np.nanmedian(distance / _elongation(table))
        side = np.nanmedian(np.sign(along) * head_tail_sign(table))
        return xi, 1.0 if side >= 0 else -1.0

    def apply(params, table):
        xi, side = params
        return _theta_from_disp(table, xi * _elongation(table) * side * head_tail_sign(table))

    return _fit_and_apply(dl2, gamma_images(training), fit, apply)


def width_score(dl2):
    """Gamma-likeness from a cut on the Hillas width alone (narrower = more gamma-like; nothing to fit)."""
    return -_values(dl2, "hillas_width", u.deg)


def _gamma_score(dl2, training, make_classifier, features):
    """Gamma-class probability of a classifier fitted on ``features`` of the training images."""
    def fit(table):
        if len(np.unique(_is_gamma(table))) < 2:
            return None
        return make_classifier().fit(features(table), _is_gamma(table))

    def apply(model, table):
        return np.full(len(table), np.nan) if model is None else model.predict_proba(features(table))[:, 1]

    return _fit_and_apply(dl2, training, fit, apply)


def _logistic_features(table):
    return np.nan_to_num(np.column_stack([
        _values(table, "hillas_width", u.deg), _values(table, "hillas_length", u.deg),
        _log_intensity(table), _values(table, "hillas_skewness"),
    ]))


def hillas_logistic_score(dl2, training=None):
    """Logistic regression on width, length, log intensity and skewness, fitted on the training images."""
    return _gamma_score(
        dl2, training, lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), _logistic_features,
    )


def _hillas_features(table):
    """Image parameters of every image as a feature matrix for the BDT baselines."""
    columns = [
        _log_intensity(table),
        _values(table, "hillas_width", u.deg),
        _values(table, "hillas_length", u.deg),
        _values(table, "hillas_r", u.deg),
        _values(table, "hillas_skewness"),
    ]
    for optional in ("leakage_intensity_width_2", "morphology_n_pixels", "timing_slope"):
        if optional in table.colnames:
            columns.append(_values(table, optional))
    return np.nan_to_num(np.column_stack(columns))


def _boosted_trees(kind):
    model = HistGradientBoostingRegressor if kind == "regressor" else HistGradientBoostingClassifier
    return model(max_iter=200, random_state=0)


def bdt_energy(dl2, training=None):
    """Boosted-tree regression of log10 E on the image parameters, fitted on the training gamma images (TeV)."""
    return 10 ** _fit_and_apply(
        dl2, gamma_images(training),
        lambda table: _boosted_trees("regressor").fit(_hillas_features(table), _log_energy(table)),
        lambda model, table: model.predict(_hillas_features(table)),
    )


def bdt_gamma_score(dl2, training=None):
    """Boosted-tree gamma/hadron classifier on the image parameters, fitted on the training images."""
    return _gamma_score(dl2, training, lambda: _boosted_trees("classifier"), _hillas_features)


def _bdt_disp_models(table):
    features = _hillas_features(table)
    distance, along = _source_along_axis(table)
    distance_model = _boosted_trees("regressor").fit(features, distance)
    if len(np.unique(along > 0)) < 2:
        return distance_model, None
    return distance_model, _boosted_trees("classifier").fit(features, along > 0)


def _bdt_signed_disp(models, table):
    distance_model, side_model = models
    features = _hillas_features(table)
    side = np.ones(len(table)) if side_model is None else np.where(side_model.predict(features), 1.0, -1.0)
    return distance_model.predict(features) * side


def bdt_disp_direction(dl2, training=None):
    """(fov_lon, fov_lat) in deg, telescope frame: the BDT disp estimate of the source position.

    One boosted-tree regression for the distance from the centroid along the
    major axis, one classifier for the side (head-tail), both on the image
    parameters and fitted on the training gamma images.
    """
    signed = _fit_and_apply(dl2, gamma_images(training), _bdt_disp_models, _bdt_signed_disp)
    return _disp_position(dl2, signed)


def bdt_disp_theta(dl2, training=None):
    """Distance (deg) between the BDT disp estimate and the true direction."""
    lon, lat = bdt_disp_direction(dl2, training)
    true_lon, true_lat = true_source_telescope_frame(dl2)
    return np.hypot(lon - true_lon, lat - true_lat)
