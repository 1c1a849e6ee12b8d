"""Camera images of toy showers, with the shapes of ``ctapipe.image.toymodel``.

Gamma: one skewed Gaussian ellipse along the projected shower axis.
Proton: a wider, jittered main ellipse plus sub-showers and, sometimes, a muon
ring.  Peak times carry a gradient along the major axis
that grows with the impact distance, as in real IACT images.

The densities are toymodel's ``Gaussian``, ``SkewedGaussian`` and
``RingGaussian`` (a ring of uniform brightness), evaluated by the same scipy
functions on the same numbers, bit for bit (tests/toysim), but without
toymodel's objects: each of them freezes scipy distributions and wraps
astropy quantities, 13-25 % of the production's time a shower
(benchmarks/toy_production.py).  Bit for bit matters: a Poisson draw whose
mean moved by one last bit can change the random stream of a whole file, and
with it every image after it.
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from ctapipe.utils.linalg import rotation_matrix_2d
from scipy.special import ellipe
from scipy.stats import multivariate_normal, norm, skewnorm

__all__ = ["GaussianShape", "ImageGeometry", "RingShape", "SkewedGaussianShape", "ToyImage", "render_image"]

_GAMMA_SKEWNESS = 0.3
_T0_NS = 20.0
_READOUT_NS = (0.5, 39.5)


@dataclass(frozen=True)
class GaussianShape:
    """toymodel.Gaussian (ctapipe 0.32): centre, length and width in metres, major axis at ``psi`` (rad) from x."""

    x: float
    y: float
    length: float
    width: float
    psi: float

    def pdf(self, x, y):
        """Density (m^-2) at camera positions ``x``, ``y`` (m), as toymodel computes it."""
        rotation = rotation_matrix_2d(self.psi * u.rad)
        covariance = rotation @ np.array([[self.length**2, 0], [0, self.width**2]]) @ rotation.T
        return multivariate_normal.pdf(np.column_stack([x, y]), mean=np.array([self.x, self.y]), cov=covariance)


@dataclass(frozen=True)
class SkewedGaussianShape(GaussianShape):
    """toymodel.SkewedGaussian (ctapipe 0.32): skew-normal along the major axis, normal across it."""

    skewness: float = _GAMMA_SKEWNESS

    def pdf(self, x, y):
        # toymodel's SkewedGaussian._moments_to_parameters
        skew23 = np.abs(self.skewness) ** (2 / 3)
        delta = np.sign(self.skewness) * np.sqrt((np.pi / 2 * skew23) / (skew23 + (0.5 * (4 - np.pi)) ** (2 / 3)))
        scale = self.length / np.sqrt(1 - 2 * delta**2 / np.pi)
        along, across = rotation_matrix_2d(-self.psi * u.rad) @ (np.column_stack([x, y]) - np.array([self.x, self.y])).T
        return norm.pdf(across, loc=0, scale=self.width) * skewnorm.pdf(
            along, a=delta / np.sqrt(1 - delta**2), loc=-scale * delta * np.sqrt(2 / np.pi), scale=scale)


@dataclass(frozen=True)
class RingShape:
    """toymodel.RingGaussian (ctapipe 0.32) of uniform brightness (rho 0): a ring of ``radius`` and width ``sigma``."""

    x: float
    y: float
    radius: float
    sigma: float

    def pdf(self, x, y):
        dx, dy = x - self.x, y - self.y
        return norm.pdf(np.sqrt(dx**2 + dy**2), self.radius, self.sigma) * (0.25 / ellipe(0.0))


@dataclass
class ImageGeometry:
    """Where a shower lies in one camera (all lengths in metres)."""

    source: tuple  # camera position of the true direction
    head: tuple  # early part of the shower
    maximum: tuple  # shower maximum: the image centroid
    tail: tuple  # late part of the shower
    impact: float  # perpendicular distance telescope - shower axis
    deg_to_m: float  # plate scale


@dataclass
class ToyImage:
    image: np.ndarray
    peak_time: np.ndarray
    true_image: np.ndarray


def _axis_angle(geometry: ImageGeometry):
    dx = geometry.maximum[0] - geometry.source[0]
    dy = geometry.maximum[1] - geometry.source[1]
    return np.arctan2(dy, dx)


def _axis_length(geometry: ImageGeometry):
    dx = geometry.tail[0] - geometry.head[0]
    dy = geometry.tail[1] - geometry.head[1]
    return np.hypot(dx, dy) / 4.0


def _time_gradient(geometry: ImageGeometry):
    """ns per metre in the camera: ~0.5 ns/deg near the axis, ~5.5 ns/deg at 100 m."""
    per_deg = 0.5 + 5.0 * geometry.impact / 100.0
    return per_deg / geometry.deg_to_m


def _components(particle, geometry: ImageGeometry, intensity, rng):
    """Return a list of (shape, expected p.e., t0, gradient, psi, centre)."""
    d2m = geometry.deg_to_m
    psi = _axis_angle(geometry)
    length = max(_axis_length(geometry), 0.03 * d2m)
    cx, cy = geometry.maximum
    gradient = _time_gradient(geometry)
    if particle == "gamma":
        width = d2m * (0.04 + 0.03 * geometry.impact / 100.0) * rng.lognormal(0, 0.1)
        shape = SkewedGaussianShape(x=cx, y=cy, length=length, width=width, psi=psi)
        return [(shape, intensity, _T0_NS, gradient, psi, (cx, cy))]

    components = []
    sub_fractions = rng.uniform(0.1, 0.35, size=rng.poisson(1.2))
    main_fraction = max(1.0 - sub_fractions.sum(), 0.25)
    main_psi = psi + rng.normal(0, np.deg2rad(15))
    main_width = d2m * (0.09 + 0.04 * geometry.impact / 100.0) * rng.lognormal(0, 0.25)
    main = GaussianShape(x=cx, y=cy, length=max(1.3 * length, main_width), width=main_width, psi=main_psi)
    main_gradient = gradient + rng.normal(0, 2.0) / d2m
    components.append((main, intensity * main_fraction, _T0_NS, main_gradient, main_psi, (cx, cy)))
    for fraction in sub_fractions:
        sx, sy = cx + rng.normal(0, 0.25 * d2m), cy + rng.normal(0, 0.25 * d2m)
        sub_psi = rng.uniform(0, np.pi)
        sub = GaussianShape(x=sx, y=sy, length=rng.uniform(0.1, 0.3) * d2m, width=rng.uniform(0.05, 0.15) * d2m,
                            psi=sub_psi)
        components.append(
            (sub, intensity * fraction, _T0_NS + rng.normal(0, 3.0), rng.normal(0, 3.0) / d2m, sub_psi, (sx, sy))
        )
    if rng.uniform() < 0.1:
        mx = geometry.source[0] + rng.normal(0, 0.4 * d2m)
        my = geometry.source[1] + rng.normal(0, 0.4 * d2m)
        radius = rng.uniform(0.9, 1.2) * d2m
        ring = RingShape(x=mx, y=my, radius=radius, sigma=0.05 * d2m)
        # a muon ring's light grows with its radius: 100-400 p.e. per metre of ring circumference in the camera
        # (LSTCam: ~280-1500 p.e. a ring), the rings of the production made with ctapipe 0.23
        ring_pe = rng.uniform(100, 400) * 2 * np.pi * radius
        components.append((ring, ring_pe / _plane_integral(ring, (mx, my), radius + 0.3 * d2m),
                           _T0_NS - 2.0, 0.0, 0.0, (mx, my)))
    return components


def _plane_integral(shape, centre, extent, n=201):
    """The integral of ``shape.pdf`` over the camera plane (a square of half-side ``extent`` m around ``centre``).

    ``_expected_signal(shape, ...)`` puts ``intensity`` times this in an
    unbounded camera.  For the Gaussians it is 1; toymodel's ``RingGaussian``
    is not normalised to 1 (its normalisation changed between ctapipe
    releases: 0.23 2 pi radius, 0.32 radius, in metres; ``RingShape`` is
    0.32's), so a ring's light is set through this integral.
    """
    axis = np.linspace(-extent, extent, n)
    x, y = np.meshgrid(centre[0] + axis, centre[1] + axis)
    return float(shape.pdf(x.ravel(), y.ravel()).sum() * (axis[1] - axis[0]) ** 2)


def _expected_signal(shape, pix_x, pix_y, pix_area, intensity):
    """Mean photo-electrons of each pixel (toymodel's ``ImageModel.expected_signal``)."""
    return shape.pdf(pix_x, pix_y) * intensity * pix_area


_LAST_PIXELS = [None, None]


def _pixels(camera):
    """Pixel positions and areas in metres, of the last camera geometry asked for (a file renders with one)."""
    if _LAST_PIXELS[0] is not camera:
        _LAST_PIXELS[:] = [camera, (camera.pix_x.to_value(u.m), camera.pix_y.to_value(u.m),
                                    camera.pix_area.to_value(u.m**2))]
    return _LAST_PIXELS[1]


def render_image(camera, particle, geometry: ImageGeometry, intensity, nsb_level_pe, rng) -> ToyImage:
    """Draw a noisy calibrated image and its peak times for one telescope."""
    pix_x, pix_y, pix_area = _pixels(camera)
    components = _components(particle, geometry, intensity, rng)

    expected = np.array([_expected_signal(shape, pix_x, pix_y, pix_area, q) for shape, q, *_ in components])
    signal = rng.poisson(expected.sum(axis=0))
    noise = rng.poisson(nsb_level_pe, size=signal.shape)
    image = (signal + noise - nsb_level_pe).astype(np.float32)

    dominant = np.argmax(expected, axis=0)
    peak_time = np.empty(camera.n_pixels, dtype=np.float64)
    for i, (_, _, t0, gradient, psi, (cx, cy)) in enumerate(components):
        here = dominant == i
        longitudinal = (pix_x[here] - cx) * np.cos(psi) + (pix_y[here] - cy) * np.sin(psi)
        peak_time[here] = t0 + gradient * longitudinal
    jitter = 0.4 + 3.0 / np.sqrt(signal + 1.0)
    peak_time += rng.normal(0, 1, size=peak_time.shape) * jitter
    has_signal = signal > 0
    if has_signal.any():
        # the readout window follows the trigger, i.e. the bulk of the light
        peak_time += _T0_NS - np.average(peak_time[has_signal], weights=signal[has_signal])
    peak_time[~has_signal] = rng.uniform(*_READOUT_NS, size=(~has_signal).sum())
    return ToyImage(
        image=image,
        peak_time=np.clip(peak_time, *_READOUT_NS).astype(np.float32),
        true_image=signal.astype(np.int32),
    )
