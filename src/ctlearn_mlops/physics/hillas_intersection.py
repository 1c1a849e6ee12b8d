"""ctapipe's HillasReconstructor direction for every array event at once.

ctapipe's ``HillasReconstructor`` (0.32) takes one ``ArrayEventContainer`` at a
time and moves each image's centroid and a second point on its axis through
astropy's frames (telescope frame -> AltAz): milliseconds per event, minutes
for an IRF sample (benchmarks/classical_pass.py).  ``TableHillasReconstructor`` is that reconstructor (same
configuration, same quality query, same camera radii) with one more method,
``directions``, which does the same arithmetic on a table of images with
numpy: the same rotation matrices as ctapipe's ``TelescopeFrame`` -> ``AltAz``
transform, the same plane normals, the same pairwise plane crossings and
weights (intensity * length / width).  The per-event ``__call__`` is
inherited unchanged; the tests compare both on every event of the tests' toy
production and of the real SST-1M sample.

Only the direction is computed (the event DL2 file keeps alt, az, validity and
the telescopes used); core position and h_max are not.
"""

from collections.abc import Mapping
from itertools import combinations
from types import SimpleNamespace

import astropy.units as u
import numpy as np
from astropy.coordinates import Longitude
from astropy.coordinates.matrix_utilities import rotation_matrix
from ctapipe.containers import ImageParametersContainer
from ctapipe.reco import HillasReconstructor

from .._compat import hillas_camera_radii_deg

__all__ = ["TableHillasReconstructor", "image_groups"]

class _ParameterColumns(Mapping):
    """``parameters`` for a QualityQuery's expressions, each field a column of the image table.

    ``QualityQuery.get_table_mask(table)`` evaluates expressions such as
    ``parameters.hillas.intensity > 50`` with ``table`` as their locals and
    takes ``len(table)`` as the number of rows: so this mapping holds one name,
    ``parameters``, and its length is the number of images. Each group of
    ctapipe's ``ImageParametersContainer`` is found under its table prefix
    (``intensity_statistics`` -> ``intensity_*``) with the field's unit.
    """

    def __init__(self, images):
        groups = {}
        for group, field in ImageParametersContainer.fields.items():
            container = field.default_factory()
            values = {}
            for name, item in type(container).fields.items():
                column = f"{container.default_prefix}_{name}"
                if column not in images.colnames:
                    continue
                data = images[column]
                values[name] = u.Quantity(data, item.unit, copy=False) if item.unit is not None \
                    else np.asarray(data)
            groups[group] = SimpleNamespace(**values)
        self._locals = {"parameters": SimpleNamespace(**groups)}
        self._length = len(images)

    def __getitem__(self, key):
        return self._locals[key]

    def __iter__(self):
        return iter(self._locals)

    def __len__(self):
        return self._length


def image_groups(images):
    """Sort images by (obs_id, event_id, tel_id): (the order, the first row of each event, each row's event index)."""
    order = np.lexsort((np.asarray(images["tel_id"]), np.asarray(images["event_id"]), np.asarray(images["obs_id"])))
    keys = np.stack([np.asarray(images["obs_id"], np.int64)[order], np.asarray(images["event_id"], np.int64)[order]],
                    axis=1)
    new_event = np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)] if len(keys) else np.zeros(0, bool)
    return order, np.flatnonzero(new_event), np.cumsum(new_event) - 1


def _unit_vectors(lon, lat):
    """Cartesian unit vectors of spherical (lon, lat) in radians, astropy's convention."""
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _telescope_to_altaz(fov_lon, fov_lat, pointing_alt, pointing_az):
    """AltAz cartesian vectors of telescope-frame points (radians), as ctapipe.coordinates.telescope_frame (0.32).

    Its AltAz -> TelescopeFrame matrix is ``rotation_matrix(-alt, "y") @
    rotation_matrix(az, "z")``; the way back is its transpose.
    """
    matrices = rotation_matrix(-pointing_alt * u.rad, "y") @ rotation_matrix(pointing_az * u.rad, "z")
    return np.einsum("nji,nj->ni", matrices, _unit_vectors(fov_lon, fov_lat))


def _right_handed(vectors):
    """astropy's AltAz cartesian (azimuth left-handed) as ctapipe's ``altaz_to_righthanded_cartesian``."""
    return vectors * np.array([1.0, -1.0, 1.0])


