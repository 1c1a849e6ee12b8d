"""One test per shim of ``ctlearn_mlops._compat``: each still does, on the pinned upstream, what it is used for."""

import subprocess
import sys

import numpy as np
import pytest
from traitlets import Int, TraitError

from ctlearn_mlops import _compat

READER = dict(mode="mono", allowed_tels=[1, 2, 3, 4], focal_length_choice="EQUIVALENT",
              channels=["cleaned_image", "cleaned_relative_peak_time"])


def _gamma_files(toy_data, n=2):
    return sorted((toy_data / "train").glob("gamma_*.dl1.h5"))[:n]


def _stock_reader(files, **options):
    from dl1_data_handler.reader import DLImageReader

    return DLImageReader(input_url_signal=files, **{**READER, **options})


def test_check_versions_names_a_package_of_another_version(monkeypatch):
    _compat.check_versions()  # the pinned stack passes
    monkeypatch.setitem(_compat.TARGETS, "ctlearn", "0.0.1")
    with pytest.raises(ImportError, match=r"ctlearn 0\.10\.4 \(shims written for 0\.0\.1\)"):
        _compat.check_versions()


def test_validate_trait_checks_a_value_without_an_instance():
    from traitlets import HasTraits

    class Owner(HasTraits):
        batch_size = Int(1, min=1)

    owner = Owner.__new__(Owner)  # as config.validate_sections does: no __init__
    trait = Owner.class_traits()["batch_size"]
    assert _compat.validate_trait(trait, owner, 3) == 3
    for wrong in ("many", 0):
        with pytest.raises(TraitError):
            _compat.validate_trait(trait, owner, wrong)


def test_parse_command_line_raises_instead_of_exiting():
    from ctapipe.core import Tool

    class Probe(Tool):
        number = Int(1).tag(config=True)
        aliases = {"number": "Probe.number"}

    tool = Probe()
    _compat.parse_command_line(tool, ["--number", "4"])
    assert tool.config.Probe.number == 4
    with pytest.raises(Exception) as raised:
        _compat.parse_command_line(Probe(), ["--number", "four"])
    assert not isinstance(raised.value, SystemExit)


def test_build_for_training_builds_what_fit_builds():
    import keras

    model = keras.Sequential([keras.Input((2,), name="input"), keras.layers.Dense(1, name="energy")])
    model.compile(keras.optimizers.Adam(1e-3), "mae", metrics=[keras.metrics.MeanAbsoluteError(name="mae_energy")])
    assert not model.optimizer.built
    _compat.build_for_training(model, (np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)))
    assert model.optimizer.built and model._compile_metrics.built
    assert {v.path.split("/")[-1] for v in model.optimizer.variables} >= {"iteration", "learning_rate"}


def test_coordination_service_is_configured_with_the_heartbeat():
    code = ("from ctlearn_mlops._compat import configure_coordination_service as c; c(3, 7); "
            "from tensorflow.python.eager import context; s = context.context().coordination_service; "
            "print(s.heartbeat_timeout_in_ms, s.coordinated_job_list[0].num_tasks, s.service_leader)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["7000", "3", "/job:worker/replica:0/task:0"], result.stderr[-2000:]


def test_ctlearn_setup_gets_the_given_strategy_and_its_exit_hook_works():
    import tensorflow as tf
    from ctlearn.tools import train_model

    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"), tf.distribute.get_strategy()):
        with _compat.strategy_for_ctlearn_setup(strategy):
            assert train_model.tf.distribute.MirroredStrategy() is strategy
        assert train_model.tf.distribute.MirroredStrategy is tf.distribute.MirroredStrategy
        # what ctlearn 0.10.4 registers at exit must exist on the given strategy
        assert strategy._extended._collective_ops._lock.locked() is False


@pytest.mark.parametrize("gpus, ctlearns", [(0, False), (1, False), (2, True)])
def test_one_task_trains_under_ctlearns_strategy_only_over_several_gpus(monkeypatch, gpus, ctlearns):
    import tensorflow as tf

    from ctlearn_mlops.distributed import one_task_strategy

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu"] * gpus if kind == "GPU" else [])
    strategy = one_task_strategy()
    assert (strategy is None) == ctlearns
    if not ctlearns:
        assert strategy is tf.distribute.get_strategy()


def test_fit_replaced_hands_the_fit_call_over_and_is_undone():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32)
    original = keras.Model.fit

    def one_epoch(fit, model, args, kwargs):
        return fit(model, *args, **{**kwargs, "epochs": 1})

    with _compat.fit_replaced(one_epoch):
        assert len(model.fit(x, y, epochs=4, verbose=0).history["loss"]) == 1
    assert keras.Model.fit is original
    with pytest.raises(RuntimeError), _compat.fit_replaced(one_epoch):
        raise RuntimeError("the block fails")
    assert keras.Model.fit is original
    assert len(model.fit(x, y, epochs=2, verbose=0).history["loss"]) == 2


