"""GADF DL3 of observed runs: their events after the gammaness cuts of point-like IRFs, with those IRFs.

Livetime is the time from a run's first to its last event (``DEADC`` 1): right for the mock observation,
which has no dead time; real runs lose some, and their fluxes come out that much too low.

One FITS file per run (obs_id): ``EVENTS`` (EVENT_ID, TIME, RA, DEC,
ENERGY, GAMMANESS, MULTIP, ALT, AZ), ``GTI``, ``POINTING`` and the IRF
extensions of ``compute_irf.py`` (``EFFECTIVE AREA``, ``ENERGY
DISPERSION``, ``BACKGROUND``, ``RAD_MAX``: point-like, the theta cut of the
IRFs); plus the index tables ``hdu-index.fits.gz`` and ``obs-index.fits.gz``
gammapy's ``DataStore`` opens (GADF 0.3).  Times are seconds since MJD
40587 (1970-01-01) UTC, as lstchain writes them.
"""

import operator
from dataclasses import dataclass, replace
from functools import cached_property

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.time import Time
from pyirf.cuts import evaluate_binned_cut

from ..io.dl2 import Reconstruction
from .irf import GH_CUTS_EXTENSION

__all__ = ["IRF_EXTENSIONS", "RunEvents", "gh_cuts_of", "hdu_index", "obs_index", "observed_runs", "run_events",
           "run_hdus"]

#: the IRF extensions a DL3 file carries, with their HDU type and class in the index
IRF_EXTENSIONS = {
    "EFFECTIVE AREA": ("aeff", "aeff_2d"),
    "ENERGY DISPERSION": ("edisp", "edisp_2d"),
    "BACKGROUND": ("bkg", "bkg_2d"),
    "RAD_MAX": ("rad_max", "rad_max_2d"),
}
_MJDREF = Time(40587, format="mjd", scale="utc")
_GADF = {"HDUCLASS": "GADF", "HDUDOC": "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats",
         "HDUVERS": "0.3"}


def gh_cuts_of(irf_hdus):
    """The gammaness cut per bin of reconstructed energy an IRF file was made with (QTable: low, high, cut)."""
    return QTable.read(irf_hdus[GH_CUTS_EXTENSION])


@dataclass
class RunEvents:
    """One observed run as its DL3 file describes it: its good time interval, where it pointed, its events."""

    obs_id: int
    #: where the run's telescopes tracked on the sky (ICRS)
    pointing: SkyCoord
    start: Time
    stop: Time
    location: object
    tel_ids: list
    #: the selected events, as the EVENTS extension holds them (None until ``run_events`` chose them)
    events: QTable | None = None

    @property
    def n_telescopes(self):
        return len(self.tel_ids)

    @property
    def ontime(self):
        return (self.stop - self.start).to(u.s)

    @property
    def middle(self):
        return self.start + (self.stop - self.start) / 2

    @cached_property
    def pointing_altaz(self):
        """The pointing in AltAz at the middle of the run."""
        return self.pointing.transform_to(AltAz(obstime=self.middle, location=self.location))


def observed_runs(events, subarray):
    """{obs_id: RunEvents without events} of the array events of an observed DL2 file
    (``io.dl2.read_subarray_events``), the same for every reconstruction.

    A run's pointing is where its telescopes' pointing points on the sky over
    the run (the median RA/Dec of it at its events' times); its good time
    interval runs from its first to its last event.
    """
    runs = {}
    for obs_id in np.unique(np.asarray(events["obs_id"])):
        run = events[np.asarray(events["obs_id"]) == obs_id]
        time = Time(run["time"])
        frame = AltAz(obstime=time, location=subarray.reference_location)
        tracked = SkyCoord(alt=u.Quantity(run["pointing_altitude"], u.deg),
                           az=u.Quantity(run["pointing_azimuth"], u.deg), frame=frame).icrs
        pointing = SkyCoord(ra=np.median(tracked.ra.wrap_at(tracked.ra[0] + 180 * u.deg)),
                            dec=np.median(tracked.dec), frame="icrs")
        runs[int(obs_id)] = RunEvents(int(obs_id), pointing, time.min(), time.max(), subarray.reference_location,
                                      sorted(subarray.tel_ids))
    return runs


