"""Air-shower truth and its projection into IACT cameras, for the toy sample.

The physics is deliberately simple but has the signatures that IACT
reconstruction relies on:

* The light yield grows linearly with energy and falls outside the
  Cherenkov light pool (~120 m from the shower axis).
* Every image point is the exact camera position of a point on the shower
  axis (astropy AltAz -> ``CameraFrame``), so the image's major axis points
  back to the source and its distance from the source (``disp``) grows with
  the impact distance and with the depth of the shower maximum.
* Gamma showers are narrow; protons are wider, fluctuate more, have
  sub-showers and sometimes a muon ring (see ``images``).
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from astropy.time import Time
from ctapipe.coordinates import CameraFrame

__all__ = [
    "PRIMARY_ID",
    "ShowerSample",
    "ToyPhysics",
    "camera_positions",
    "sample_showers",
]

#: CORSIKA primary ids, as ctapipe stores them in ``shower_primary_id``.
PRIMARY_ID = {"gamma": 0, "proton": 101}

#: The reader's reference epoch (dl1-data-handler uses the same one).
OBSTIME = Time("2018-10-01T00:00:00", scale="utc")

_X0_ATMOSPHERE = 1030.0  # g cm-2, vertical depth at sea level
_SCALE_HEIGHT = 7.25  # km, isothermal atmosphere
_RADIATION_LENGTH = 37.0  # g cm-2 in air
_CRITICAL_ENERGY_TEV = 83e-6


@dataclass(frozen=True)
class ToyPhysics:
    """Parameters of the toy sample; one instance describes a production."""

    pointing_alt: u.Quantity = 70 * u.deg
    pointing_az: u.Quantity = 0 * u.deg
    energy_min: u.Quantity = 0.03 * u.TeV
    energy_max: u.Quantity = 30 * u.TeV
    spectral_index: float = -2.0
    #: showers come from inside this cone around the pointing; 0: from one point (``source_offset``)
    viewcone: u.Quantity = 1.0 * u.deg
    #: where a point source sits (viewcone 0): its offset from the pointing and position angle
    source_offset: u.Quantity = 0.4 * u.deg
    source_position_angle: u.Quantity = 0 * u.deg
    scatter_radius: u.Quantity = 300 * u.m
    #: photo-electrons per TeV inside the light pool
    gamma_light_yield: float = 2500.0
    proton_light_yield: float = 800.0
    light_pool_radius: u.Quantity = 120 * u.m
    light_pool_falloff: u.Quantity = 60 * u.m
    nsb_level_pe: float = 2.0
    #: a telescope triggers when its expected shower signal reaches this
    trigger_threshold_pe: float = 40.0


@dataclass
class ShowerSample:
    """Truth of ``n`` simulated showers, as plain arrays."""

    particle: str
    energy: u.Quantity
    alt: u.Quantity
    az: u.Quantity
    core_x: u.Quantity
    core_y: u.Quantity
    x_max: u.Quantity
    h_first_int: u.Quantity
    light_scale: np.ndarray  # shower-to-shower fluctuation of the light yield

    def __len__(self):
        return len(self.energy)


def _power_law(rng, n, e_min, e_max, index):
    g = index + 1.0
    if abs(g) < 1e-9:  # index -1: flat in log E
        return e_min * (e_max / e_min) ** rng.uniform(size=n)
    lo, hi = e_min ** g, e_max ** g
    return (lo + rng.uniform(size=n) * (hi - lo)) ** (1.0 / g)


def _depth_to_height_above(x_slant, alt, site_height):
    """Height above the site of the point at slant depth ``x_slant`` (g cm-2)."""
    vertical = np.clip(x_slant * np.sin(alt), 1.0, None)
    height_asl = _SCALE_HEIGHT * np.log(_X0_ATMOSPHERE / vertical) * u.km
    return np.clip(height_asl - site_height, 0.3 * u.km, None)


def sample_showers(rng, n, particle, physics: ToyPhysics, pointing=None) -> ShowerSample:
    """Draw ``n`` showers of ``particle`` ('gamma' or 'proton').

    ``pointing``: (alt, az) of the telescopes for each shower (a tracking
    observation); None: the physics' fixed pointing.
    """
    if particle not in PRIMARY_ID:
        raise ValueError(f"unknown particle {particle!r}, expected one of {sorted(PRIMARY_ID)}")
    energy = _power_law(
        rng, n, physics.energy_min.to_value(u.TeV), physics.energy_max.to_value(u.TeV),
        physics.spectral_index,
    ) * u.TeV

    alt, az = (physics.pointing_alt, physics.pointing_az) if pointing is None else pointing
    pointing = SkyCoord(alt=alt, az=az, frame=AltAz())
    if physics.viewcone > 0:
        # isotropic inside the view cone
        cos_max = np.cos(physics.viewcone.to_value(u.rad))
        offset = np.arccos(1 - rng.uniform(size=n) * (1 - cos_max)) * u.rad
        position_angle = rng.uniform(0, 2 * np.pi, size=n) * u.rad
    else:
        # a point source, as the gammas of a source observed off-axis (wobble)
        offset = np.full(n, physics.source_offset.to_value(u.rad)) * u.rad
        position_angle = np.full(n, physics.source_position_angle.to_value(u.rad)) * u.rad
    direction = pointing.directional_offset_by(position_angle, offset)

    radius = physics.scatter_radius * np.sqrt(rng.uniform(size=n))
    phi = rng.uniform(0, 2 * np.pi, size=n)

    mean_x_max = _RADIATION_LENGTH * np.log(energy.to_value(u.TeV) / _CRITICAL_ENERGY_TEV)
    if particle == "gamma":
        x_max = mean_x_max + rng.normal(0, 25, size=n)
        light_scale = rng.lognormal(0, 0.15, size=n)
        h_first = _SCALE_HEIGHT * np.log(_X0_ATMOSPHERE / rng.exponential(_RADIATION_LENGTH * 9 / 7, size=n).clip(5))
    else:
        x_max = mean_x_max - 40 + rng.normal(0, 70, size=n)
        light_scale = rng.lognormal(0, 0.5, size=n)
        h_first = _SCALE_HEIGHT * np.log(_X0_ATMOSPHERE / rng.exponential(80, size=n).clip(5))
    return ShowerSample(
        particle=particle,
        energy=energy,
        alt=direction.alt.to(u.deg),
        az=direction.az.wrap_at(180 * u.deg).to(u.deg),
        core_x=radius * np.cos(phi),
        core_y=radius * np.sin(phi),
        x_max=np.clip(x_max, 80, 900) * u.g / u.cm**2,
        h_first_int=h_first * u.km,
        light_scale=light_scale,
    )


def _axis_unit_vector(alt, az):
    """Unit vector from the core towards the source in ctapipe's GroundFrame (x north, y west, z up)."""
    return np.stack([np.cos(alt) * np.cos(az), -np.cos(alt) * np.sin(az), np.sin(alt)], axis=-1)


