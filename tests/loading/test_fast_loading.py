"""The fast path: parallel reader, image cache and loader give the stock loader's batches, and fail clearly."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml
from traitlets.config import Config

from ..conftest import REPO, TASKS, run


def _reader(toy_data, task, channels=("cleaned_image", "cleaned_relative_peak_time")):
    from dl1_data_handler.reader import DLImageReader

    config = Config({"DLImageReader": {
        "mode": "mono", "allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT", "channels": list(channels),
    }})
    train = toy_data / "train"
    background = sorted(map(str, train.glob("proton_*.h5"))) if task == "type" else []
    return DLImageReader(input_url_signal=sorted(map(str, train.glob("gamma_*.h5"))), input_url_background=background,
                         config=config)


def _assert_same_batch(stock, fast):
    assert np.array_equal(stock[0], fast[0], equal_nan=True)
    stock_labels, fast_labels = stock[1], fast[1]
    if not isinstance(stock_labels, dict):
        stock_labels, fast_labels = {"": stock_labels}, {"": fast_labels}
    assert stock_labels.keys() == fast_labels.keys()
    for key in stock_labels:
        assert stock_labels[key].dtype == fast_labels[key].dtype
        assert np.array_equal(stock_labels[key], fast_labels[key]), key


@pytest.fixture(scope="module")
def image_caches(toy_data, tmp_path_factory):
    from ctlearn_mlops.loading.cache import write_image_cache

    root = tmp_path_factory.mktemp("cache")
    caches = {task: write_image_cache(_reader(toy_data, task), root / f"{task}.images.h5") for task in ("energy", "type")}
    caches["type-lzf"] = write_image_cache(_reader(toy_data, "type"), root / "type-lzf.images.h5", compression="lzf")
    return caches


@pytest.mark.parametrize("task", TASKS)
def test_fast_loader_batches_are_the_stock_batches_bit_for_bit(task, toy_data, image_caches):
    from ctlearn.core.loader import DLDataLoader

    from ctlearn_mlops.loading.loader import FastDataLoader
    from ctlearn_mlops.loading.pool import WorkerPool
    from ctlearn_mlops.loading.sources import CachedImageSource, DL1ImageSource

    reader = _reader(toy_data, task)
    n = len(reader.example_identifiers)
    cache = image_caches["type" if task == "type" else "energy"]
    batch_bytes = 32 * int(np.prod(reader.input_shape)) * 4
    # (source, workers, shared-memory result slots: none means results are pickled)
    sources = {"in-process": (DL1ImageSource.of_reader(reader), 0, ()),
               "2 workers": (DL1ImageSource.of_reader(reader), 2, (batch_bytes, 6)),
               "cache, 1 worker, pickled": (CachedImageSource(cache), 1, ()),
               "cache, 1 worker, slots": (CachedImageSource(cache), 1, (batch_bytes, 5))}
    if task == "type":
        sources["lzf cache"] = (CachedImageSource(image_caches["type-lzf"]), 0, ())
    for name, (source, workers, slots) in sources.items():
        pool = WorkerPool(source, workers, *slots) if workers else None
        try:
            stock = DLDataLoader(reader, list(range(n)), tasks=[task], batch_size=32, random_seed=7)
            fast = FastDataLoader(reader, list(range(n)), tasks=[task], batch_size=32, random_seed=7, source=source,
                                  pool=pool, prefetch=3)
            for _epoch in range(2):
                for index in (0, 1, 2, len(stock) - 1):
                    _assert_same_batch(stock[index], fast[index])
                    assert len(fast._pending) <= 3, name
                stock.on_epoch_end()
                fast.on_epoch_end()
        finally:
            if pool is not None:
                pool.close()


def test_batches_kept_by_the_consumer_keep_their_images_and_give_their_slots_back(toy_data, image_caches):
    """A batch read through a worker is handed out in its shared-memory slot (no copy): the slot is not reused
    while any array of the batch lives, and comes back when the last one is gone."""
    import gc

    from ctlearn.core.loader import DLDataLoader

    from ctlearn_mlops.loading.loader import FastDataLoader
    from ctlearn_mlops.loading.pool import WorkerPool
    from ctlearn_mlops.loading.sources import CachedImageSource

    reader = _reader(toy_data, "energy")
    n = len(reader.example_identifiers)
    source = CachedImageSource(image_caches["energy"])
    with WorkerPool(source, 1, 16 * int(np.prod(reader.input_shape)) * 4, 4) as pool:
        stock = DLDataLoader(reader, list(range(n)), tasks=["energy"], batch_size=16, random_seed=3)
        fast = FastDataLoader(reader, list(range(n)), tasks=["energy"], batch_size=16, random_seed=3, source=source,
                              pool=pool, prefetch=2)
        assert len(fast) > 8
        kept = [fast[i][0][1:] for i in range(len(fast))]  # views of each batch's images: more batches than slots
        for index, images in enumerate(kept):
            assert np.array_equal(images, stock[index][0][1:], equal_nan=True), index
        assert pool.free_slots < 4  # the slots of the last batches are still lent
        del kept, images
        fast.close()
        gc.collect()
        assert pool.free_slots == 4
        # a batch that outlives its pool keeps its memory until dropped
        last = fast[0][0]
    assert np.array_equal(last, stock[0][0], equal_nan=True)


def test_prediction_loader_keeps_the_last_partial_batch(toy_data):
    from ctlearn_mlops.loading.loader import FastDataLoader
    from ctlearn_mlops.loading.sources import DL1ImageSource

    reader = _reader(toy_data, "energy")
    n = len(reader.example_identifiers)
    loader = FastDataLoader(reader, list(range(n)), tasks=[], batch_size=64, source=DL1ImageSource.of_reader(reader),
                            complete=True)
    assert sum(len(loader[i][0]) for i in range(len(loader))) == n


def test_stale_cache_is_refused_naming_what_changed(toy_data, image_caches, tmp_path):
    from ctlearn_mlops.loading.cache import StaleCacheError, check_cache

    check_cache(image_caches["energy"], _reader(toy_data, "energy"))
    with pytest.raises(StaleCacheError, match="channels"):
        check_cache(image_caches["energy"], _reader(toy_data, "energy", channels=("image", "peak_time")))
    with pytest.raises(StaleCacheError, match="other files"):
        check_cache(image_caches["energy"], _reader(toy_data, "type"))
    with pytest.raises(StaleCacheError, match="not an image cache"):
        (tmp_path / "junk.h5").write_bytes(b"not hdf5")
        check_cache(tmp_path / "junk.h5", _reader(toy_data, "energy"))


def test_a_worker_that_dies_raises_instead_of_hanging(toy_data):
    from ctlearn_mlops.loading.pool import LoaderWorkerError, WorkerPool
    from ctlearn_mlops.loading.sources import DL1ImageSource

    reader = _reader(toy_data, "energy")
    ids = reader.example_identifiers
    rows = [np.asarray(ids[c][:8]) for c in ("file_index", "table_index", "tel_id", "tel_type_id")]
    pool = WorkerPool(DL1ImageSource.of_reader(reader), 2)
    assert pool.result(pool.submit("read", *rows), "a batch").shape[0] == 8
    os.kill(pool._processes[0].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(LoaderWorkerError, match="died"):
        for _ in range(20):
            pool.result(pool.submit("read", *rows), "a batch")
            time.sleep(0.2)
    assert time.monotonic() - start < 30
    pool.close()


def test_a_failing_read_names_the_problem(toy_data, tmp_path):
    from ctlearn_mlops.loading.pool import LoaderWorkerError, WorkerPool
    from ctlearn_mlops.loading.sources import CachedImageSource

    with WorkerPool(CachedImageSource(tmp_path / "missing.images.h5"), 1) as pool, \
            pytest.raises(LoaderWorkerError, match="missing.images.h5"):
        pool.result(pool.submit("read_rows", np.arange(4)), "batch 0")


_HOLD_POOL = textwrap.dedent("""
    import signal, sys, time
    from ctlearn_mlops.loading.pool import WorkerPool
    from ctlearn_mlops.loading.sources import CachedImageSource
    if __name__ == "__main__":
        # a program in a terminal's foreground takes Ctrl-C; a suite started as a background job of a script
        # inherits SIGINT ignored, and so would this process
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pool = WorkerPool(CachedImageSource("unused.h5"), 2)
        print(" ".join(str(p.pid) for p in pool._processes), flush=True)
        time.sleep(600)
