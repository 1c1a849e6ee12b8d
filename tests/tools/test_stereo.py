"""Stereo models: whole array events as one input, trained, tested and reported through our tools."""

import json

import numpy as np
import pytest
import yaml
from ctapipe.io import read_table
from traitlets.config import Config

from ctlearn_mlops.io import dl2
from ctlearn_mlops.tools.predict import PredictTool
from ctlearn_mlops.tools.report import ReportTool
from ctlearn_mlops.tools.train import TrainTool

from ..conftest import run, shrink_config

pytestmark = pytest.mark.slow


def _stereo_reader(toy_data, task):
    from ctlearn_mlops.loading.reader import ImageReader

    config = Config({"DLImageReader": {"mode": "stereo", "allowed_tels": [1, 2, 3, 4],
                                       "focal_length_choice": "EQUIVALENT",
                                       "channels": ["cleaned_image", "cleaned_relative_peak_time"]}})
    train = toy_data / "train"
    background = sorted(map(str, train.glob("proton_*.h5"))) if task == "type" else []
    return ImageReader(input_url_signal=sorted(map(str, train.glob("gamma_*.h5"))), input_url_background=background,
                       config=config)


@pytest.mark.parametrize("stack, by_intensity", [(True, False), (False, True)])
def test_stereo_fast_path_gives_the_stock_stereo_batches_bit_for_bit(stack, by_intensity, toy_data, tmp_path):
    from ctlearn.core.loader import DLDataLoader

    from ctlearn_mlops.loading.cache import write_image_cache
    from ctlearn_mlops.loading.loader import FastDataLoader
    from ctlearn_mlops.loading.pool import WorkerPool
    from ctlearn_mlops.loading.sources import CachedImageSource, DL1ImageSource

    reader = _stereo_reader(toy_data, "type")
    n_events = len(reader.unique_example_identifiers)
    cache = write_image_cache(reader, tmp_path / "stereo.images.h5")
    options = dict(tasks=["type"], batch_size=16, random_seed=5, stack_telescope_images=stack,
                   sort_by_intensity=by_intensity)
    for name, source, workers in (("DL1, in process", DL1ImageSource.of_reader(reader), 0),
                                  ("DL1, 2 workers", DL1ImageSource.of_reader(reader), 2),
                                  ("image cache, 1 worker", CachedImageSource(cache), 1)):
        pool = WorkerPool(source, workers) if workers else None
        try:
            stock = DLDataLoader(reader, list(range(n_events)), **options)
            fast = FastDataLoader(reader, list(range(n_events)), source=source, pool=pool, prefetch=2, **options)
            for _epoch in range(2):
                for index in (0, 1, len(stock) - 1):
                    (stock_features, stock_labels), (fast_features, fast_labels) = stock[index], fast[index]
                    assert stock_features.dtype == fast_features.dtype, name
                    assert np.array_equal(stock_features, fast_features), name
                    assert np.array_equal(stock_labels, fast_labels), name
                stock.on_epoch_end()
                fast.on_epoch_end()
        finally:
            if pool is not None:
                pool.close()


@pytest.mark.parametrize("task", ["type", "energy"])
def test_stereo_configs_train_test_and_report_per_array_event(task, toy_data, tmp_path):
    config = shrink_config(task, toy_data, tmp_path / "models", config_name=f"{task}_stereo",
                           FastLoader={"enabled": True, "workers": 1})
    config["TrainCTLearnModel"].update(batch_size=4, validation_split=0.2)  # the small sample has ~100 gamma events
    config.setdefault("ReportTool", {})["reports_root"] = str(tmp_path / "reports")
    path = tmp_path / f"{task}_stereo.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run(TrainTool(), ["--config", path], cwd=tmp_path) == 0
    run_dir = tmp_path / "models" / task / "tiny"
    assert run(PredictTool(), ["--config", path, "--run", "tiny"], cwd=tmp_path) == 0
    dl2_file = run_dir / "dl2" / "test.dl2.h5"
    role = dl2.ROLE_OF_TASK[task]
    assert dl2.prefixes_in(dl2_file, role) == ["CTLearnStereo", "HillasBDT"]
    assert dl2.prefixes_in(dl2_file, role, telescope=True) == ["HillasBDT"]
    stereo = read_table(dl2_file, dl2.subarray_table_path(role, "CTLearnStereo"))
    assert len(stereo) == len(read_table(dl2_file, "/dl1/event/subarray/trigger"))
    assert stereo["CTLearnStereo_is_valid"].any()
    assert run(ReportTool(), ["--config", path, "--run", "tiny"], cwd=tmp_path) == 0
    metrics = json.loads((tmp_path / "reports" / task / "tiny" / "metrics.json").read_text())
    assert metrics["level"] == "subarray" and metrics["network"] == "CNN stereo"
    headline = "auc" if task == "type" else "resolution"
    assert {"CNN stereo", "Hillas BDT"} <= set(metrics["headline"][headline])
