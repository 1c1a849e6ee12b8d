"""Camera images of toy showers, built from ``ctapipe.image.toymodel`` shapes.

Gamma: one skewed Gaussian ellipse along the projected shower axis.
Proton: a wider, jittered main ellipse plus sub-showers and, sometimes, a muon
ring (``RingGaussian``).  Peak times carry a gradient along the major axis
that grows with the impact distance, as in real IACT images.
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from ctapipe.image.toymodel import Gaussian, RingGaussian, SkewedGaussian

__all__ = ["ImageGeometry", "ToyImage", "render_image"]

_T0_NS = 20.0
_READOUT_NS = (0.5, 39.5)


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


def _m(value):
    return value * u.m


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
    """Return a list of (toymodel shape, expected p.e., t0, gradient, psi, centre)."""
    d2m = geometry.deg_to_m
    psi = _axis_angle(geometry)
    length = max(_axis_length(geometry), 0.03 * d2m)
    cx, cy = geometry.maximum
    gradient = _time_gradient(geometry)
    if particle == "gamma":
        width = d2m * (0.04 + 0.03 * geometry.impact / 100.0) * rng.lognormal(0, 0.1)
        shape = SkewedGaussian(
            x=_m(cx), y=_m(cy), length=_m(length), width=_m(width), psi=psi * u.rad, skewness=0.3
        )
        return [(shape, intensity, _T0_NS, gradient, psi, (cx, cy))]

    components = []
    sub_fractions = rng.uniform(0.1, 0.35, size=rng.poisson(1.2))
    main_fraction = max(1.0 - sub_fractions.sum(), 0.25)
    main_psi = psi + rng.normal(0, np.deg2rad(15))
    main_width = d2m * (0.09 + 0.04 * geometry.impact / 100.0) * rng.lognormal(0, 0.25)
    main = Gaussian(
        x=_m(cx), y=_m(cy), length=_m(max(1.3 * length, main_width)), width=_m(main_width), psi=main_psi * u.rad
    )
    main_gradient = gradient + rng.normal(0, 2.0) / d2m
    components.append((main, intensity * main_fraction, _T0_NS, main_gradient, main_psi, (cx, cy)))
    for fraction in sub_fractions:
        sx, sy = cx + rng.normal(0, 0.25 * d2m), cy + rng.normal(0, 0.25 * d2m)
        sub_psi = rng.uniform(0, np.pi)
        sub = Gaussian(
            x=_m(sx), y=_m(sy), length=_m(rng.uniform(0.1, 0.3) * d2m),
            width=_m(rng.uniform(0.05, 0.15) * d2m), psi=sub_psi * u.rad,
        )
        components.append(
            (sub, intensity * fraction, _T0_NS + rng.normal(0, 3.0), rng.normal(0, 3.0) / d2m, sub_psi, (sx, sy))
        )
    if rng.uniform() < 0.1:
        mx = geometry.source[0] + rng.normal(0, 0.4 * d2m)
        my = geometry.source[1] + rng.normal(0, 0.4 * d2m)
        radius = rng.uniform(0.9, 1.2) * d2m
        ring = RingGaussian(x=_m(mx), y=_m(my), radius=_m(radius), sigma=_m(0.05 * d2m))
        # a muon ring's light grows with its radius: 100-400 p.e. per metre of ring circumference in the camera
        # (LSTCam: ~280-1500 p.e. a ring), the rings of the production made with ctapipe 0.23
        ring_pe = rng.uniform(100, 400) * 2 * np.pi * radius
        components.append((ring, ring_pe / _plane_integral(ring, (mx, my), radius + 0.3 * d2m),
                           _T0_NS - 2.0, 0.0, 0.0, (mx, my)))
    return components


def _plane_integral(shape, centre, extent, n=201):
    """The integral of ``shape.pdf`` over the camera plane (a square of half-side ``extent`` m around ``centre``).

    ``expected_signal(camera, intensity)`` puts ``intensity`` times this in an
    unbounded camera.  For the Gaussians of ``ctapipe.image.toymodel`` it is 1;
    ``RingGaussian`` is not normalised to 1, and its normalisation changed
    between ctapipe releases (0.23: 2 pi radius, 0.32: radius, in metres),
    so a ring's light is set through this integral, not through ``intensity``.
    """
    axis = np.linspace(-extent, extent, n)
    x, y = np.meshgrid(centre[0] + axis, centre[1] + axis)
    pdf = u.Quantity(shape.pdf(_m(x.ravel()), _m(y.ravel()))).to_value(u.m**-2)
    return float(pdf.sum() * (axis[1] - axis[0]) ** 2)


def render_image(camera, particle, geometry: ImageGeometry, intensity, nsb_level_pe, rng) -> ToyImage:
    """Draw a noisy calibrated image and its peak times for one telescope."""
    pix_x = camera.pix_x.to_value(u.m)
    pix_y = camera.pix_y.to_value(u.m)
    components = _components(particle, geometry, intensity, rng)

    expected = np.array([shape.expected_signal(camera, q) for shape, q, *_ in components])
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