class TableHillasReconstructor(HillasReconstructor):
    """ctapipe's HillasReconstructor (0.32) with a vectorized direction over a table of images."""

    def directions(self, images):
        """The array direction of every event in ``images`` with two or more images passing the quality query.

        ``images``: one row per telescope image (obs_id, event_id, tel_id, the
        ``hillas_*`` parameters in the telescope frame, ``morphology_n_pixels``
        and the pointing: ``telescope_pointing_*`` or ``pointing_*``), as
        ctapipe's ``TableLoader`` gives them. Returns a dict of arrays, one
        entry per event (sorted by obs_id, event_id): ``obs_id``, ``event_id``,
        ``alt`` and ``az`` (deg; NaN where invalid), ``is_valid`` and
        ``telescopes`` (a boolean per telescope of the subarray, in its order).
        Events with fewer than two images passing are invalid, as ctapipe's
        ``INVALID`` container.
        """
        order, starts, event_of_image = image_groups(images)
        images = images[order]
        n_events = len(starts)

        passing = self.quality_query.get_table_mask(_ParameterColumns(images)) if len(images) else np.zeros(0, bool)
        width = u.Quantity(images["hillas_width"], u.deg).to_value(u.deg)
        n_passing = np.bincount(event_of_image[passing], minlength=n_events)
        # ctapipe refuses the whole event when an image that passed has a width of NaN or 0 (InvalidWidthException)
        bad_width = np.bincount(event_of_image[passing & ((width == 0) | np.isnan(width))], minlength=n_events)
        valid = (n_passing >= 2) & (bad_width == 0)

        tel_ids = np.asarray(images["tel_id"])
        telescopes = np.zeros((n_events, len(self.subarray.tel_ids)), dtype=bool)
        use = passing & valid[event_of_image]
        telescopes[event_of_image[use], self.subarray.tel_ids_to_indices(tel_ids[use])] = True

        alt = np.full(n_events, np.nan)
        az = np.full(n_events, np.nan)
        normals, weights = self._plane_normals(images[use], tel_ids[use])
        image_events = event_of_image[use]
        for multiplicity in np.unique(n_passing[valid]):
            events = np.flatnonzero(valid & (n_passing == multiplicity))
            # the images of these events, `multiplicity` consecutive rows each (sorted by event)
            rows = np.flatnonzero(np.isin(image_events, events)).reshape(len(events), multiplicity)
            direction = self._average_crossing(normals[rows], weights[rows])
            alt[events] = np.rad2deg(np.arctan2(direction[:, 2], np.hypot(direction[:, 0], direction[:, 1])))
            # azimuth runs clockwise, the right-handed longitude counter-clockwise (ctapipe: Longitude(-lon))
            az[events] = Longitude(-np.arctan2(direction[:, 1], direction[:, 0]) * u.rad).to_value(u.deg)
        return {
            "obs_id": np.asarray(images["obs_id"], np.int64)[starts],
            "event_id": np.asarray(images["event_id"], np.int64)[starts], "alt": alt, "az": az,
            "is_valid": valid & np.isfinite(alt), "telescopes": telescopes,
        }

    def _plane_normals(self, images, tel_ids):
        """Normal of the plane through each image's axis and the telescope (right-handed AltAz), and its weight."""
        lon = u.Quantity(images["hillas_fov_lon"], u.deg).to_value(u.deg)
        lat = u.Quantity(images["hillas_fov_lat"], u.deg).to_value(u.deg)
        psi = u.Quantity(images["hillas_psi"], u.deg).to_value(u.rad)
        radii = hillas_camera_radii_deg(self)
        radius = np.array([radii[int(t)] for t in tel_ids], dtype=float)
        # the second point on the axis, as ctapipe's initialize_arrays: a tenth of the camera radius along psi
        lon2 = lon + 0.1 * radius * np.cos(psi)
        lat2 = lat + 0.1 * radius * np.sin(psi)
        prefix = "telescope_pointing" if "telescope_pointing_altitude" in images.colnames else "pointing"
        pointing_alt = u.Quantity(images[f"{prefix}_altitude"], u.deg).to_value(u.rad)
        pointing_az = u.Quantity(images[f"{prefix}_azimuth"], u.deg).to_value(u.rad)
        cog = _right_handed(_telescope_to_altaz(np.deg2rad(lon), np.deg2rad(lat), pointing_alt, pointing_az))
        second = _right_handed(_telescope_to_altaz(np.deg2rad(lon2), np.deg2rad(lat2), pointing_alt, pointing_az))
        intensity = np.asarray(images["hillas_intensity"], dtype=float)
        length = u.Quantity(images["hillas_length"], u.deg).value
        width = u.Quantity(images["hillas_width"], u.deg).value
        # (images of zero or NaN width never get here: their events are invalid)
        return np.cross(cog, second), intensity * length / width

    @staticmethod
    def _average_crossing(normals, weights):
        """ctapipe's estimate_direction for events of equal multiplicity: (events, images, 3) -> (events, 3)."""
        first, second = np.array(list(combinations(range(normals.shape[1]), 2))).T
        crossings = np.cross(normals[:, first], normals[:, second])
        crossings[crossings[..., 2] < 0] *= -1
        pair_weights = weights[:, first] * weights[:, second]
        with np.errstate(invalid="ignore", divide="ignore"):
            # ctapipe's np.average raises on a zero sum of weights; here that event's direction is NaN (invalid)
            mean = np.einsum("ep,epk->ek", pair_weights, crossings) / pair_weights.sum(axis=1)[:, None]
            return mean / np.linalg.norm(mean, axis=1)[:, None]