def test_n_examples_and_camera_type_of_a_reader(toy_data):
    reader = _stock_reader(_gamma_files(toy_data))
    assert _compat.n_examples(reader) == len(reader.example_identifiers)
    tel_type = next(iter(reader.selected_telescopes))
    assert _compat.camera_type(reader, tel_type) == "LSTCam"


@pytest.mark.parametrize("mode", ["mono", "stereo"])
def test_items_of_a_batch_are_ctlearns(mode, toy_data):
    from ctlearn.core.loader import DLDataLoader

    reader = _stock_reader(_gamma_files(toy_data), mode=mode)
    loader = DLDataLoader(reader, list(range(4)), tasks=["energy"], batch_size=4)
    features, labels = loader[0]
    if mode == "mono":
        batch = reader.generate_mono_batch(list(range(4)))
        again, again_labels = _compat.mono_item_of_columns(loader, {name: batch[name].data for name in batch.colnames})
    else:
        batch = reader.generate_stereo_batch(list(range(4)))
        again, again_labels = _compat.stereo_item(loader, batch)
    np.testing.assert_array_equal(again, features)
    np.testing.assert_array_equal(again_labels["energy"], labels["energy"])


def test_a_stereo_batch_with_the_images_given_is_the_stock_batch(toy_data):
    reader = _stock_reader(_gamma_files(toy_data), mode="stereo")
    events = list(range(3))
    read = []  # the images the stock reader reads for the example rows of these events
    original = reader._append_features

    def reading(batch):
        batch = original(batch)
        read.append(np.asarray(batch["features"]))
        return batch

    reader._append_features = reading
    stock = reader.generate_stereo_batch(events)
    del reader._append_features
    given = _compat.stereo_batch_with_images(reader, events, list(read[0]))
    assert given.colnames == stock.colnames
    np.testing.assert_array_equal(np.asarray(given["features"]), np.asarray(stock["features"]))
    assert not hasattr(reader, "_append_features") or "_append_features" not in vars(reader)


def test_missing_telescopes_get_empty_tables(sst1m_dl1):
    import tables
    from dl1_data_handler import reader as reader_module

    with tables.open_file(sst1m_dl1) as h5:
        present = {int(n.removeprefix("tel_")) for n in h5.root.dl1.event.telescope.parameters._v_children}
    absent = min(set(range(1, 71)) - present)
    path = f"/dl1/event/telescope/parameters/tel_{absent:03d}"
    missing = set()
    with tables.open_file(sst1m_dl1) as h5, _compat.tolerate_missing_telescopes(missing):
        table = reader_module.read_table(h5, path)
        template = reader_module.read_table(h5, f"/dl1/event/telescope/parameters/tel_{min(present):03d}")
        image_group = h5.get_node("/dl1/event/telescope/images")
        assert image_group._f_get_child(f"tel_{absent:03d}") is not None
    assert len(table) == 0 and table.colnames == template.colnames
    assert missing == {(str(sst1m_dl1), absent)}
    with tables.open_file(sst1m_dl1) as h5, pytest.raises(tables.NoSuchNodeError):
        reader_module.read_table(h5, path)  # undone after the block


def test_the_subarray_is_read_once_and_the_examples_do_not_change(toy_data):
    from dl1_data_handler import reader as reader_module

    files = _gamma_files(toy_data, 3)
    calls = []
    original = reader_module.SubarrayDescription.from_hdf

    def counting(path, *args, **kwargs):
        calls.append(path)
        return original(path, *args, **kwargs)

    stock = _stock_reader(files)
    reader_module.SubarrayDescription.from_hdf = staticmethod(counting)
    try:
        with _compat.subarray_read_once():
            once = _stock_reader(files)
    finally:
        reader_module.SubarrayDescription.from_hdf = staticmethod(original)
    assert len(calls) == 1
    assert reader_module.SubarrayDescription.__name__ == "SubarrayDescription"
    assert np.array_equal(np.asarray(once.example_identifiers), np.asarray(stock.example_identifiers))


def test_reader_hooks_can_serve_the_example_table(toy_data):
    from dl1_data_handler.reader import DLImageReader

    files = _gamma_files(toy_data)
    stock = _stock_reader(files)
    built = []

    class Served(_compat.ReaderHooks, DLImageReader):
        def restore_examples(self):
            examples = stock.example_identifiers.copy()
            examples.remove_indices("index")
            _compat.set_example_table(self, examples)
            return True

        def examples_built(self):
            built.append(True)

    class Counted(_compat.ReaderHooks, DLImageReader):
        def examples_built(self):
            built.append(True)

    served = Served(input_url_signal=files, **READER)
    assert not built and served.example_identifiers is not stock.example_identifiers
    assert np.array_equal(np.asarray(served.example_identifiers), np.asarray(stock.example_identifiers))
    assert served.n_signal_events == stock.n_signal_events and served._get_n_events() == stock._get_n_events()
    counted = Counted(input_url_signal=files, **READER)
    assert built == [True]
    assert np.array_equal(np.asarray(counted.example_identifiers), np.asarray(stock.example_identifiers))


