"""Classical reconstructions on the same events as the network.

Every baseline that has free parameters is fitted with two-fold cross-fitting
by shower (the parameters applied to a shower never saw it), so a baseline is
never flattered by fitting on the events it is scored on.
"""

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from ctapipe.coordinates import TelescopeFrame
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "centroid_theta",
    "disp_theta",
    "hillas_logistic_score",
    "intensity_fit_energy",
    "median_energy",
    "shower_folds",
    "true_source_telescope_frame",
    "width_score",
]


def shower_folds(dl2):
    """0/1 fold of each image; all images of a shower share the fold."""
    key = np.asarray(dl2["obs_id"], dtype=np.int64) * 1_000_003 + np.asarray(dl2["event_id"], dtype=np.int64)
    return (np.bitwise_xor(key, key >> 7) * 2654435761 % 2**32 >> 16) % 2


def _cross_fit(folds, fit, predict):
    """predict(params fitted on the other fold) for each fold."""
    out = np.full(len(folds), np.nan)
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        if train.sum() == 0 or test.sum() == 0:
            continue
        out[test] = predict(fit(train), test)
    return out


def median_energy(dl2):
    """Each image predicted at the median true energy of the other fold (TeV)."""
    log_e = np.log10(u.Quantity(dl2["true_energy"], u.TeV).to_value(u.TeV))
    return 10 ** _cross_fit(shower_folds(dl2), lambda tr: np.median(log_e[tr]), lambda m, te: m)


def intensity_fit_energy(dl2):
    """log10 E = a + b log10(intensity), fitted on the other fold (TeV)."""
    log_e = np.log10(u.Quantity(dl2["true_energy"], u.TeV).to_value(u.TeV))
    log_i = np.log10(np.clip(np.asarray(dl2["hillas_intensity"], dtype=float), 1e-3, None))

    def fit(train):
        return np.polyfit(log_i[train], log_e[train], 1)

    return 10 ** _cross_fit(shower_folds(dl2), fit, lambda p, te: np.polyval(p, log_i[te]))


def true_source_telescope_frame(dl2):
    """(fov_lon, fov_lat) in deg of the true direction, in each telescope's frame."""
    pointing = SkyCoord(
        alt=u.Quantity(dl2["pointing_altitude"]), az=u.Quantity(dl2["pointing_azimuth"]), frame=AltAz(),
    )
    source = SkyCoord(alt=u.Quantity(dl2["true_alt"]), az=u.Quantity(dl2["true_az"]), frame=AltAz())
    source = source.transform_to(TelescopeFrame(telescope_pointing=pointing))
    return source.fov_lon.to_value(u.deg), source.fov_lat.to_value(u.deg)


def _centroid(dl2):
    return u.Quantity(dl2["hillas_fov_lon"]).to_value(u.deg), u.Quantity(dl2["hillas_fov_lat"]).to_value(u.deg)


def centroid_theta(dl2):
    """Distance (deg) between the Hillas centroid and the true direction."""
    true_lon, true_lat = true_source_telescope_frame(dl2)
    lon, lat = _centroid(dl2)
    return np.hypot(lon - true_lon, lat - true_lat)


def disp_theta(dl2):
    """Distance (deg) between the disp estimate and the true direction.

    disp = xi (1 - width/length) along the major axis from the centroid; the
    side comes from the sign of the skewness.  xi and the sign convention are
    fitted on the other fold.
    """
    true_lon, true_lat = true_source_telescope_frame(dl2)
    lon, lat = _centroid(dl2)
    psi = u.Quantity(dl2["hillas_psi"]).to_value(u.rad)
    width = u.Quantity(dl2["hillas_width"]).to_value(u.deg)
    length = u.Quantity(dl2["hillas_length"]).to_value(u.deg)
    elongation = np.clip(1 - width / np.where(length > 0, length, np.nan), 1e-3, None)
    skew_sign = np.sign(np.asarray(dl2["hillas_skewness"], dtype=float))
    true_disp = np.hypot(true_lon - lon, true_lat - lat)
    along = (true_lon - lon) * np.cos(psi) + (true_lat - lat) * np.sin(psi)

    def fit(train):
        xi = np.nanmedian(true_disp[train] / elongation[train])
        # which side of the centroid the source is on, relative to the skewness
        side = np.nanmedian(np.sign(along[train]) * skew_sign[train])
        return xi, 1.0 if side >= 0 else -1.0

    def predict(params, test):
        xi, side = params
        disp = xi * elongation[test] * side * np.where(skew_sign[test] == 0, 1, skew_sign[test])
        reco_lon = lon[test] + disp * np.cos(psi[test])
        reco_lat = lat[test] + disp * np.sin(psi[test])
        return np.hypot(reco_lon - true_lon[test], reco_lat - true_lat[test])

    return _cross_fit(shower_folds(dl2), fit, predict)


def width_score(dl2):
    """Gamma-likeness from a cut on the Hillas width alone (narrower = more gamma-like)."""
    return -u.Quantity(dl2["hillas_width"]).to_value(u.deg)


def hillas_logistic_score(dl2):
    """Logistic regression on width, length, log intensity and skewness, fitted on the other fold."""
    features = np.column_stack([
        u.Quantity(dl2["hillas_width"]).to_value(u.deg),
        u.Quantity(dl2["hillas_length"]).to_value(u.deg),
        np.log10(np.clip(np.asarray(dl2["hillas_intensity"], dtype=float), 1e-3, None)),
        np.asarray(dl2["hillas_skewness"], dtype=float),
    ])
    features = np.nan_to_num(features)
    is_gamma = np.asarray(dl2["true_shower_primary_id"]) == 0

    def fit(train):
        if len(np.unique(is_gamma[train])) < 2:
            return None
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features[train], is_gamma[train])

    def predict(model, test):
        return np.full(test.sum(), np.nan) if model is None else model.predict_proba(features[test])[:, 1]

    return _cross_fit(shower_folds(dl2), fit, predict)