""")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_workers_do_not_outlive_the_main_process(how, tmp_path):
    script = tmp_path / "hold.py"
    script.write_text(_HOLD_POOL)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    workers = [int(p) for p in process.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    if how == "ctrl-c":  # the terminal signals the whole foreground group
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


@pytest.mark.slow
def test_train_and_predict_on_the_fast_path_match_the_stock_predictions(task_config, tmp_path):
    import h5py

    from ctlearn_mlops.tools.image_cache import ImageCacheTool
    from ctlearn_mlops.tools.predict import PredictTool
    from ctlearn_mlops.tools.train import TrainTool

    cache_dir = tmp_path / "cache"
    config = task_config("type", FastLoader={"enabled": True, "workers": 2, "cache_dir": str(cache_dir)})
    # training refuses a cache that does not exist yet, before making the run directory
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 2
    assert not (tmp_path / "models" / "type" / "tiny").exists()
    assert run(ImageCacheTool(), ["--config", config], cwd=tmp_path) == 0
    with h5py.File(cache_dir / "train.images.h5") as f:
        assert f["images"].chunks is None and "sources" in f.attrs and "settings" in f.attrs
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 0
    assert run(PredictTool(), ["--config", config, "--run", "tiny"], cwd=tmp_path) == 0
    stock = yaml.safe_load(config.read_text())
    stock["FastLoader"]["enabled"] = False
    stock_config = tmp_path / "stock.yaml"
    stock_config.write_text(yaml.safe_dump(stock))
    assert run(PredictTool(), ["--config", stock_config, "--run", "tiny", "--name", "stock"], cwd=tmp_path) == 0

    from ctlearn_mlops.io.dl2 import read_telescope_events

    dl2 = tmp_path / "models" / "type" / "tiny" / "dl2"
    fast, reference = read_telescope_events(dl2 / "test.dl2.h5"), read_telescope_events(dl2 / "stock.dl2.h5")
    assert len(fast) == len(reference) > 0 and fast["CTLearn_tel_is_valid"].any()
    np.testing.assert_array_equal(fast["CTLearn_tel_prediction"], reference["CTLearn_tel_prediction"])


def test_cache_mode_of_extract_only_images_has_help():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "data_processing" / "extract_only_images.py"), "--image-cache", "--help"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0 and "cache_dir" in result.stdout + result.stderr
