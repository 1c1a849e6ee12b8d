"""A ctapipe ``EventSource`` that simulates toy showers in a real subarray."""

import astropy.units as u
import numpy as np
from astropy.time import Time
from ctapipe.containers import (
    ArrayEventContainer,
    ArrayPointingContainer,
    DL1CameraContainer,
    EventIndexContainer,
    EventType,
    ObservationBlockContainer,
    SchedulingBlockContainer,
    SimulatedCameraContainer,
    SimulatedEventContainer,
    SimulatedShowerContainer,
    SimulationConfigContainer,
    TelescopeImpactParameterContainer,
    TelescopePointingContainer,
    TelescopeTriggerContainer,
    TriggerContainer,
)
from ctapipe.io import DataLevel, EventSource

from .images import ImageGeometry, render_image
from .showers import (
    PRIMARY_ID,
    ToyPhysics,
    camera_positions,
    impact_distance,
    light_pool,
    sample_showers,
)

__all__ = ["ToyEventSource"]

#: the clock of simulation runs: an event every 10 ms from here
_SIMULATION_START = Time("2024-01-01T00:00:00", scale="tai")

# slant depths relative to the shower maximum that define an image's extent
_HEAD_OFFSET = -150.0
_TAIL_OFFSET = 200.0


class ToyEventSource(EventSource):
    """Simulated gamma or proton showers seen by the telescopes of ``subarray``.

    Not selected automatically for any file (``is_compatible`` is False): build
    it explicitly.  ``input_url`` only names the geometry source for provenance.
    """

    def __init__(self, input_url, subarray, particle, n_showers, obs_id, seed, physics=None, **kwargs):
        super().__init__(input_url=input_url, **kwargs)
        self._subarray = subarray
        self.particle = particle
        self.obs_id = int(obs_id)
        self.physics = physics or ToyPhysics()
        self.rng = np.random.default_rng(seed)
        self.n_showers = int(n_showers)
        self.showers = self._sample_showers()
        self._prepare_geometry()

    def _sample_showers(self):
        return sample_showers(self.rng, self.n_showers, self.particle, self.physics)

    def _prepare_geometry(self):
        subarray = self._subarray

        self._tel_ids = np.array(subarray.tel_ids)
        positions = np.stack([subarray.positions[t].to_value(u.m) for t in self._tel_ids])
        self._impact = impact_distance(self.showers, positions)
        self._shower_particles = self._particles()
        self._light_yield = np.where(
            self._shower_particles == "gamma", self.physics.gamma_light_yield, self.physics.proton_light_yield,
        )
        x_max = self.showers.x_max.to_value(u.g / u.cm**2)[:, None]
        depths = np.hstack([
            np.full_like(x_max, np.inf), x_max + _HEAD_OFFSET, x_max, x_max + _TAIL_OFFSET,
        ])
        camera = subarray.tel[self._tel_ids[0]].camera.geometry
        self._focal_length = camera.frame.focal_length
        self._deg_to_m = (self._focal_length * np.deg2rad(1.0)).to_value(u.m)
        self._shower_pointings = self._shower_pointing()
        self._cam_x, self._cam_y = camera_positions(
            self.showers, positions, depths, subarray.reference_location.height,
            self._focal_length, self.physics, pointing=self._shower_pointings,
        )

    def _pointing(self, shower):
        """(alt, az) the telescopes point to while ``shower`` is seen."""
        if self._shower_pointings is None:
            return self.physics.pointing_alt, self.physics.pointing_az
        alt, az = self._shower_pointings
        return alt[shower], az[shower]

    def _particles(self):
        """The particle of every shower (one for a simulation run)."""
        return np.full(self.n_showers, self.particle)

    def _shower_pointing(self):
        """Per-shower (alt, az) pointing for ``camera_positions``; None: the physics' fixed pointing."""
        return None

    def _event_time(self, shower):
        return _SIMULATION_START + shower * 0.01 * u.s

    def _fill_truth(self, event, shower, images):
        """The simulation truth of ``event`` (what an observed run does not have)."""
        s = self.showers
        event.simulation = SimulatedEventContainer(
            shower=SimulatedShowerContainer(
                energy=s.energy[shower],
                alt=s.alt[shower],
                az=s.az[shower],
                core_x=s.core_x[shower],
                core_y=s.core_y[shower],
                h_first_int=s.h_first_int[shower].to(u.m),
                x_max=s.x_max[shower],
                shower_primary_id=PRIMARY_ID[self.particle],
            )
        )
        for tel_id, (tel_index, toy) in images.items():
            event.simulation.tel[tel_id] = SimulatedCameraContainer(
                true_image_sum=int(toy.true_image.sum()),
                true_image=toy.true_image,
                impact=TelescopeImpactParameterContainer(
                    distance=self._impact[shower, tel_index] * u.m,
                    distance_uncert=0 * u.m,
                ),
            )

    @staticmethod
    def is_compatible(file_path):
        return False

    @property
    def subarray(self):
        return self._subarray

    @property
    def is_simulation(self):
        return True

    @property
    def datalevels(self):
        return (DataLevel.DL1_IMAGES,)

    @property
    def observation_blocks(self):
        return {self.obs_id: ObservationBlockContainer(obs_id=np.uint64(self.obs_id), sb_id=np.uint64(self.obs_id))}

    @property
    def scheduling_blocks(self):
        return {self.obs_id: SchedulingBlockContainer(sb_id=np.uint64(self.obs_id))}

    @property
    def simulation_config(self):
        p = self.physics
        return {
            self.obs_id: SimulationConfigContainer(
                run_number=self.obs_id,
                energy_range_min=p.energy_min,
                energy_range_max=p.energy_max,
                spectral_index=p.spectral_index,
                n_showers=self.n_showers,
                shower_reuse=1,
                min_alt=p.pointing_alt.to(u.rad),
                max_alt=p.pointing_alt.to(u.rad),
                min_az=p.pointing_az.to(u.rad),
                max_az=p.pointing_az.to(u.rad),
                diffuse=bool(p.viewcone > 0),
                min_viewcone_radius=0 * u.deg,
                max_viewcone_radius=p.viewcone.to(u.deg),
                min_scatter_range=0 * u.m,
                max_scatter_range=p.scatter_radius,
                core_pos_mode=0,
                prod_site_alt=self._subarray.reference_location.height,
            )
        }

    def _geometry(self, shower, tel_index):
        x, y = self._cam_x[shower, tel_index], self._cam_y[shower, tel_index]
        return ImageGeometry(
            source=(x[0], y[0]), head=(x[1], y[1]), maximum=(x[2], y[2]), tail=(x[3], y[3]),
            impact=float(self._impact[shower, tel_index]), deg_to_m=self._deg_to_m,
        )

    def _generator(self):
        p = self.physics
        s = self.showers
        counter = 0
        for shower in range(self.n_showers):
            if self.max_events is not None and counter >= self.max_events:
                return
            expected = (
                self._light_yield[shower] * s.energy[shower].to_value(u.TeV) * s.light_scale[shower]
                * light_pool(self._impact[shower], p)
            )
            particle = str(self._shower_particles[shower])
            images = {}
            for tel_index, tel_id in enumerate(self._tel_ids):
                # a telescope far outside the light pool cannot trigger: skip the rendering
                if expected[tel_index] < 0.5 * p.trigger_threshold_pe:
                    continue
                camera = self._subarray.tel[tel_id].camera.geometry
                toy = render_image(
                    camera, particle, self._geometry(shower, tel_index),
                    expected[tel_index], p.nsb_level_pe, self.rng,
                )
                if toy.true_image.sum() >= p.trigger_threshold_pe:
                    images[int(tel_id)] = (tel_index, toy)
            if not images:
                continue

            event = ArrayEventContainer()
            event.count = counter
            event.index = EventIndexContainer(obs_id=self.obs_id, event_id=shower + 1)
            time = self._event_time(shower)
            event.trigger = TriggerContainer(
                time=time, tels_with_trigger=sorted(images), event_type=EventType.SUBARRAY,
            )
            pointing_alt, pointing_az = self._pointing(shower)
            event.monitoring.pointing = ArrayPointingContainer(
                array_altitude=pointing_alt.to(u.rad), array_azimuth=pointing_az.to(u.rad),
            )
            for tel_id, (_tel_index, toy) in images.items():
                event.trigger.tel[tel_id] = TelescopeTriggerContainer(time=time)
                event.monitoring.tel[tel_id].pointing = TelescopePointingContainer(
                    altitude=pointing_alt.to(u.rad), azimuth=pointing_az.to(u.rad),
                )
                event.dl1.tel[tel_id] = DL1CameraContainer(
                    image=toy.image, peak_time=toy.peak_time, is_valid=True,
                )
            self._fill_truth(event, shower, images)
            counter += 1
            yield event