def test_hillas_camera_radii_are_the_lstcam_radius_in_deg():
    from ctapipe.reco import HillasReconstructor

    from ctlearn_mlops.toysim.dataset import lst_subarray

    subarray = lst_subarray()
    radii = _compat.hillas_camera_radii_deg(HillasReconstructor(subarray))
    assert set(radii) == set(subarray.tel_ids)
    # LSTCam: ~1.1 m from the centre at 28 m focal length, i.e. ~2.3 deg
    assert all(2.0 < r < 2.6 for r in radii.values()), radii


def test_observed_runs_get_their_mono_examples_with_the_trigger_columns(tmp_path):
    from astropy.table import join
    from ctapipe.io import read_table
    from dl1_data_handler.reader import DLImageReader

    from ctlearn_mlops.toysim.observation import mock_observation_plan, write_mock_run

    run = mock_observation_plan(tmp_path, n_runs=1, run_minutes=0.1, seed=2)[0]
    write_mock_run(run)
    # the stock reader fails on observed runs in mono mode: it keeps trigger columns it did not join
    with pytest.raises(KeyError, match="time"):
        DLImageReader(input_url_signal=[str(run.path)], **READER)

    class Hooked(_compat.ReaderHooks, DLImageReader):
        pass

    examples = Hooked(input_url_signal=[str(run.path)], **READER).example_identifiers
    assert len(examples) > 0
    trigger = read_table(run.path, "/dl1/event/subarray/trigger")
    joined = join(examples[["obs_id", "event_id"]], trigger[["obs_id", "event_id", "time", "event_type"]],
                  keys=["obs_id", "event_id"])
    joined.sort(["obs_id", "event_id"])
    ordered = examples.copy()
    ordered.sort(["obs_id", "event_id"])
    assert np.array_equal(ordered["time"].mjd, joined["time"].mjd)
    assert np.array_equal(np.asarray(ordered["event_type"]), np.asarray(joined["event_type"], dtype=np.int64))
    # the stock order: by obs_id, event_id and tel_id
    keys = np.asarray(examples["obs_id"]) * 10**12 + np.asarray(examples["event_id"]) * 10**3 + \
        np.asarray(examples["tel_id"])
    assert np.all(np.diff(keys) > 0)
    # the stereo examples of the stock reader join the trigger table: they stay the stock ones
    stereo = {**READER, "mode": "stereo"}
    stock = DLImageReader(input_url_signal=[str(run.path)], **stereo)
    hooked = Hooked(input_url_signal=[str(run.path)], **stereo)
    assert np.array_equal(np.asarray(hooked.unique_example_identifiers), np.asarray(stock.unique_example_identifiers))


def test_a_toy_file_has_the_same_timing_parameters_whatever_the_process_fitted_before(tmp_path):
    """ctapipe's timing fit draws from one process-wide generator: without seeded_timing_fit a file written after
    other files (as in a pool) gets other timing parameters than the same file written first."""
    from ctapipe.fitting import FIT_RNG, lts_linear_regression
    from ctapipe.io import read_table

    from ctlearn_mlops.toysim.dataset import DatasetFile, write_toy_file

    def timing(name):
        spec = DatasetFile(path=tmp_path / f"{name}.dl1.h5", particle="gamma", n_showers=60, obs_id=1, seed=5)
        write_toy_file(spec)
        table = read_table(spec.path, "/dl1/event/telescope/parameters/tel_001")
        return np.asarray(table["timing_slope"]), np.asarray(table["timing_intercept"])

    first = timing("first")
    x = np.linspace(0, 1, 50)
    for _ in range(7):  # what other files' fits would have drawn
        lts_linear_regression(x, 2 * x + np.sin(40 * x), samples=5)
    state = FIT_RNG.bit_generator.state
    again = timing("again")
    for before, after in zip(first, again):
        assert len(before) > 10 and np.array_equal(before, after, equal_nan=True)
    assert FIT_RNG.bit_generator.state == state  # the process's generator is given back as it was
    with _compat.seeded_timing_fit(1):  # another seed draws other subsets: the seed is what decides
        drawn = lts_linear_regression(x, 2 * x + np.sin(40 * x), samples=5)[0]
    with _compat.seeded_timing_fit(2):
        assert not np.array_equal(lts_linear_regression(x, 2 * x + np.sin(40 * x), samples=5)[0], drawn)
