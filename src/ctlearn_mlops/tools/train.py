"""Train a CTLearn model for the task of a task config, into a run directory.

Targets ctlearn 0.10.4 ``TrainCTLearnModel`` (Keras 3): everything it offers is kept
(every one of its options, and those of the reader and model classes, can be
set in the YAML); this subclass adds the run directory, event-wise
validation split, seeding, provenance and config checks.
"""

import contextlib
import hashlib
import os
import shutil
import socket
from pathlib import Path

import keras
import numpy as np
import tables
import tensorflow as tf
import yaml
from ctapipe.core import Tool
from ctapipe.core.traits import Bool
from ctlearn.core.loader import DLDataLoader
from ctlearn.core.model import CTLearnModel
from ctlearn.tools.train_model import TrainCTLearnModel

from .._compat import fit_replaced, strategy_for_ctlearn_setup
from ..callbacks import EpochProgress, MLflowEpochLogger, SharesFollowEpochs, StopOnNonFiniteLoss, SyncStop
from ..checkpoints import BestWeights, checkpoint_mode, save_model_atomically, save_weights_atomically
from ..config import VALUE_LIMITS, Project, check_model_accepts_task, check_value_limits
from ..distributed import WorkerShare, cluster_from_environment, fit_on_shares
from ..exceptions import (
    ConfigError,
    InputDataError,
    NoSpaceLeft,
    ResumableStop,
    RunExistsError,
    typed_error,
)
from ..io.dl1 import check_dl1_files
from ..loading.index import ExampleIndex
from ..loading.loader import FastLoader, FastPath
from ..loading.reader import reader_type_for
from ..mlflow_tracking import MLflowRun, MLflowTracking, flatten_config
from ..output import show
from ..resume import (
    BACKUP_DIR,
    EpochBackup,
    GracefulStop,
    StateRestorer,
    StateSaver,
    apply_loader_state,
    backup_epoch,
    backup_file,
    load_state,
)
from ..rundir import (
    CONFIG_FILE,
    MODEL_DIR,
    PROVENANCE_FILE,
    RUN_FILE,
    TRAINING_LOG,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    check_run_name,
    collect_provenance,
    default_run_name,
    give_back_replaced,
    read_run_info,
    remove_temporaries,
    replaced_runs,
    restore_replaced,
    set_aside_for_overwrite,
    utc_now,
    write_run_info,
)
from ..runlock import RunLock
from ..showers import shower_reuse_of
from ..split import split_by_shower
from ..tracking import EventLog, ScalarRecorder
from .event_dl2 import legacy_run_message
from .io_checks import check_writable
from .taskconfig import DataConfigTool

__all__ = ["TrainTool", "main"]

#: settings a resumed run may change: where its runs live (the run is found by its path), how images are read
#: (same batches, bit for bit), tracking
_FREE_ON_RESUME = ("Project.output_root", "FastLoader.", "ExampleIndex.", "MLflowTracking.")
FINAL_WEIGHTS_FILE = "final.weights.h5"