def run_events(events, prefixes, gh_cuts, runs):
    """``runs`` (``observed_runs`` of ``events``) with their events valid in every role of the reconstruction
    ``prefixes`` that pass ``gh_cuts``."""
    chosen_runs = {}
    for obs_id, observed in runs.items():
        run = events[np.asarray(events["obs_id"]) == obs_id]
        valid = np.ones(len(run), dtype=bool)
        for role in ("type", "energy", "geometry"):
            valid &= np.asarray(run[Reconstruction(role, prefixes[role], telescope=False).valid], dtype=bool)
        energy = u.Quantity(run[f"{prefixes['energy']}_energy"], u.TeV)
        gammaness = np.asarray(run[f"{prefixes['type']}_prediction"], dtype=np.float64)
        selected = valid & evaluate_binned_cut(gammaness, energy, gh_cuts, operator.ge)
        geometry = prefixes["geometry"]
        masks = np.asarray(run[f"{geometry}_telescopes"], dtype=bool)
        chosen = QTable({
            "EVENT_ID": np.asarray(run["event_id"], dtype=np.int64),
            "TIME": (Time(run["time"]) - _MJDREF).to(u.s),
            "RA": u.Quantity(run[f"{geometry}_ra"], u.deg), "DEC": u.Quantity(run[f"{geometry}_dec"], u.deg),
            "ENERGY": energy, "GAMMANESS": gammaness,
            "MULTIP": masks.sum(axis=1).astype(np.int32),
            "ALT": u.Quantity(run[f"{geometry}_alt"], u.deg), "AZ": u.Quantity(run[f"{geometry}_az"], u.deg),
        })[selected]
        chosen_runs[obs_id] = replace(observed, events=chosen)
    return chosen_runs


def _time_cards():
    return {"MJDREFI": int(_MJDREF.mjd), "MJDREFF": 0.0, "TIMEUNIT": "s", "TIMESYS": "UTC", "TIMEREF": "TOPOCENTER"}


def run_hdus(run, irf_hdus, target, target_name, creator):
    """The HDUs of one run's DL3 file: EVENTS, GTI, POINTING and the IRF extensions of ``irf_hdus``."""
    start, stop = ((t - _MJDREF).to_value(u.s) for t in (run.start, run.stop))
    middle, pointing_altaz = run.middle, run.pointing_altaz
    location = run.location.geodetic
    common = {
        **_GADF, "OBS_ID": run.obs_id, "DATE-OBS": run.start.utc.isot[:10], "TIME-OBS": run.start.utc.isot[11:],
        "DATE-END": run.stop.utc.isot[:10], "TIME-END": run.stop.utc.isot[11:], "TSTART": start, "TSTOP": stop,
        **_time_cards(), "ONTIME": run.ontime.value, "LIVETIME": run.ontime.value, "DEADC": 1.0,
        "RA_PNT": run.pointing.ra.deg, "DEC_PNT": run.pointing.dec.deg, "ALT_PNT": pointing_altaz.alt.deg,
        "AZ_PNT": pointing_altaz.az.deg, "EQUINOX": 2000.0, "RADECSYS": "ICRS", "OBS_MODE": "WOBBLE",
        "OBJECT": target_name, "RA_OBJ": target.ra.deg, "DEC_OBJ": target.dec.deg,
        "GEOLON": location.lon.deg, "GEOLAT": location.lat.deg, "ALTITUDE": location.height.to_value(u.m),
        "TELESCOP": "CTA-N", "INSTRUME": "LST", "N_TELS": run.n_telescopes,
        "TELLIST": ",".join(map(str, run.tel_ids)), "CREATOR": creator,
    }
    events = fits.BinTableHDU(run.events, name="EVENTS")
    events.header.update({**common, "HDUCLAS1": "EVENTS"})
    gti = fits.BinTableHDU(Table({"START": [start] * u.s, "STOP": [stop] * u.s}), name="GTI")
    gti.header.update({**common, "HDUCLAS1": "GTI"})
    pointing = fits.BinTableHDU(Table({"TIME": [(middle - _MJDREF).to_value(u.s)] * u.s,
                                       "RA_PNT": [run.pointing.ra.deg] * u.deg,
                                       "DEC_PNT": [run.pointing.dec.deg] * u.deg,
                                       "ALT_PNT": [pointing_altaz.alt.deg] * u.deg,
                                       "AZ_PNT": [pointing_altaz.az.deg] * u.deg}), name="POINTING")
    pointing.header.update({**common, "HDUCLAS1": "POINTING"})
    hdus = [fits.PrimaryHDU(), events, gti, pointing]
    for name in IRF_EXTENSIONS:
        irf = irf_hdus[name].copy()
        irf.header["OBS_ID"] = run.obs_id
        hdus.append(irf)
    return fits.HDUList(hdus)


