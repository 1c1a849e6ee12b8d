"""Optional MLflow tracking, switched on by the ``MLflowTracking`` section of a task config.

``mlflow`` is imported only when a run uses it: with tracking off, nothing of
MLflow is imported or written.  The MLflow run of a training run is recorded
in its ``run.json`` (``mlflow``: tracking URI and run id), so a resumed
training, ``test_model.py`` and ``generate_report.py`` log into the same
MLflow run without reading the config again.

Tracking problems after the start (a server that goes away) are logged as
warnings and never stop a training.
"""

import logging
import os
import re
import time
from pathlib import Path as PathlibPath

from ctapipe.core import Component
from ctapipe.core.traits import Bool, Path, Unicode

from .exceptions import ConfigError
from .rundir import RUN_FILE, read_run_info, write_run_info

__all__ = ["MLflowRun", "MLflowTracking", "flatten_config"]

log = logging.getLogger(__name__)

# MLflow accepts letters, digits, _ - . / and spaces in metric names
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./ ]")

# what a run tells MLflow of itself, beyond the config
RUN_DIR_TAG = "ctlearn_mlops.run_dir"
TASK_TAG = "ctlearn_mlops.task"


class MLflowTracking(Component):
    """MLflow tracking of runs: parameters, per-epoch metrics, model and report."""

    enabled = Bool(False, help="Track runs with MLflow (off: mlflow is not even imported).").tag(config=True)

    tracking_uri = Unicode(
        "",
        help=(
            "MLflow tracking URI (e.g. http://mlflow.example.org:5000 or sqlite:////path/mlflow.db). "
            "Empty: a local SQLite store in store_dir."
        ),
    ).tag(config=True)

    store_dir = Path(
        "mlruns", directory_ok=True, file_ok=False,
        help="Directory of the local store (mlflow.db and artifacts/) used when tracking_uri is empty.",
    ).tag(config=True)

    experiment_name = Unicode("", help="MLflow experiment. Empty: ctlearn-mlops-<task>.").tag(config=True)

    def resolved_uri(self):
        if self.tracking_uri:
            return self.tracking_uri, None
        store = PathlibPath(self.store_dir).absolute()
        return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def flatten_config(config, prefix=""):
    """``{"A": {"b": {"c": 1}}}`` -> ``{"A.b.c": "1"}``: MLflow parameters are flat strings."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]  # MLflow's limit for a parameter value
    return flat


def _mlflow():
    # keep MLflow's own chatter (database migrations, run URLs) out of SLURM logs
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    # a tracking server that is down must not hold a job for minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


class MLflowRun:
    """The MLflow run that belongs to one run directory."""

    def __init__(self, tracking_uri, run_id, experiment=None, client=None):
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.experiment = experiment
        self.client = client or _mlflow().MlflowClient(tracking_uri=tracking_uri)
        self._warned = False

    @classmethod
    def create(cls, settings: MLflowTracking, task, run_dir, run_name, source):
        """Create the MLflow run of a new training run; a store that does not work is a config error."""
        uri, artifact_location = settings.resolved_uri()
        if not settings.tracking_uri:
            PathlibPath(settings.store_dir).mkdir(parents=True, exist_ok=True)
        client = _mlflow().MlflowClient(tracking_uri=uri)
        experiment_name = settings.experiment_name or f"ctlearn-mlops-{task}"
        try:
            experiment = client.get_experiment_by_name(experiment_name)
            experiment_id = (
                experiment.experiment_id if experiment is not None
                else client.create_experiment(experiment_name, artifact_location=artifact_location)
            )
            run = client.create_run(
                experiment_id, run_name=run_name,
                tags={RUN_DIR_TAG: str(PathlibPath(run_dir).absolute()), TASK_TAG: task},
            )
        except Exception as err:  # any store or connection problem
            key = "MLflowTracking.tracking_uri" if settings.tracking_uri else "MLflowTracking.store_dir"
            raise ConfigError(f"MLflow tracking at {uri} does not work: {type(err).__name__}: {err}",
                              source=source, key=key) from None
        return cls(uri, run.info.run_id, experiment_name, client)

    def record(self, run_dir):
        """Note the MLflow run in ``run.json``: later steps and resumes log into it."""
        write_run_info(run_dir, mlflow={"tracking_uri": self.tracking_uri, "run_id": self.run_id,
                                        "experiment": self.experiment})

    @classmethod
    def of_run_dir(cls, run_dir):
        """The MLflow run recorded in ``run.json``, or None for an untracked run (mlflow not imported)."""
        if not (PathlibPath(run_dir) / RUN_FILE).exists():
            return None
        info = read_run_info(run_dir).get("mlflow")
        if not info:
            return None
        return cls(info["tracking_uri"], info["run_id"])

    def _safely(self, what, call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except Exception as err:
            if not self._warned:
                log.warning("MLflow: could not %s (%s: %s); the run goes on untracked", what, type(err).__name__, err)
                self._warned = True

    def log_params(self, params):
        Param = _mlflow().entities.Param
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._safely("log parameters", self.client.log_batch, self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics, step=None):
        Metric = _mlflow().entities.Metric
        now = int(time.time() * 1000)
        items = [
            Metric(_METRIC_NAME.sub("_", k), float(v), now, step if step is not None else 0)
            for k, v in metrics.items() if v is not None
        ]
        self._safely("log metrics", self.client.log_batch, self.run_id, metrics=items)

    def log_artifact(self, path, artifact_path=None):
        path = PathlibPath(path)
        if path.is_dir():
            self._safely(f"upload {path}", self.client.log_artifacts, self.run_id, str(path), artifact_path)
        elif path.exists():
            self._safely(f"upload {path}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def set_status(self, status):
        """RUNNING, FINISHED, FAILED or KILLED (an interrupted run that may be resumed)."""
        if status == "RUNNING":
            self._safely("mark the run running", self.client.update_run, self.run_id, status="RUNNING")
        else:
            self._safely(f"mark the run {status}", self.client.set_terminated, self.run_id, status=status)
