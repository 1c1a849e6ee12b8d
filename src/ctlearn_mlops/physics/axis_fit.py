"""One array direction from every telescope: the networks' image positions fitted together with the image axes.

A mono network's direction of one image is good along the image's major axis
(how far the source lies from the centroid, the disp) and worse across it;
the Hillas axis of the image is good across and says nothing along it.
Averaging the telescopes' network positions (``StereoMeanCombiner``) loses the
parallax between the images; ``HillasReconstructor``'s intersection of the axes
loses the networks.  ``axis_fit_directions`` keeps both: per array event, the
point x of the nominal frame (the field of view around the array pointing)
that minimizes, over the event's images i,

    ((x - p_i).e_i / s_along_i)^2 + ((x - p_i).n_i / s_across_i)^2 + ((x - c_i).n_i / s_axis_i)^2

with p_i the network's position, c_i the Hillas centroid, e_i and n_i the unit
vectors along and across the major axis: the stereo disp method of MAGIC and
lstchain with the network as the disp estimator.  The s_* are 68 % errors by
image intensity (``ImageErrorModel``): the network's along and across its
image axis, measured on the run's validation images, times a factor by the
image's leakage (a shower cut by the camera's edge moves the network's
position along its axis: 2-3x the error of a whole image of the same
intensity); the axis' by intensity and by t_i, the network's distance from
the centroid along the axis (the axis' angle error grows with it), measured
on the training images.  A one-image event
gets the same fit.  The inverse of the summed weights is the covariance of x:
its 68 % containment radius, scaled to the coverage measured on the
validation events, is the event's ``ang_distance_uncert``.

No truth is used on the events reconstructed, and no TensorFlow here.
"""

import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import Table
from ctapipe.coordinates import NominalFrame, TelescopeFrame

__all__ = ["ImageAxes", "ImageErrorModel", "axis_fit_directions", "bin_of", "binned_quantile", "cell_scales",
           "event_index_of",
           "from_nominal", "has_axis", "image_axes", "leakage_factors", "measure_error_model", "to_nominal"]

#: radius of the 68 % containment of a circular 2-d Gaussian, in units of its sigma (sqrt(-2 ln 0.32))
_R68_PER_SIGMA = np.sqrt(-2 * np.log(1 - 0.68))
#: images per intensity bin of an error model, at least
MIN_IMAGES_PER_BIN = 50
#: events of this many images or more share one uncertainty scale
MAX_IMAGES_SCALED = 4
#: validation events a scale of its own needs (else the scale of all events)
MIN_EVENTS_PER_SCALE = 30
#: bins of the distance (deg) of the source from the centroid along the axis, for the axis' error
DISTANCE_EDGES = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0, 3.0])
#: the image parameter of leakage: the fraction of the intensity in the camera's two outermost pixel rings
LEAKAGE_COLUMN = "leakage_intensity_width_2"
#: bins of leakage for the factors of the network's errors (whole images, cut a little, cut much)
LEAKAGE_EDGES = np.array([0.0, 0.05, 0.2, 1.0])
#: validation images a leakage bin needs for a factor of its own
MIN_IMAGES_PER_LEAKAGE_BIN = 30


def _deg(column):
    return u.Quantity(column, u.deg).to_value(u.deg)


def _pointings(images):
    """(telescope pointing, array pointing) SkyCoords of every image (the array's if no telescope pointing)."""
    array = SkyCoord(alt=u.Quantity(images["pointing_altitude"], u.deg),
                     az=u.Quantity(images["pointing_azimuth"], u.deg), frame=AltAz())
    if "telescope_pointing_altitude" not in images.colnames:
        return array, array
    telescope = SkyCoord(alt=u.Quantity(images["telescope_pointing_altitude"], u.deg),
                         az=u.Quantity(images["telescope_pointing_azimuth"], u.deg), frame=AltAz())
    return telescope, array