def hdu_index(files):
    """GADF's HDU index of ``files`` ({obs_id: file name}, all in the index's directory)."""
    rows = []
    for obs_id, name in sorted(files.items()):
        for hdu_type, hdu_class, hdu_name in (("events", "events", "EVENTS"), ("gti", "gti", "GTI"),
                                              ("pointing", "pointing", "POINTING"),
                                              *((t, c, n) for n, (t, c) in IRF_EXTENSIONS.items())):
            rows.append((obs_id, hdu_type, hdu_class, ".", name, hdu_name))
    table = Table(rows=rows, names=("OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME"),
                  dtype=(np.int64, "U8", "U10", "U2", "U40", "U20"))
    hdu = fits.BinTableHDU(table, name="HDU_INDEX")
    hdu.header.update({**_GADF, "HDUCLAS1": "INDEX", "HDUCLAS2": "HDU"})
    return fits.HDUList([fits.PrimaryHDU(), hdu])


def obs_index(runs):
    """GADF's observation index of ``runs`` ({obs_id: RunEvents})."""
    rows = []
    for obs_id, run in sorted(runs.items()):
        altaz = run.pointing_altaz
        rows.append({
            "OBS_ID": obs_id, "DATE-OBS": run.start.utc.isot[:10], "TIME-OBS": run.start.utc.isot[11:],
            "DATE-END": run.stop.utc.isot[:10], "TIME-END": run.stop.utc.isot[11:],
            "RA_PNT": run.pointing.ra.deg, "DEC_PNT": run.pointing.dec.deg, "ZEN_PNT": 90 - altaz.alt.deg,
            "ALT_PNT": altaz.alt.deg, "AZ_PNT": altaz.az.deg, "ONTIME": run.ontime.value,
            "LIVETIME": run.ontime.value, "DEADC": 1.0, "TSTART": (run.start - _MJDREF).to_value(u.s),
            "TSTOP": (run.stop - _MJDREF).to_value(u.s), "N_TELS": run.n_telescopes,
            "TELLIST": ",".join(map(str, run.tel_ids)), "EVENT_COUNT": len(run.events),
        })
    table = Table(rows=rows)
    for name in ("RA_PNT", "DEC_PNT", "ZEN_PNT", "ALT_PNT", "AZ_PNT"):
        table[name].unit = u.deg
    for name in ("ONTIME", "LIVETIME", "TSTART", "TSTOP"):
        table[name].unit = u.s
    hdu = fits.BinTableHDU(table, name="OBS_INDEX")
    hdu.header.update({**_GADF, "HDUCLAS1": "INDEX", "HDUCLAS2": "OBS", **_time_cards()})
    return fits.HDUList([fits.PrimaryHDU(), hdu])