def impact_distance(showers: ShowerSample, tel_positions):
    """Perpendicular distance (m) of each telescope from each shower axis, shape (n_showers, n_tel)."""
    axis = _axis_unit_vector(showers.alt.to_value(u.rad), showers.az.to_value(u.rad))
    core = np.stack([showers.core_x.to_value(u.m), showers.core_y.to_value(u.m), np.zeros(len(showers))], -1)
    rel = tel_positions[None, :, :] - core[:, None, :]
    along = np.einsum("ntk,nk->nt", rel, axis)
    perp = rel - along[..., None] * axis[:, None, :]
    return np.linalg.norm(perp, axis=-1)


def camera_positions(showers: ShowerSample, tel_positions, slant_depths, site_height, focal_length, physics,
                     pointing=None):
    """Camera coordinates (m) of points on each shower axis, seen from each telescope.

    ``pointing``: (alt, az) of the telescopes for each shower; None: the physics' fixed pointing.

    Parameters
    ----------
    slant_depths : array (n_showers, n_points)
        Slant depths (g cm-2) along the axis; ``np.inf`` stands for the source
        itself (a point at infinity along the axis).

    Returns
    -------
    x, y : arrays (n_showers, n_tel, n_points) in metres, in the camera frame
        of the (parallel-pointing) telescopes.
    """
    alt = showers.alt.to_value(u.rad)
    az = showers.az.to_value(u.rad)
    axis = _axis_unit_vector(alt, az)
    core = np.stack([showers.core_x.to_value(u.m), showers.core_y.to_value(u.m), np.zeros(len(showers))], -1)

    finite = np.isfinite(slant_depths)
    heights = _depth_to_height_above(
        np.where(finite, slant_depths, 1.0), alt[:, None], site_height
    ).to_value(u.m)
    distance_along_axis = heights / np.sin(alt)[:, None]
    points = core[:, None, :] + distance_along_axis[..., None] * axis[:, None, :]
    view = points[:, None, :, :] - tel_positions[None, :, None, :]
    # a point at infinity is seen in the direction of the axis itself
    view = np.where(finite[:, None, :, None], view, axis[:, None, None, :])
    norm = np.linalg.norm(view, axis=-1)
    view_alt = np.arcsin(view[..., 2] / norm)
    view_az = np.arctan2(-view[..., 1], view[..., 0])

    shape = view_alt.shape
    if pointing is None:
        pointing = SkyCoord(alt=physics.pointing_alt, az=physics.pointing_az, frame=AltAz(obstime=OBSTIME))
    else:  # one pointing per shower, repeated for each of its points
        alt, az = (np.broadcast_to(u.Quantity(angle, u.deg).value[:, None, None], shape).ravel() * u.deg
                   for angle in pointing)
        pointing = SkyCoord(alt=alt, az=az, frame=AltAz(obstime=OBSTIME))
    frame = CameraFrame(focal_length=focal_length, telescope_pointing=pointing, obstime=OBSTIME)
    coords = SkyCoord(
        alt=view_alt.ravel() * u.rad, az=view_az.ravel() * u.rad, frame=AltAz(obstime=OBSTIME)
    ).transform_to(frame)
    return coords.x.to_value(u.m).reshape(shape), coords.y.to_value(u.m).reshape(shape)


def light_pool(distance, physics: ToyPhysics):
    """Fraction of the in-pool light a telescope at ``distance`` (m) from the axis receives."""
    r0 = physics.light_pool_radius.to_value(u.m)
    falloff = physics.light_pool_falloff.to_value(u.m)
    return np.where(distance <= r0, 1.0, np.exp(-(distance - r0) / falloff))
