"""Where the mock observation happens: the Crab Nebula, CTA North, and the spectra injected there.

One definition for the toy production that makes the mock observation, the
DL3 writer that names its target and the analysis that compares the fitted
spectrum with the injected one.
"""

import astropy.units as u
from astropy.coordinates import EarthLocation, SkyCoord
from pyirf.spectral import CRAB_HEGRA, IRFDOC_PROTON_SPECTRUM

__all__ = ["CRAB_NEBULA", "CRAB_SPECTRUM", "CTA_NORTH", "PROTON_SPECTRUM"]

#: the Crab Nebula (SIMBAD, ICRS)
CRAB_NEBULA = SkyCoord(ra=83.63308 * u.deg, dec=22.01450 * u.deg, frame="icrs")

#: CTA North's longitude and latitude (La Palma, as gammapy's ``observatory_locations["ctao_north"]``), at the
#: height of the toy production's telescopes (1640 m: the ground the showers and IRFs were simulated for)
CTA_NORTH = EarthLocation(lon="-17d53m31.218s", lat="28d45m43.7904s", height=1640 * u.m)

#: the spectra the mock observation injects, the same the IRFs weight their simulations to
CRAB_SPECTRUM = CRAB_HEGRA
PROTON_SPECTRUM = IRFDOC_PROTON_SPECTRUM
