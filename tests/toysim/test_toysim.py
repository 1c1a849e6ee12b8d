"""The embedded default data: genuine DL1 that stock readers open, with learnable physics."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import QTable
from ctapipe.coordinates import TelescopeFrame
from ctapipe.io import TableLoader
from dl1_data_handler.reader import DLImageReader
from traitlets.config import Config

from ctlearn_mlops.toysim.dataset import (
    FLAT_TRAINING_PHYSICS,
    IRF_DIR_PROTONS,
    DatasetFile,
    default_dataset_plan,
    flat_gamma_plan,
    irf_dataset_plan,
    write_toy_file,
)
from ctlearn_mlops.toysim.showers import sample_showers

READER_CONFIG = Config({
    "DLImageReader": {
        "allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT",
        "channels": ["cleaned_image", "cleaned_relative_peak_time"],
    }
})


def _files(toy_data, split, particle):
    return sorted(str(p) for p in (toy_data / split).glob(f"{particle}_*.dl1.h5"))


def test_stock_reader_opens_default_data_with_all_task_labels(toy_data):
    reader = DLImageReader(
        input_url_signal=_files(toy_data, "train", "gamma"),
        input_url_background=_files(toy_data, "train", "proton"),
        config=READER_CONFIG,
    )
    assert reader.input_shape == (110, 110, 2)
    assert reader.n_signal_events > 50 and reader.n_bkg_events > 50
    assert set(reader.class_weight) == {0, 1}
    batch = reader.generate_mono_batch(list(range(32)))
    assert batch["features"].shape == (32, 110, 110, 2)
    assert np.isfinite(batch["features"]).all()
    for label in ("log_true_energy", "true_shower_primary_class", "cam_coord_offset_x", "fov_lon", "fov_lat"):
        assert np.isfinite(np.asarray(batch[label], dtype=float)).all(), label


def _telescope_events(path):
    with TableLoader(path, focal_length_choice="EQUIVALENT") as loader:
        return QTable(loader.read_telescope_events(
            ["LST_LST_LSTCam"], dl1_parameters=True, simulated=True, true_parameters=False,
            instrument=False, pointing=True,
        ))


def test_tableloader_reads_truth_parameters_and_pointing(toy_data):
    events = _telescope_events(_files(toy_data, "train", "gamma")[0])
    assert len(events) > 100
    for column in ("true_energy", "true_alt", "true_core_x", "hillas_intensity", "hillas_width",
                   "telescope_pointing_altitude", "impact_distance"):
        assert column in events.colnames, column
    assert set(np.unique(events["true_shower_primary_id"])) == {0}


@pytest.fixture(scope="module")
def gammas_and_protons(toy_data):
    gammas = _telescope_events(_files(toy_data, "train", "gamma")[0])
    protons = _telescope_events(_files(toy_data, "train", "proton")[0])
    clean = lambda t: t[t["hillas_intensity"] > 100]  # noqa: E731
    return clean(gammas), clean(protons)


def test_intensity_grows_with_energy_and_falls_with_impact(gammas_and_protons):
    gammas, _ = gammas_and_protons
    log_e = np.log10(gammas["true_energy"].to_value(u.TeV))
    log_i = np.log10(gammas["hillas_intensity"])
    assert np.corrcoef(log_e, log_i)[0, 1] > 0.7
    light_per_tev = log_i - log_e
    impact = gammas["impact_distance"].to_value(u.m)
    assert np.corrcoef(impact, light_per_tev)[0, 1] < -0.3


def test_gamma_images_are_narrower_than_proton_images(gammas_and_protons):
    gammas, protons = gammas_and_protons
    assert np.median(gammas["hillas_width"]) < 0.6 * np.median(protons["hillas_width"])


def test_gamma_image_axis_points_back_to_the_true_source(gammas_and_protons):
    gammas, _ = gammas_and_protons
    pointing = SkyCoord(
        alt=gammas["telescope_pointing_altitude"], az=gammas["telescope_pointing_azimuth"], frame=AltAz(),
    )
    source = SkyCoord(alt=gammas["true_alt"], az=gammas["true_az"], frame=AltAz()).transform_to(
        TelescopeFrame(telescope_pointing=pointing)
    )
    dx = source.fov_lon.to_value(u.deg) - gammas["hillas_fov_lon"].to_value(u.deg)
    dy = source.fov_lat.to_value(u.deg) - gammas["hillas_fov_lat"].to_value(u.deg)
    psi = gammas["hillas_psi"].to_value(u.rad)
    miss = np.abs(dx * np.sin(psi) - dy * np.cos(psi))  # distance of the source from the major axis
    distance = np.hypot(dx, dy)
    assert np.median(miss) < 0.1
    assert np.median(miss) < 0.4 * np.median(distance)


def test_existing_file_is_not_overwritten(toy_data):
    existing = sorted((toy_data / "test").glob("gamma_*.dl1.h5"))[0]
    before = existing.stat().st_mtime_ns
    with pytest.raises(FileExistsError):
        write_toy_file(DatasetFile(path=existing, particle="gamma", n_showers=5, obs_id=1, seed=1))
    assert existing.stat().st_mtime_ns == before


def test_image_shapes_are_ctapipes_toymodel_bit_for_bit():
    """The production's densities are toymodel's, to the last bit (a Poisson draw can hang on it)."""
    from ctapipe.image.toymodel import Gaussian, RingGaussian, SkewedGaussian

    from ctlearn_mlops.toysim.dataset import lst_subarray
    from ctlearn_mlops.toysim.images import GaussianShape, RingShape, SkewedGaussianShape, _expected_signal

    camera = lst_subarray().tel[1].camera.geometry
    x, y, area = camera.pix_x.to_value(u.m), camera.pix_y.to_value(u.m), camera.pix_area.to_value(u.m**2)
    m = u.m
    rng = np.random.default_rng(7)
    for _ in range(30):
        cx, cy = rng.uniform(-1, 1, 2)
        length = rng.uniform(0.05, 0.5)
        width, psi = rng.uniform(0.02, length), rng.uniform(-np.pi, np.pi)
        pairs = [
            (Gaussian(cx * m, cy * m, length * m, width * m, psi * u.rad), GaussianShape(cx, cy, length, width, psi)),
            (SkewedGaussian(cx * m, cy * m, length * m, width * m, psi * u.rad, 0.3),
             SkewedGaussianShape(cx, cy, length, width, psi)),
            (RingGaussian(cx * m, cy * m, 3 * length * m, width / 3 * m), RingShape(cx, cy, 3 * length, width / 3)),
        ]
        for theirs, ours in pairs:
            np.testing.assert_array_equal(_expected_signal(ours, x, y, area, 120.0), theirs.expected_signal(camera, 120.0))


def test_a_larger_irf_proton_sample_adds_files_and_leaves_the_default_directory_as_it_is(tmp_path):
    default = irf_dataset_plan(tmp_path, n_gamma=48000, n_proton=IRF_DIR_PROTONS, seed=2)
    larger = irf_dataset_plan(tmp_path, n_gamma=48000, n_proton=5 * IRF_DIR_PROTONS, seed=2)
    in_irf = [spec for spec in larger if spec.path.parent.name == "irf"]
    assert in_irf == default  # the same files (paths, seeds, obs_ids) in irf/
    extra = [spec for spec in larger if spec not in default]
    assert {spec.path.parent.name for spec in extra} == {"irf-protons"}
    assert sum(spec.n_showers for spec in extra) == 4 * IRF_DIR_PROTONS
    assert len({spec.obs_id for spec in larger}) == len(larger)
    # a larger sample that is not whole files would put other showers in irf/'s files: refused
    with pytest.raises(ValueError, match="multiple of the showers per file"):
        irf_dataset_plan(tmp_path, n_gamma=0, n_proton=5 * IRF_DIR_PROTONS + 500, seed=2)


def test_the_flat_training_gammas_are_flat_in_log_energy_and_kept_apart_from_the_training_gammas(tmp_path):
    showers = sample_showers(np.random.default_rng(4), 20000, "gamma", FLAT_TRAINING_PHYSICS)
    log_e = np.log10(showers.energy.to_value(u.TeV))
    lo, hi = (np.log10(e.to_value(u.TeV)) for e in (FLAT_TRAINING_PHYSICS.energy_min, FLAT_TRAINING_PHYSICS.energy_max))
    assert lo <= log_e.min() and log_e.max() <= hi
    counts, _ = np.histogram(log_e, bins=6, range=(lo, hi))
    assert np.all(np.abs(counts / counts.mean() - 1) < 0.06)  # flat: ~3,300 a bin, 1.7 % Poisson noise

    flat = flat_gamma_plan(tmp_path, 3000, seed=2)
    assert [spec.n_showers for spec in flat] == [1000, 1000, 1000]
    assert all(spec.physics == FLAT_TRAINING_PHYSICS and spec.path.parent.name == "train" for spec in flat)
    assert not any(spec.path.match("gamma_*.dl1.h5") for spec in flat)  # the other configs' pattern misses them
    others = default_dataset_plan(tmp_path, 12000, 32000, 0.25, seed=2) + irf_dataset_plan(tmp_path, 48000, 200000, 2)
    assert not {spec.obs_id for spec in flat} & {spec.obs_id for spec in others}
    assert flat_gamma_plan(tmp_path, 0, seed=2) == []


def test_a_production_whose_files_would_share_an_obs_id_is_refused_before_writing(tmp_path, capsys):
    from ctlearn_mlops.tools.make_default_data import DefaultDataTool

    from ..conftest import run

    out = tmp_path / "production"
    # 2,250 training gamma files: their obs_ids run into the training protons' block (12000+)
    argv = ["--output-dir", out, "--n-gamma", 30000, "--n-proton", 10, "--n-irf-gamma", 0, "--n-irf-proton", 0,
            "--showers-per-file", 10]
    assert run(DefaultDataTool(), argv, cwd=tmp_path) == 2
    assert "share an obs_id" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.h5"))