def to_nominal(images, alt, az):
    """(fov_lon, fov_lat) in deg of AltAz directions (one per image) in the nominal frame of the array pointing."""
    _, array = _pointings(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AltAz without obstime: a pure rotation
        nominal = SkyCoord(alt=u.Quantity(alt, u.deg), az=u.Quantity(az, u.deg), frame=AltAz()).transform_to(
            NominalFrame(origin=array))
    return nominal.fov_lon.to_value(u.deg), nominal.fov_lat.to_value(u.deg)


def from_nominal(fov_lon, fov_lat, pointing_alt, pointing_az):
    """(alt, az) in deg of nominal-frame offsets (deg) around the given array pointings."""
    origin = SkyCoord(alt=u.Quantity(pointing_alt, u.deg), az=u.Quantity(pointing_az, u.deg), frame=AltAz())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sky = SkyCoord(fov_lon=u.Quantity(fov_lon, u.deg), fov_lat=u.Quantity(fov_lat, u.deg),
                       frame=NominalFrame(origin=origin)).transform_to(AltAz())
    return sky.alt.to_value(u.deg), sky.az.wrap_at(360 * u.deg).to_value(u.deg)


@dataclass
class ImageAxes:
    """Hillas centroid and major-axis unit vectors of images, in the nominal frame of the array pointing (deg)."""

    centroid: np.ndarray  # (n, 2)
    along: np.ndarray  # (n, 2): unit vector along the major axis
    log_intensity: np.ndarray  # (n,)
    leakage: np.ndarray = None  # (n,): LEAKAGE_COLUMN (0 where the images have none)

    def __post_init__(self):
        if self.leakage is None:
            self.leakage = np.zeros(len(self.log_intensity))

    @property
    def across(self):
        return np.stack([-self.along[:, 1], self.along[:, 0]], axis=1)

    def offsets(self, lon, lat):
        """(along, across) offsets in deg of points (one per image) from the centroids."""
        delta = np.stack([lon, lat], axis=1) - self.centroid
        return np.sum(delta * self.along, axis=1), np.sum(delta * self.across, axis=1)


def image_axes(images):
    """The ImageAxes of ``images`` (Hillas parameters in the telescope frame, pointing columns)."""
    telescope, array = _pointings(images)
    lon, lat = _deg(images["hillas_fov_lon"]), _deg(images["hillas_fov_lat"])
    psi = u.Quantity(images["hillas_psi"], u.deg).to_value(u.rad)
    step = 0.1  # deg: a second point on the axis, moved through the frames with the centroid
    points = SkyCoord(fov_lon=np.r_[lon, lon + step * np.cos(psi)] * u.deg,
                      fov_lat=np.r_[lat, lat + step * np.sin(psi)] * u.deg,
                      frame=TelescopeFrame(telescope_pointing=SkyCoord(
                          alt=np.r_[telescope.alt, telescope.alt], az=np.r_[telescope.az, telescope.az],
                          frame=AltAz())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nominal = points.transform_to(NominalFrame(origin=SkyCoord(
            alt=np.r_[array.alt, array.alt], az=np.r_[array.az, array.az], frame=AltAz())))
    xy = np.stack([nominal.fov_lon.to_value(u.deg), nominal.fov_lat.to_value(u.deg)], axis=1)
    centroid, second = xy[:len(lon)], xy[len(lon):]
    along = second - centroid
    along /= np.linalg.norm(along, axis=1, keepdims=True)
    intensity = np.asarray(images["hillas_intensity"], dtype=np.float64)
    # an image of unknown leakage takes the top leakage bin's (largest) errors: never an overweight
    leakage = np.zeros(len(lon)) if LEAKAGE_COLUMN not in images.colnames else \
        np.nan_to_num(np.asarray(images[LEAKAGE_COLUMN], dtype=np.float64), nan=1.0)
    return ImageAxes(centroid, along, np.log10(np.clip(intensity, 1e-3, None)), leakage)


def bin_of(edges, values):
    """The bin of ``edges`` of each value; values outside the edges take the outer bins."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def binned_quantile(values, index, n_bins, q=68):
    """The ``q`` % quantile of ``values`` in each of the bins 0..n_bins-1 (``index``: each value's bin)."""
    return np.array([np.nanpercentile(values[index == k], q) for k in range(n_bins)])


def leakage_factors(relative_error, leakage_bins):
    """The 68 % quantile of errors relative to their intensity bin's, per LEAKAGE_EDGES bin.

    A bin with fewer than MIN_IMAGES_PER_LEAKAGE_BIN images takes the largest
    measured factor (at least 1): never an overweight.
    """
    factors = np.full(len(LEAKAGE_EDGES) - 1, np.nan)
    for j in range(len(factors)):
        here = relative_error[leakage_bins == j]
        if np.sum(np.isfinite(here)) >= MIN_IMAGES_PER_LEAKAGE_BIN:
            factors[j] = np.nanpercentile(here, 68)
    fallback = max(np.nanmax(factors), 1.0) if np.isfinite(factors).any() else 1.0
    factors[~np.isfinite(factors)] = fallback
    return factors


def cell_scales(ratio, proxy, group, n_proxy_bins, n_groups=MAX_IMAGES_SCALED, level=68):
    """Scales that make a stated uncertainty cover ``level`` % of validation events, by cell.

    ``ratio``: each event's |error| / unscaled uncertainty (non-finite: not
    usable); ``proxy``: the quantity binned (quantile bins of the usable
    events, at most ``n_proxy_bins``, fewer when the cells would hold fewer
    than MIN_EVENTS_PER_SCALE events); ``group``: each event's group
    0..n_groups-1 (its number of images).  A cell with fewer than
    MIN_EVENTS_PER_SCALE events takes its group's scale over all bins, and
    that, if too few, the scale of all events.  Returns (inner bin edges of
    the proxy, scales of shape (bins, n_groups)); ValueError with fewer than
    MIN_EVENTS_PER_SCALE usable events.
    """
    ratio, proxy = np.asarray(ratio, dtype=float), np.asarray(proxy, dtype=float)
    usable = np.isfinite(ratio) & np.isfinite(proxy)
    if usable.sum() < MIN_EVENTS_PER_SCALE:
        raise ValueError(f"{usable.sum()} validation events, at least {MIN_EVENTS_PER_SCALE} needed")
    n_bins = min(n_proxy_bins, max(1, usable.sum() // (MIN_EVENTS_PER_SCALE * n_groups)))
    inner = np.unique(np.quantile(proxy[usable], np.linspace(0, 1, n_bins + 1))[1:-1])
    edges = np.r_[-np.inf, inner, np.inf]
    proxy_bin = bin_of(edges, np.nan_to_num(proxy, nan=0.0))
    overall = np.percentile(ratio[usable], level)
    scales = np.ones((len(edges) - 1, n_groups))
    for g in range(n_groups):
        in_group = usable & (group == g)
        group_scale = np.percentile(ratio[in_group], level) if in_group.sum() >= MIN_EVENTS_PER_SCALE else overall
        for k in range(len(edges) - 1):
            here = in_group & (proxy_bin == k)
            scales[k, g] = np.percentile(ratio[here], level) if here.sum() >= MIN_EVENTS_PER_SCALE else group_scale
    return inner, scales


def has_axis(images):
    """Which images have a finite Hillas centroid, axis and intensity (the fit and its errors need them)."""
    columns = ("hillas_fov_lon", "hillas_fov_lat", "hillas_psi", "hillas_intensity")
    return np.all([np.isfinite(np.asarray(u.Quantity(images[c]).value, dtype=float)) for c in columns], axis=0) \
        & (np.asarray(images["hillas_intensity"], dtype=float) > 0)


@dataclass
class ImageErrorModel:
    """68 % errors (deg) of one image's direction information, by log10 intensity.

    ``edges``: the log10-intensity bin edges (quantiles of the validation
    images); outside them the outer bins apply.  The network's errors are
    multiplied by a factor of the image's leakage bin (``LEAKAGE_EDGES``).
    The axis error is by intensity and by the distance from the centroid
    along the axis (``DISTANCE_EDGES``).
    """

    edges: np.ndarray
    network_along: np.ndarray
    network_across: np.ndarray
    axis: np.ndarray  # (intensity bin, DISTANCE_EDGES bin): the axis' offset across, at that distance along
    #: the fit's 68 % radius times this (by the event's number of images, 1 to MAX_IMAGES_SCALED or more) contains
    #: 68 % of the validation events' true directions (``calibrate``)
    uncertainty_scale: np.ndarray = None
    #: the network's errors along and across in a LEAKAGE_EDGES bin, relative to those of the intensity bins
    along_leakage_factor: np.ndarray = None
    across_leakage_factor: np.ndarray = None

    def __post_init__(self):
        if self.uncertainty_scale is None:
            self.uncertainty_scale = np.ones(MAX_IMAGES_SCALED)
        if self.along_leakage_factor is None:
            self.along_leakage_factor = np.ones(len(LEAKAGE_EDGES) - 1)
        if self.across_leakage_factor is None:
            self.across_leakage_factor = np.ones(len(LEAKAGE_EDGES) - 1)

    @classmethod
    def fit(cls, network_axes, network_lon, network_lat, network_true, axis_axes, axis_true, n_bins=6):
        """Measure the model.

        ``network_axes``/``network_lon``/``network_lat``/``network_true``: the
        network's validation images (their ImageAxes, predicted and true
        nominal positions); ``axis_axes``/``axis_true``: the training images
        (their axes and true positions).  The bins hold at least
        ``MIN_IMAGES_PER_BIN`` validation images; ValueError if there are fewer.
        """
        n = len(network_lon)
        n_bins = min(n_bins, n // MIN_IMAGES_PER_BIN)
        if n_bins < 1:
            raise ValueError(f"{n} validation images, at least {MIN_IMAGES_PER_BIN} needed")
        # equal intensities (a saturated sample) may tie quantiles: no empty bin
        edges = np.unique(np.quantile(network_axes.log_intensity, np.linspace(0, 1, n_bins + 1)))
        if len(edges) < 2:
            raise ValueError("the validation images all have the same intensity")
        n_bins = len(edges) - 1
        bins = bin_of(edges, network_axes.log_intensity)
        along, across = network_axes.offsets(network_lon, network_lat)
        true_along, true_across = network_axes.offsets(*network_true)
        along_error, across_error = np.abs(along - true_along), np.abs(across - true_across)
        network_along = binned_quantile(along_error, bins, n_bins)
        network_across = binned_quantile(across_error, bins, n_bins)
        leakage_bins = bin_of(LEAKAGE_EDGES, network_axes.leakage)
        along_factor = leakage_factors(along_error / network_along[bins], leakage_bins)
        across_factor = leakage_factors(across_error / network_across[bins], leakage_bins)
        # the axis: its offset from the true source grows with the distance from the centroid (the axis' angle
        # error) and is large near the centroid (no axis there): measured in bins of intensity and distance
        axis_bins = bin_of(edges, axis_axes.log_intensity)
        distance, offset = axis_axes.offsets(*axis_true)
        axis = np.full((n_bins, len(DISTANCE_EDGES) - 1), np.nan)
        distance_bins = bin_of(DISTANCE_EDGES, np.abs(distance))
        for k in range(n_bins):
            for j in range(len(DISTANCE_EDGES) - 1):
                here = (axis_bins == k) & (distance_bins == j)
                if here.sum() >= 20:
                    axis[k, j] = np.nanpercentile(np.abs(offset[here]), 68)
        # a bin with too few images takes the largest error of its intensity (else of all): never an overweight
        fallback = np.nanmax(axis) if np.isfinite(axis).any() else 1.0
        for k in range(n_bins):
            row = axis[k]
            row[~np.isfinite(row)] = np.nanmax(row) if np.isfinite(row).any() else fallback
        return cls(edges, network_along, network_across, axis, along_leakage_factor=along_factor,
                   across_leakage_factor=across_factor)

    def errors(self, axes, along_distance):
        """(s_along, s_across, s_axis) in deg for each image, ``along_distance`` the network's t_i."""
        k = bin_of(self.edges, axes.log_intensity)
        j = bin_of(DISTANCE_EDGES, np.abs(along_distance))
        m = bin_of(LEAKAGE_EDGES, axes.leakage)
        return (self.network_along[k] * self.along_leakage_factor[m],
                self.network_across[k] * self.across_leakage_factor[m], self.axis[k, j])

    def calibrate(self, event_index, axes, network_lon, network_lat, true_lon, true_lat):
        """Set ``uncertainty_scale`` from events with truth (the validation events: all images of an event)."""
        self.uncertainty_scale = np.ones(MAX_IMAGES_SCALED)
        lon, lat, r68 = axis_fit_directions(event_index, axes, network_lon, network_lat, self)
        first = np.unique(event_index, return_index=True)[1]
        ratio = np.hypot(lon - true_lon[first], lat - true_lat[first]) / r68
        group = np.minimum(np.bincount(event_index), MAX_IMAGES_SCALED) - 1
        overall = np.nanpercentile(ratio, 68)
        self.uncertainty_scale = np.array([np.nanpercentile(ratio[group == g], 68)
                                           if np.sum(group == g) >= MIN_EVENTS_PER_SCALE else overall
                                           for g in range(MAX_IMAGES_SCALED)])

    @classmethod
    def from_table(cls, table):
        """The model ``to_table`` wrote (ValueError if it was written with other distance or leakage bins).

        A model written without leakage factors (before they were measured) gets factors of 1.
        """
        for key, expected in (("axis_distance_edges_deg", DISTANCE_EDGES), ("leakage_edges", LEAKAGE_EDGES)):
            stored = table.meta.get(key)
            if stored is not None and (len(stored) != len(expected) or not np.allclose(stored, expected)):
                raise ValueError(f"the error model's {key} {stored} are not this version's {list(expected)}: "
                                 "measure it again")
        edges = np.r_[np.asarray(table["log10_intensity_min"]), np.asarray(table["log10_intensity_max"])[-1]]

        def stored_array(key, length):
            value = table.meta.get(key)
            if value is not None and len(value) != length:
                raise ValueError(f"the error model's {key} has {len(value)} values, this version {length}: "
                                 "measure it again")
            return None if value is None else np.asarray(value, dtype=float)

        return cls(edges, u.Quantity(table["network_along"], u.deg).value,
                   u.Quantity(table["network_across"], u.deg).value, u.Quantity(table["axis"], u.deg).value,
                   stored_array("uncertainty_scale_by_images", MAX_IMAGES_SCALED),
                   stored_array("network_along_leakage_factor", len(LEAKAGE_EDGES) - 1),
                   stored_array("network_across_leakage_factor", len(LEAKAGE_EDGES) - 1))

    def to_table(self):
        """The model as a table, one row per intensity bin (written to the event DL2 file)."""
        table = Table({"log10_intensity_min": self.edges[:-1], "log10_intensity_max": self.edges[1:],
                       "network_along": self.network_along * u.deg, "network_across": self.network_across * u.deg,
                       "axis": self.axis * u.deg})
        table.meta["axis_distance_edges_deg"] = [float(v) for v in DISTANCE_EDGES]
        table.meta["uncertainty_scale_by_images"] = [float(v) for v in self.uncertainty_scale]
        table.meta["leakage_edges"] = [float(v) for v in LEAKAGE_EDGES]
        table.meta["network_along_leakage_factor"] = [float(v) for v in self.along_leakage_factor]
        table.meta["network_across_leakage_factor"] = [float(v) for v in self.across_leakage_factor]
        table.meta["description"] = "68 % errors of one image's direction information, by log10 intensity"
        return table


def axis_fit_directions(event_index, axes, network_lon, network_lat, model):
    """The fitted point of each event: (fov_lon, fov_lat, r68) arrays in deg, one per event.

    ``event_index``: for each image, the index of its event (0..n_events-1;
    every index must have an image); ``axes``: the images' ImageAxes;
    ``network_lon``/``network_lat``: the network's nominal positions; images
    with a non-finite position must be dropped by the caller.
    """
    along_distance, _ = axes.offsets(network_lon, network_lat)
    s_along, s_across, s_axis = model.errors(axes, along_distance)
    e, n = axes.along, axes.across
    p = np.stack([network_lon, network_lat], axis=1)
    w_along, w_across, w_axis = 1 / s_along**2, 1 / s_across**2, 1 / s_axis**2
    outer_e, outer_n = e[:, :, None] * e[:, None, :], n[:, :, None] * n[:, None, :]
    matrices = w_along[:, None, None] * outer_e + (w_across + w_axis)[:, None, None] * outer_n
    vectors = (w_along * np.sum(e * p, axis=1))[:, None] * e + \
        (w_across * np.sum(n * p, axis=1) + w_axis * np.sum(n * axes.centroid, axis=1))[:, None] * n
    n_events = int(event_index.max()) + 1 if len(event_index) else 0
    normal = np.zeros((n_events, 2, 2))
    right = np.zeros((n_events, 2))
    np.add.at(normal, event_index, matrices)
    np.add.at(right, event_index, vectors)
    covariance = np.linalg.inv(normal)
    x = np.einsum("nij,nj->ni", covariance, right)
    # the s_* are 68 % quantiles of one coordinate's |error|, about one sigma each: the 68 % radius of the
    # 2-d Gaussian with this covariance, taken circular with its mean variance, then scaled to the coverage the
    # validation events showed (the images' errors are neither Gaussian nor independent)
    n_images = np.minimum(np.bincount(event_index, minlength=n_events), MAX_IMAGES_SCALED)
    scale = model.uncertainty_scale[np.maximum(n_images, 1) - 1]
    r68 = scale * _R68_PER_SIGMA * np.sqrt(np.trace(covariance, axis1=1, axis2=2) / 2)
    return x[:, 0], x[:, 1], r68


def event_index_of(images):
    """(index of each image's event in 0..n-1, first row of each event) of images sorted by event."""
    keys = np.stack([np.asarray(images["obs_id"], np.int64), np.asarray(images["event_id"], np.int64)], axis=1)
    _, first, index = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return index.reshape(-1), first


def measure_error_model(validation_images, network_alt, network_az, training_images, n_bins=6):
    """The ImageErrorModel of a direction network, its uncertainty scale calibrated on the validation events.

    ``validation_images``: the run's validation images (Hillas parameters,
    pointing, truth, obs_id and event_id; the run's split keeps the images of
    an event together) with the network's AltAz directions of them
    (``network_alt``/``network_az``, deg); ``training_images``: gamma images
    with parameters, pointing and truth, for the axis terms.
    """
    finite = np.isfinite(network_alt) & np.isfinite(network_az) & has_axis(validation_images)
    validation_images = validation_images[finite]
    training_images = training_images[has_axis(training_images)]
    network_lon, network_lat = to_nominal(validation_images, network_alt[finite], network_az[finite])
    true = to_nominal(validation_images, _deg(validation_images["true_alt"]), _deg(validation_images["true_az"]))
    axis_true = to_nominal(training_images, _deg(training_images["true_alt"]), _deg(training_images["true_az"]))
    axes = image_axes(validation_images)
    model = ImageErrorModel.fit(axes, network_lon, network_lat, true, image_axes(training_images), axis_true,
                                n_bins=n_bins)
    event_index, _ = event_index_of(validation_images)
    model.calibrate(event_index, axes, network_lon, network_lat, *true)
    return model