class TrainTool(DataConfigTool, TrainCTLearnModel):
    """Train the model of one task config into <output_root>/<task>/<run_name>/."""

    name = "ctlearn-mlops-train"
    description = __doc__
    examples = """
    python scripts/train_model.py --config configs/energy.yaml
    python scripts/train_model.py --config configs/type.yaml --run-name bigger \\
        --set TrainCTLearnModel.n_epochs=20 --set TrainCTLearnModel.batch_size=32
    """

    aliases = {
        "config": "Tool.config_files",
        "set": "TaskConfigTool.overrides",
        "run-name": "Project.run_name",
        "epochs": "TrainCTLearnModel.n_epochs",
        "seed": "TrainCTLearnModel.random_seed",
    }
    flags = {
        "overwrite": ({"TaskConfigTool": {"overwrite": True}}, "Replace an existing run directory of the same name."),
        "resume": ({"TrainTool": {"resume": True}}, "Continue an unfinished run from its last finished epoch."),
        "auto-resume": (
            {"TrainTool": {"auto_resume": True}},
            "Start the run, or resume it if it exists unfinished, or do nothing if it is finished (for batch jobs).",
        ),
    }
    auto_resume = Bool(False, help="Start, resume or skip the run depending on its state (batch jobs).").tag(config=True)

    resume = Bool(False, help="Continue the unfinished run of this name from its last finished epoch.").tag(config=True)
    classes = [Project, MLflowTracking, FastLoader, ExampleIndex, *TrainCTLearnModel.classes]


    def setup(self):
        """Check everything, take the run, let ctlearn build its reader and network, then open the run's files."""
        self.started = utc_now()
        self._start_cluster()
        project = self.setup_project()
        source = self.task_config_source
        run_name = self._check_before_work(project, source)
        if not self.cluster.is_chief:
            return self._setup_worker(source)
        # from here on the run is ours alone: nothing of it is read or moved before the lock is held
        created = self._take_run(source)
        if self.already_finished:
            return
        self._setup_ctlearn(source, created)
        # ctlearn seeds only the split and shuffling; the weights need Keras' seed too, and
        # deterministic kernels make a resumed run end with the same weights as an uninterrupted one
        keras.utils.set_random_seed(self.random_seed)
        tf.config.experimental.enable_op_determinism()
        self._open_run(project, run_name, source)

    def _start_cluster(self):
        # a run over several SLURM tasks: the strategy must come before any other TensorFlow operation
        self.cluster = cluster_from_environment()
        self.enter_context(contextlib.ExitStack()).callback(self.cluster.close)
        if self.cluster.multi_worker:
            self.log.info("multi-worker training: %s, global batch %d x %d", self.cluster.describe(),
                          self.batch_size, self.cluster.n_workers)

    def _check_before_work(self, project, source):
        """The config's values, inputs, run name and network checked, ctlearn's options set from Project; the
        run's name."""
        self._check_values(source)
        self.signal_files, self.background_files = self.split_inputs(project, "train")
        run_name = check_run_name(project.run_name or default_run_name(), source)
        self.run_dir = project.output_root / project.task / run_name
        self.input_dir_signal = project.signal_dir
        self.file_pattern_signal = project.signal_patterns
        if project.task == "type":
            self.input_dir_background = project.background_dir
            self.file_pattern_background = project.background_patterns
        else:
            # background events would enter an energy or direction fit as if they were gammas
            self.input_dir_background = None
        self.reco_tasks = [project.task]
        self.output_dir = self.run_dir
        self.dl1dh_reader_type = reader_type_for(self.dl1dh_reader_type)
        self.resume_state = None
        self.resumed_config = None  # a resume's config with another number of epochs, written once setup passed
        self.already_finished = False
        self.replaced = None
        check_model_accepts_task(self.model_type, project.task, self.config.get(self.model_type, {}), source)
        check_dl1_files([*self.signal_files, *self.background_files], source)
        check_writable(self.run_dir.parent, "Project.output_root", source)
        return run_name

    def _take_run(self, source):
        """Lock the run, recover what killed writes left, decide between start, resume and overwrite.

        Returns the parent directories this run created (removed again if it is refused).
        """
        created = _make_directories(self.run_dir.parent)
        self.lock = RunLock(self.run_dir, self.name)
        try:
            self.lock.acquire(source)
        except ConfigError:
            _remove_if_empty(created)
            raise
        self.enter_context(contextlib.ExitStack()).callback(self.lock.release)
        resuming = self.run_dir.with_name(f".{self.run_dir.name}.resuming")
        if not self.run_dir.exists() and resuming.exists():
            os.replace(resuming, self.run_dir)  # a resume killed while ctlearn's setup ran
        restored = restore_replaced(self.run_dir)
        if restored is not None:
            self.log.warning("%s: an earlier --overwrite stopped before its new run started; the old run is back",
                             self.run_dir)
        for left in remove_temporaries(self.run_dir):
            self.log.info("removed %s, left by a write that was killed", left)
        if self.auto_resume and (self.run_dir / RUN_FILE).exists():
            if read_run_info(self.run_dir).get("status") == "finished":
                self.already_finished = True
                self.log.info("run %s is already finished: nothing to do", self.run_dir)
                return created
            self.resume = True
        try:
            if self.resume:
                self._check_resumable(source)
            elif self.run_dir.exists() and not self.overwrite:
                raise RunExistsError(
                    f"run directory {self.run_dir} exists; choose another Project.run_name (--run-name), "
                    "pass --overwrite to replace it, or --resume to continue it", source=source, key="Project.run_name",
                )
        except ConfigError:
            if created:  # a refused run leaves no directory behind
                self.lock.release()
                _remove_if_empty(created)
            raise
        return created

    def _setup_ctlearn(self, source, created):
        """ctlearn 0.10.4's setup (reader, split, network), with the run directory out of its way."""
        try:
            with self._run_dir_out_of_the_way(), strategy_for_ctlearn_setup(self.cluster.strategy):
                try:
                    super().setup()
                except (ValueError, OSError, KeyError, tables.NoSuchNodeError) as err:
                    raise InputDataError(
                        f"the training data cannot be used: {type(err).__name__}: {err}", source=source,
                        key="TrainCTLearnModel.batch_size" if "batch" in str(err) else "Project.signal_dir",
                    ) from None
                self._split_by_shower()
                self._check_model_builds(source)
        except BaseException:
            if created:
                self.lock.release()
                _remove_if_empty(created)
            raise

    def _open_run(self, project, run_name, source):
        """The run's config.yaml (a new run; a resume's changed epochs), MLflow, events, callbacks, run.json."""
        self.tracked = None
        if self.resumed_config is not None:
            atomic_write_yaml(self.run_dir / CONFIG_FILE, self.resumed_config)
        if not self.resume:
            resolved = self._resolved_config(run_name)
            tracking = MLflowTracking(parent=self)
            if tracking.enabled:
                # before the run directory exists: a store that does not work leaves nothing behind
                self.tracked = MLflowRun.create(tracking, project.task, self.run_dir, run_name, source)
            self.run_dir.mkdir(parents=True)
            atomic_write_yaml(self.run_dir / CONFIG_FILE, resolved)
            if self.tracked is not None:
                self.tracked.record(self.run_dir)
                self.tracked.log_params(flatten_config(resolved))
        else:
            self.tracked = MLflowRun.of_run_dir(self.run_dir)
            if self.tracked is not None:
                self.tracked.set_status("RUNNING")
        self.provenance_log = self.run_dir / f"{self.name}.provenance.log"
        self.events = EventLog(self.run_dir)
        self._add_callbacks()
        if self.cluster.multi_worker:
            self.cluster.all_reduce_sum(0)  # the run directory is ready: the other tasks may read it
        config_text = (self.run_dir / CONFIG_FILE).read_text()
        write_run_info(
            self.run_dir, task=project.task, run_name=run_name, status="running",
            config_source=source, model_type=self.model_type, n_epochs=self.n_epochs,
            host=socket.gethostname(), pid=os.getpid(), slurm_job_id=os.environ.get("SLURM_JOB_ID"),
            tasks=self.cluster.n_workers,
            **({} if self.resume else {"created": self.started}),
            **({"replaces": self.replaced.name} if self.replaced is not None else {}),
        )
        if self.resume:
            epoch = self.resume_state["epoch"] + 1 if self.resume_state else 0
            self.events.write("resume", from_epoch=epoch, host=socket.gethostname(), slurm_job_id=os.environ.get("SLURM_JOB_ID"))
        else:
            self.events.write(
                "run_start", task=project.task, run_name=run_name, n_epochs=self.n_epochs,
                config_sha256=hashlib.sha256(config_text.encode()).hexdigest(), seed=self.random_seed,
                mlflow_run_id=self.tracked.run_id if self.tracked else None,
            )

    def _check_resumable(self, source):
        if not self.run_dir.exists():
            raise ConfigError(f"nothing to resume: {self.run_dir} does not exist", source=source, key="Project.run_name")
        info = read_run_info(self.run_dir)
        if info.get("status") == "finished":
            raise ConfigError(f"run {self.run_dir} is already finished", source=source, key="Project.run_name")
        if (self.run_dir / BACKUP_DIR / "chief").is_dir():
            # Keras 2's BackupAndRestore of a run started before the move to Keras 3: it cannot go on here
            raise InputDataError(legacy_run_message(self.run_dir).replace("was trained", "was started"),
                                 source=source, key="Project.run_name")
        self._check_same_config(source)
        try:
            last = backup_epoch(self.run_dir / BACKUP_DIR)
            if last is not None:
                self.resume_state = load_state(self.run_dir, last)
        except ValueError as err:
            raise InputDataError(
                f"cannot resume: {err}; the run cannot continue from its last epoch (train it again with --overwrite)",
                source=source, key="Project.run_name",
            ) from None
        if last is not None and self.resume_state is None:
            raise InputDataError(
                f"run {self.run_dir} has a backup of epoch {last + 1} but no saved state for it", source=source,
                key="Project.run_name",
            )
        completed = 0 if last is None else last + 1
        trained_over = info.get("tasks", 1)
        if trained_over != self.cluster.n_workers:
            self.log.warning(
                "run %s was trained over %d task(s) and resumes over %d: the global batch changes from %d to %d",
                self.run_dir, trained_over, self.cluster.n_workers, self.batch_size * trained_over,
                self.batch_size * self.cluster.n_workers)
        self._truncate_training_log(completed)
        self.log.info("resuming %s after %d finished epochs", self.run_dir, completed)

    def _check_same_config(self, source):
        """A resumed run goes on with its own config: another one is refused, naming what differs.

        Only the number of epochs may change (to train longer, or to stop
        sooner); the run's config.yaml then says the new number.
        """
        saved_path = self.run_dir / CONFIG_FILE
        if not saved_path.is_file():
            raise InputDataError(f"cannot resume: {saved_path} is missing (train it again with --overwrite)",
                                 source=source, key="Project.run_name")
        saved = flatten_config(yaml.safe_load(saved_path.read_text()) or {})
        now_config = yaml.safe_load(yaml.safe_dump(self._resolved_config(self.run_dir.name)))
        now = flatten_config(now_config)
        epochs = "TrainCTLearnModel.n_epochs"
        differing = sorted(key for key in set(saved) | set(now)
                           if saved.get(key) != now.get(key) and key != epochs and not key.startswith(_FREE_ON_RESUME))
        if differing:
            changes = "; ".join(f"{key}: {saved.get(key, '(not set)')} -> {now.get(key, '(not set)')}"
                                for key in differing[:6])
            raise ConfigError(
                f"--resume with another config than the run's {saved_path} ({changes}): a run goes on with its own "
                f"config (python scripts/rerun/resume.py --run {self.run_dir}); for other settings start a new run",
                source=source, key=differing[0],
            )
        # written once the resume has passed every check (setup)
        self.resumed_config = now_config if saved.get(epochs) != now.get(epochs) else None
        if self.resumed_config is not None:
            self.log.warning("resumed with %s = %s (was %s): %s says so from now on", epochs, now.get(epochs),
                             saved.get(epochs), saved_path)

    def _setup_worker(self, source):
        """Setup of a task other than the chief: the chief's run, read only; its own files go to scratch."""
        self.tracked, self.events = None, None
        if self.auto_resume and (self.run_dir / RUN_FILE).exists() and \
                read_run_info(self.run_dir).get("status") == "finished":
            self.already_finished = True  # as the chief decides: it looks at the same run.json
            return
        self.output_dir = Path(self.cluster.scratch()) / "run"
        try:
            with strategy_for_ctlearn_setup(self.cluster.strategy):
                super().setup()
        except (ValueError, OSError, KeyError, tables.NoSuchNodeError) as err:
            raise InputDataError(f"the training data cannot be used: {type(err).__name__}: {err}", source=source,
                                 key="Project.signal_dir") from None
        self._split_by_shower()
        keras.utils.set_random_seed(self.random_seed)
        tf.config.experimental.enable_op_determinism()
        self.cluster.all_reduce_sum(0)  # wait for the chief: the run directory is ready to be read
        last = backup_epoch(self.run_dir / BACKUP_DIR)
        if last is not None:
            self.resume = True
            self.resume_state = load_state(self.run_dir, last)
        self._add_callbacks()

    def _check_values(self, source):
        """Values that ctlearn 0.10.4 accepts but cannot train with (a run without a model, a division by zero)."""
        for key in VALUE_LIMITS:
            check_value_limits(key, getattr(self, key.split(".")[1]), source)

    @contextlib.contextmanager
    def _run_dir_out_of_the_way(self):
        """While ctlearn's setup runs (it refuses an existing output directory), the run directory steps aside.

        A resumed run comes back whatever happens.  An overwritten run comes
        back if the new run fails any check; once they all passed it stays
        aside until the new run finishes (``replaced`` in run.json).
        """
        if self.resume:
            aside = self.run_dir.with_name(f".{self.run_dir.name}.resuming")
            os.replace(self.run_dir, aside)
            try:
                yield
            finally:
                os.replace(aside, self.run_dir)
        elif self.run_dir.exists():
            aside = set_aside_for_overwrite(self.run_dir)
            try:
                yield
            except BaseException:
                os.replace(aside, self.run_dir)
                raise
            self.replaced = aside
            self.log.warning("--overwrite: %s set aside as %s; it is deleted when the new run finishes",
                             self.run_dir, aside.name)
        else:
            yield

    def _check_model_builds(self, source):
        """Build the network once, before the run directory exists: a model that cannot be built is a config error.

        ctlearn builds it only in ``start``, after the run directory is made.
        The weights are seeded later, so the real build gets the same weights
        as without this check.
        """
        section = self.model_type
        try:
            # outside the strategy's scope: plain variables, no collective operation of a multi-worker run
            built = CTLearnModel.from_name(
                self.model_type, input_shape=self.training_loader.input_shape, tasks=self.reco_tasks, parent=self,
            )
            model = getattr(built, "model", None)
        except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError) as err:
            raise ConfigError(f"the network cannot be built: {type(err).__name__}: {err}", source=source,
                              key=section) from None
        if not isinstance(model, keras.Model):
            raise ConfigError(
                f"{type(built).__name__} leaves {type(model).__name__ if model is not None else 'nothing'} in "
                "self.model; it must assign a keras.Model (see models/custom_model_template.py)",
                source=source, key=section,
            )
        # ctlearn 0.10.4 gives the losses by output (all but a lone type task): the keys of a dict of outputs,
        # else the output layers' names; Keras would refuse a mismatch only at fit, with a long trace
        try:
            output = model.output
            names = list(output) if isinstance(output, dict) else list(model.output_names)
        except (AttributeError, ValueError):  # a subclassed model not yet called: Keras knows no outputs
            names = []
        unnamed = [task for task in self.reco_tasks if task not in names]
        if names and unnamed and list(self.reco_tasks) != ["type"]:
            raise ConfigError(
                f"{type(built).__name__}'s outputs are named {names}: each output must be named "
                f"after its task ({', '.join(self.reco_tasks)}), e.g. keras.layers.Dense(1, name=\"{unnamed[0]}\") "
                "(see models/custom_model_template.py)", source=source, key=section)
        del built, model

    def _truncate_training_log(self, completed):
        """Keep the rows of finished epochs only (an interrupted epoch may have been logged)."""
        path = self.run_dir / TRAINING_LOG
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < completed]
        atomic_write_text(path, "\n".join(kept) + "\n" if len(kept) > 1 else "")

    def _add_callbacks(self):
        chief, cluster = self.cluster.is_chief, self.cluster
        loaders = self.shares
        if self.resume_state is not None:
            apply_loader_state(self.resume_state, loaders)
        # ctlearn's ModelCheckpoint writes the whole model at every improving epoch, in place: keep the best
        # weights instead (the model is written once at the end, atomically); every task of a multi-worker run
        # saves (reading some variables is a collective), the others into their scratch directory
        self.best_weights = None
        for i, callback in enumerate(self.callbacks):
            if isinstance(callback, keras.callbacks.ModelCheckpoint):
                self.best_weights = self.callbacks[i] = BestWeights(
                    self.run_dir if chief else cluster.scratch(), callback.monitor, checkpoint_mode(callback),
                    callback.save_best_only,
                )
            if isinstance(callback, keras.callbacks.CSVLogger) and not chief:
                callback.filename = str(Path(cluster.scratch()) / TRAINING_LOG)
        stateful = [cb for cb in self.callbacks if isinstance(
            cb, keras.callbacks.ReduceLROnPlateau | keras.callbacks.EarlyStopping | BestWeights)]
        # every task saves its backup (reading some variables is a collective), the chief's is the one kept and
        # read back by all
        restore = backup_file(self.run_dir / BACKUP_DIR, self.resume_state["epoch"]) if self.resume_state else None
        backup = EpochBackup(self.run_dir / BACKUP_DIR if chief else Path(cluster.scratch()) / BACKUP_DIR, restore)
        # the shares learn that the epoch has ended before the state saver asks them for its order
        self.callbacks += [StopOnNonFiniteLoss(), SharesFollowEpochs(list(self.shares.values()))]
        if chief:
            self.callbacks += [EpochProgress(self.log, self.n_epochs), ScalarRecorder(self.run_dir, self.events),
                               StateSaver(self.run_dir, loaders, stateful)]
        self.callbacks += [backup, SyncStop(cluster) if cluster.multi_worker else GracefulStop(),
                           StateRestorer(self.resume_state, stateful)]
        if self.tracked is not None:
            self.callbacks.append(MLflowEpochLogger(self.tracked))

    def _split_by_shower(self):
        """Patched from ctlearn 0.10.4 ``TrainCTLearnModel.setup``: validation by shower, not by image.

        The stock split puts images of one shower on both sides (optimistic
        validation metrics); here all telescopes of a shower, and all reuses
        of a CORSIKA shower, go to one side.  In stereo mode the examples are
        the array events.
        """
        ids = self._examples()
        unit = "events" if self.dl1dh_reader.mode == "stereo" else "images"
        reuse = shower_reuse_of(ids["obs_id"], getattr(self.dl1dh_reader, "simulation_info", None))
        training, validation = split_by_shower(
            ids["obs_id"], ids["event_id"], self.validation_split, self.random_seed, shower_reuse=reuse,
        )
        batch = self.batch_size * self.strategy.num_replicas_in_sync
        for name, indices in (("training", training), ("validation", validation)):
            if len(indices) < batch:
                raise ConfigError(
                    f"the {name} split has {len(indices)} {unit}, fewer than one batch ({batch}): "
                    "lower TrainCTLearnModel.batch_size or add data",
                    source=self.task_config_source, key="TrainCTLearnModel.batch_size",
                )
        fast = FastLoader(parent=self)
        self.fast_path = FastPath(fast, self.dl1dh_reader, "train", self.task_config_source) if fast.enabled else None
        if self.fast_path is not None:
            self.log.info(self.fast_path.describe())
        self.training_loader, self.validation_loader = (
            self._loader(indices, batch, self.random_seed) for indices in (training, validation))
        # every task reads its slice of each global batch (one task: the whole batch); the global loaders keep the
        # order and read nothing
        n_workers = self.cluster.n_workers
        self.shares = {
            name: WorkerShare(loader, self._loader(loader.indices, batch // n_workers, None), self.cluster.rank, n_workers,
                              self.dl1dh_reader.class_weight if name == "training" else None, repeat=name == "training")
            for name, loader in (("training", self.training_loader), ("validation", self.validation_loader))
        }
        self.split_indices = {"training": training, "validation": validation}
        self.log.info("split by shower: %d training and %d validation %s", len(training), len(validation), unit)

    def _loader(self, indices, batch_size, random_seed):
        """A loader of the reader's examples (stock, or the fast path's), as ctlearn 0.10.4 builds them."""
        options = dict(random_seed=random_seed, sort_by_intensity=self.sort_by_intensity,
                       stack_telescope_images=self.stack_telescope_images)
        indices = [int(i) for i in indices]
        if self.fast_path is not None:
            return self.fast_path.loader(indices, self.reco_tasks, batch_size, **options)
        return DLDataLoader(self.dl1dh_reader, indices, tasks=self.reco_tasks, batch_size=batch_size, **options)

    def _examples(self):
        """The reader's examples: its images (mono), its array events (stereo)."""
        reader = self.dl1dh_reader
        return reader.unique_example_identifiers if reader.mode == "stereo" else reader.example_identifiers

    def _resolved_config(self, run_name):
        """The config as used: overrides applied, run name filled in, Project paths absolute."""
        config = {section: dict(values) for section, values in self.task_config.items()}
        # command-line options (--epochs, --TrainCTLearnModel.batch_size=...) belong to the run too
        upstream = set(TrainCTLearnModel.class_traits(config=True)) - set(Tool.class_traits(config=True)) - {"overwrite"}
        for section, values in self.cli_config.items():
            if not hasattr(values, "items"):
                continue
            if section in ("TrainTool", "TrainCTLearnModel"):  # traitlets files aliases under the tool's class
                config.setdefault("TrainCTLearnModel", {}).update({k: v for k, v in values.items() if k in upstream})
            elif section not in ("Tool", "Application", "TaskConfigTool"):
                config.setdefault(section, {}).update(dict(values))
        project = config.setdefault("Project", {})
        project["run_name"] = run_name
        project["task"] = self.project.task
        for key in ("output_root", "signal_dir", "background_dir", "test_signal_dir", "test_background_dir",
                    "custom_model_file"):
            value = getattr(self.project, key)
            if value is not None:
                project[key] = str(value.absolute())
        return config

    def start(self):
        if self.already_finished:
            return
        try:
            with fit_replaced(self._fit):
                super().start()
        except BaseException as err:
            self._ended_by(err)
        finally:
            if self.fast_path is not None:
                self.fast_path.close()

    def _ended_by(self, err):
        """Record how the run ended (training or its final saves raised ``err``) and raise the typed error.

        The chief notes it in run.json and events.jsonl, so a run never stays
        "running" after it failed; a failed replacement (--overwrite) gives the
        old run its name back.
        """
        typed = typed_error(err, self.run_dir, self.runs_over_tasks())
        if self.cluster.is_chief:
            try:
                self._record_end(typed or err)
            except Exception as record_error:  # noqa: BLE001 (the run's own error is the one to report)
                self.log.error("the end of the run could not be recorded in %s: %s", self.run_dir, record_error)
            if self.replaced is not None and not isinstance(typed or err, (ResumableStop, KeyboardInterrupt)):
                # a replacement that failed: the run it was to replace is back under its name
                failed = give_back_replaced(self.run_dir, self.replaced)
                self.replaced = None
                self.log.warning("--overwrite: the new run failed and is kept as %s; %s is the old run again",
                                 failed.name, self.run_dir)
        if typed is None:
            raise err
        raise typed from None

    def _fit(self, fit, model, args, kwargs):
        """ctlearn 0.10.4's one ``fit`` call (``TrainCTLearnModel.start``): the epochs run on the shares.

        ``distributed.fit_on_shares`` trains as ``fit`` would, for one task and
        for several, with every epoch's order decided by the shares (they
        carry the class weights); a resumed run goes on from the epoch after
        its last finished one.
        """
        initial_epoch = self.resume_state["epoch"] + 1 if self.resume_state else 0
        # the strategy ctlearn's setup took (the cluster's, or ctlearn's own over several GPUs)
        return fit_on_shares(self.strategy, model, self.shares, kwargs["epochs"], initial_epoch, kwargs["callbacks"])

    def _record_end(self, err):
        """Note in run.json, events.jsonl and MLflow how training ended; a run without space left says so."""
        interrupted = isinstance(err, (ResumableStop, KeyboardInterrupt))
        reason = str(err) or ("interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else type(err).__name__)
        try:
            if interrupted:
                self.events.write("interruption", reason=reason)
                write_run_info(self.run_dir, status="interrupted", ended=utc_now(), error=reason)
            else:
                self.events.exception(err)
                write_run_info(self.run_dir, status="failed", error=f"{type(err).__name__}: {err}", ended=utc_now())
        except OSError as write_error:
            if not isinstance(typed_error(write_error), NoSpaceLeft):
                raise
            self.log.error("the end of the run could not be recorded (no space left on %s): once this process has "
                           "ended the run shows as resumable (scripts/list_runs.py)", self.run_dir)
        if self.tracked is not None:
            self.tracked.set_status("KILLED" if interrupted else "FAILED")
        if interrupted:
            self.log.warning("%s; resume with: python scripts/rerun/resume.py --run %s", reason, self.run_dir)

    def output_location(self):
        return getattr(self, "run_dir", None)

    def runs_over_tasks(self):
        cluster = getattr(self, "cluster", None)
        return cluster is not None and cluster.multi_worker

    def finish(self):
        if self.already_finished:
            show(f"Run directory: {self.run_dir} (already finished)")
            return
        try:
            self._save_run()
        except BaseException as err:
            self._ended_by(err)
        if not self.cluster.is_chief:
            return
        self._after_finished()
        self.log.info("Run directory: %s", self.run_dir)
        show(f"Run directory: {self.run_dir}")

    def _save_run(self):
        """The trained run's files: weights, model, split, provenance; then run.json says "finished"."""
        if not self.cluster.is_chief:
            # saving reads variables collectively: every task saves, this one where nobody reads it
            scratch = Path(self.cluster.scratch())
            save_weights_atomically(self.model, scratch / FINAL_WEIGHTS_FILE)
            if self.best_weights is not None:
                self.best_weights.restore_best(self.model)
            save_model_atomically(self.model, scratch / MODEL_DIR)
            return
        super().finish()
        save_weights_atomically(self.model, self.run_dir / FINAL_WEIGHTS_FILE)
        if self.best_weights is not None and self.best_weights.restore_best(self.model):
            self.log.info("model of the best epoch (%s = %.4g) saved to %s", self.best_weights.monitor,
                          self.best_weights.best, self.run_dir / MODEL_DIR)
        save_model_atomically(self.model, self.run_dir / MODEL_DIR)
        ids = self._examples()
        split = np.full(len(ids), "", dtype="<U10")
        for name, indices in self.split_indices.items():
            split[indices] = name
        # stereo examples are array events: no telescope
        tel_ids = ids["tel_id"] if self.dl1dh_reader.mode == "mono" else np.full(len(ids), "")
        lines = ["obs_id,event_id,tel_id,split"] + [
            f"{o},{e},{t},{s}" for o, e, t, s in zip(ids["obs_id"], ids["event_id"], tel_ids, split)
        ]
        atomic_write_text(self.run_dir / "split.csv", "\n".join(lines) + "\n")
        inputs = [(p, "DL1 signal") for p in self.signal_files] + [(p, "DL1 background") for p in self.background_files]
        provenance = collect_provenance(inputs, read_run_info(self.run_dir).get("created", self.started), utc_now())
        atomic_write_json(self.run_dir / PROVENANCE_FILE, provenance)
        write_run_info(self.run_dir, status="finished", finished=utc_now())
        self.events.write("run_end", status="finished", epochs=self.n_epochs)

    def _after_finished(self):
        """The run is complete: its resume backup and what it replaced go, MLflow gets its files."""
        shutil.rmtree(self.run_dir / BACKUP_DIR, ignore_errors=True)
        for old in replaced_runs(self.run_dir):
            # the run this one replaced (--overwrite) goes only now that its replacement is complete
            shutil.rmtree(old, ignore_errors=True)
            self.log.info("removed %s, the run replaced by this one", old.name)
        if self.tracked is not None:
            for name in (CONFIG_FILE, TRAINING_LOG, PROVENANCE_FILE, "split.csv", FINAL_WEIGHTS_FILE):
                self.tracked.log_artifact(self.run_dir / name)
            self.tracked.log_artifact(self.run_dir / MODEL_DIR, MODEL_DIR)
            self.tracked.set_status("FINISHED")


def _make_directories(directory):
    """Create ``directory`` and its missing parents; return the ones created, deepest first."""
    created = []
    path = directory.absolute()
    while not path.exists():
        created.append(path)
        path = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    return created


def _remove_if_empty(directories):
    """Remove the directories (deepest first) that a refused run created, if nothing else went into them."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def run_training(argv=None):
    """Run `TrainTool` (scripts/train_model.py, scripts/rerun/resume.py)."""
    TrainTool().run(argv)


def main():
    run_training()
