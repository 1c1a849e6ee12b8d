"""Training over several SLURM tasks: TensorFlow's MultiWorkerMirroredStrategy, its cluster from SLURM.

A training started by ``srun`` with two or more tasks (``sbatch --ntasks=2``
or ``--nodes=N --ntasks-per-node=1``: ``bash_template.sh`` starts it so) is
one run over all of them:

* the cluster comes from TensorFlow's ``SlurmClusterResolver`` (the step's
  node list and task counts, no ``scontrol``); the ports start at a base
  derived from the job and step ids, so that two jobs on one node do not
  collide; with GPUs (``--gres``) each task gets its own (``auto_set_gpu``);
* a coordination service with a heartbeat: when a task dies, the others
  fail within about ``HEARTBEAT_SECONDS`` instead of waiting forever in a
  collective operation;
* task 0 is the chief: only it writes the run directory; every task takes
  part in the saving callbacks (reading some variables is a collective) and
  the others' copies go to scratch directories that are removed;
* each task reads only its share of every global batch (``WorkerShare``);
  ``TrainCTLearnModel.batch_size`` is the batch of one task (one replica),
  the global batch is ``batch_size x tasks``;
* a stop (SLURM's warning before the time limit) is decided by the chief at
  an epoch end and followed by every task (``SyncStop``);
* the epochs run in ``fit_on_shares`` (see there why not Keras' ``fit``).

With one task and two or more GPUs the strategy is ctlearn's
``MirroredStrategy`` (all GPUs of the node); with one device (a CPU node,
one GPU) TensorFlow's default strategy (see ``one_task_strategy``).  The
task's share is the whole of every batch: the same epoch loop, the same
batches.
"""

import os
import shutil
import tempfile

import numpy as np

__all__ = [
    "HEARTBEAT_SECONDS",
    "Cluster",
    "WorkerShare",
    "cluster_from_environment",
    "fit_on_shares",
    "one_task_strategy",
    "port_base",
]

#: The training iterator of each run over a distributed dataset (several tasks or GPUs), never destroyed (the
#: command-line tools end with ``os._exit``): TensorFlow 2.21 destroys the per-device iterators of a
#: ``MultiDeviceIterator`` only once their autotuning thread wakes from a sleep that grows to 60 s over a run
#: (the per-device datasets take no option of ours); a training process paused there for up to a minute after
#: its last epoch, and met a job's time limit.
_KEPT_UNTIL_EXIT = []

#: how long the coordination service waits for a silent task before the others fail
HEARTBEAT_SECONDS = 10
_PORT_LOW, _PORT_HIGH, _PORT_STRIDE = 20000, 60000, 8


def port_base(job_id, step_id, tasks_per_node=1):
    """The first port of a step: the same for all its tasks, different for other jobs and steps on a node."""
    stride = max(_PORT_STRIDE, tasks_per_node)
    return _PORT_LOW + ((int(job_id) * 7 + int(step_id)) % ((_PORT_HIGH - _PORT_LOW) // stride)) * stride


def _slurm_step_tasks():
    """Tasks of the SLURM step this process belongs to (1 outside ``srun``)."""
    if "SLURM_STEP_ID" not in os.environ or "SLURM_PROCID" not in os.environ:
        return 1
    try:
        return int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
    except ValueError:
        return 1


class Cluster:
    """This process' place in the run: how many tasks, which one, and the strategy."""

    def __init__(self, n_workers=1, rank=0, strategy=None):
        self.n_workers = n_workers
        self.rank = rank
        self.strategy = strategy
        self._scratch = None

    @property
    def multi_worker(self):
        return self.n_workers > 1

    @property
    def is_chief(self):
        return self.rank == 0

    def scratch(self):
        """A directory of this task that nobody reads (removed by ``close``): where non-chief copies go."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix=f"ctlearn-mlops-worker{self.rank}-")
        return self._scratch

    def close(self):
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def all_reduce_sum(self, value):
        """The sum of ``value`` over every task (a collective: every task must call it)."""
        import tensorflow as tf

        strategy = self.strategy
        per_replica = strategy.run(lambda: tf.constant(float(value)))
        return float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))

    def describe(self):
        if not self.multi_worker:
            return "one task"
        return f"task {self.rank} of {self.n_workers}{' (chief)' if self.is_chief else ''}"


def one_task_strategy():
    """The strategy of a one-task run: None (ctlearn's MirroredStrategy) for two or more GPUs, else the default one.

    On one device a MirroredStrategy adds nothing but its input pipeline: its
    distributed dataset reads through a ``MultiDeviceIterator`` whose
    per-device iterator, destroyed after every validation pass, waits for its
    autotuning thread (TensorFlow 2.21): epochs of 5 s instead of 3 s on the
    default data, in 9 of 20 measured.  The default strategy hands the
    dataset over as it is.
    """
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return None
    return tf.distribute.get_strategy()


def cluster_from_environment():
    """The Cluster of this process; for two or more SLURM tasks, creates the MultiWorkerMirroredStrategy.

    One task: the strategy of ``one_task_strategy``.  Must run before any
    other TensorFlow operation of the process.
    """
    n = _slurm_step_tasks()
    if n < 2:
        return Cluster(strategy=one_task_strategy())
    import tensorflow as tf

    from ._compat import configure_coordination_service

    tasks_per_node = max(int(x.split("(")[0]) for x in os.environ["SLURM_STEP_TASKS_PER_NODE"].split(","))
    base = port_base(os.environ.get("SLURM_JOB_ID", 0), os.environ.get("SLURM_STEP_ID", 0), tasks_per_node)
    gpus_per_node = int(os.environ.get("SLURM_GPUS_ON_NODE", "0") or 0)
    if gpus_per_node:
        # one task per GPU: the resolver sets CUDA_VISIBLE_DEVICES of each task
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=base, gpus_per_node=gpus_per_node, gpus_per_task=max(gpus_per_node // tasks_per_node, 1))
    else:
        # on CPU nodes the resolver would ask nvidia-smi for GPUs: tell it there is one "slot" per task and
        # hand the cluster on without accelerators
        slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=base, gpus_per_node=tasks_per_node, gpus_per_task=1, auto_set_gpu=False)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            slurm.cluster_spec(), task_type=slurm.task_type, task_id=slurm.task_id, num_accelerators={},
            rpc_layer="grpc")
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "1") or 1)
        # task/none binds nothing: without this every task would use every core of the node
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    configure_coordination_service(n, HEARTBEAT_SECONDS)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver,
        # no per-operation timeout: TensorFlow (seen with 2.14) starts one thread per collective operation that sleeps for the
        # whole timeout (thousands of threads a minute, until the process cannot start one more); the
        # coordination service's heartbeat is what ends the collectives of a lost task
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING),
    )
    return Cluster(n_workers=n, rank=int(resolver.task_id or 0), strategy=strategy)


class WorkerShare:
    """The share of one task of every global batch of a loader: what a task of a multi-worker run reads.

    ``loader`` (a ``DLDataLoader`` or ``FastDataLoader`` with the global batch
    size) decides the examples and their order, shuffled the same way on every
    task; ``reader_loader`` (the same kind with batch size
    ``global // n_workers`` and no shuffling of its own) reads this task's
    slice of each global batch, rows ``[rank * b, (rank + 1) * b)``.
    ``indices`` is what the resume state keeps: the order of the last epoch
    Keras finished.  With ``class_weight`` each batch carries the weights of
    its examples (Keras applies class weights to datasets of one device only).

    ``repeat`` is for training: one endless stream, reshuffled between epochs.
    Validation (``repeat=False``) gives one pass per iterator: Keras makes a
    new iterator for every validation pass.  The reshuffle between passes (what
    Keras' ``on_epoch_end`` does for one task; it matters because the last,
    incomplete batch is left out) happens when the next pass starts, not when
    one ends: tasks read ahead by different amounts, and a reshuffle at the end
    would give them different orders (overlapping shares).
    """

    def __init__(self, loader, reader_loader, rank, n_workers, class_weight=None, repeat=True):
        self.loader = loader
        self.repeat = repeat
        self.passes = 0
        self.reader_loader = reader_loader
        self.rank = rank
        self.n_workers = n_workers
        self.class_weight = class_weight
        # pass number -> the examples' order of that pass: from the last finished one to those read ahead
        self.orders = {}
        self.started = 0
        self.stopping = False  # set when training ends: the stream ends at the next batch
        self.finished = 0
        self.reader_loader.indices = self._rows(list(loader.indices))

    def __len__(self):
        return len(self.loader)

    @property
    def batch_size(self):
        return self.reader_loader.batch_size

    @property
    def indices(self):
        if self.finished - 1 in self.orders:
            return self.orders[self.finished - 1]
        return list(self.loader.indices)

    @indices.setter
    def indices(self, value):
        self.loader.indices = list(value)
        self.orders, self.started, self.finished = {}, 0, 0

    def on_epoch_end(self):
        self.loader.on_epoch_end()

    def epoch_finished(self):
        self.finished += 1
        for old in [n for n in self.orders if n < self.finished - 1]:
            del self.orders[old]  # never asked for again: the memory of a run does not grow with its epochs

    def _rows(self, order):
        global_batch = self.loader.batch_size
        share = global_batch // self.n_workers
        rows = []
        for i in range(len(self.loader)):
            start = i * global_batch + self.rank * share
            rows.extend(order[start:start + share])
        return rows

    def _weighted(self, batch):
        if not self.class_weight:
            return batch
        features, labels = batch
        classes = np.argmax(np.asarray(labels), axis=-1)
        weights = np.asarray([self.class_weight[int(c)] for c in classes], dtype=np.float32)
        return features, labels, weights

    def batches(self):
        """This task's batches, epoch after epoch (the loader reshuffles between epochs, as Keras would ask)."""
        while True:
            if not self.repeat:
                if self.passes:
                    self.loader.on_epoch_end()
                self.passes += 1
            order = list(self.loader.indices)
            self.orders[self.started] = order
            self.started += 1
            if hasattr(self.reader_loader, "close"):
                self.reader_loader.close()  # what it read ahead was for the previous order
            self.reader_loader.indices = self._rows(order)
            for i in range(len(self)):
                if self.stopping:
                    return
                yield self._weighted(self.reader_loader[i])
            if not self.repeat:
                return
            self.loader.on_epoch_end()


def per_task_dataset(strategy, share):
    """A distributed dataset of a task's share of every batch, and its steps per epoch.

    Over several tasks (one replica each) every task's dataset is its share,
    not to be split again; on one task the global batches are split over the
    node's devices (one device: taken whole).
    """
    import tensorflow as tf

    first = share._weighted(share.reader_loader[0]) if len(share) else None

    def spec(value):
        if isinstance(value, dict):
            return {k: spec(v) for k, v in value.items()}
        value = np.asarray(value)
        return tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype))

    signature = tuple(spec(part) for part in first)

    # No autotuning of the generator (nothing to tune): the destructor of an
    # iterator waits for its autotuning thread to wake (see _KEPT_UNTIL_EXIT).
    options = tf.data.Options()
    options.autotune.enabled = False
    if share.n_workers == 1:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    def dataset(context=None):
        return tf.data.Dataset.from_generator(share.batches, output_signature=signature).with_options(options)

    if share.n_workers > 1:
        return strategy.distribute_datasets_from_function(dataset), len(share)
    return strategy.experimental_distribute_dataset(dataset()), len(share)


def _exhausted(iterator):
    """Pull from a dataset iterator until its end.

    The input pipeline may be inside a call of the Python generator when its
    iterator is destroyed; the destructor then waits for that call, which
    waits for the interpreter lock the destructor holds (seen as a training
    process that hangs after its last epoch).  An iterator pulled to its end
    has no call in flight.
    """
    import tensorflow as tf

    try:
        while True:
            next(iterator)
    except (StopIteration, tf.errors.OutOfRangeError):
        pass
    except Exception:  # noqa: BLE001 - the error of the stream was met and handled where it was raised
        pass


def _local(value):
    """This task's copy of a per-replica value (one replica per task)."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda v: v.values[0] if hasattr(v, "values") else v, value)


def _floats(logs):
    return {name: float(value) for name, value in logs.items()}


def _metrics_of_all_tasks(strategy, model):
    """The model's metric results over every task (a collective).

    Keras' metric variables are sync-on-read: read in the strategy's scope
    they are summed over the tasks; read outside, they hold this task's share.
    """
    with strategy.scope():
        return _floats(model.get_metrics_result())


def fit_on_shares(strategy, model, shares, epochs, initial_epoch=0, callbacks=()):
    """Train ``model`` (compiled in ``strategy``'s scope) on this task's ``shares``, as ``model.fit`` would.

    ``shares``: the ``WorkerShare`` of the training and of the validation
    loader.  Every task of a multi-worker run calls it; returns the History.

    A loop of our own around the model's own ``train_step``/``test_step``
    under ``strategy.run``, for one task and for many:

    * Keras 3's ``fit`` cannot run under a MultiWorkerMirroredStrategy (its
      reduction of per-replica results fails, keras-team/keras#20585);
    * for a ``keras.utils.PyDataset`` (ctlearn's loaders) Keras 3.15's
      ``fit`` calls ``on_epoch_end`` before the first epoch and before every
      validation pass, and opens the next epoch's iterator before it: the
      order of the examples would depend on the path.  Here the shares
      decide every epoch's order, the same for one task and for many.

    Everything else is Keras': the compiled loss, metrics and optimizer
    (gradients all-reduced by the strategy), and the callbacks of the run,
    called as ``fit`` calls them (same logs, ``val_`` metrics,
    ``stop_training``).
    """
    import keras
    import tensorflow as tf

    from ._compat import build_for_training

    training, steps = per_task_dataset(strategy, shares["training"])
    validation, validation_steps = per_task_dataset(strategy, shares["validation"])
    with strategy.scope():
        first = shares["training"]._weighted(shares["training"].reader_loader[0])
        build_for_training(model, first)

    @tf.function
    def train_step(iterator):
        return strategy.run(model.train_step, args=(next(iterator),))

    @tf.function
    def test_step(iterator):
        return strategy.run(model.test_step, args=(next(iterator),))

    callbacks = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=False, model=model, verbose=0, epochs=epochs, steps=steps)
    model.stop_training = False
    callbacks.on_train_begin()
    training_batches = iter(training)
    logs = {}
    try:
        _epochs(strategy, model, callbacks, train_step, test_step, training_batches, validation, steps,
                validation_steps, initial_epoch, epochs, logs)
    finally:
        for share in shares.values():
            share.stopping = True
        _exhausted(training_batches)
        if not isinstance(training, tf.data.Dataset):  # a distributed dataset (the default strategy's is plain)
            _KEPT_UNTIL_EXIT.append(training_batches)
    callbacks.on_train_end(logs)
    return model.history


def _epochs(strategy, model, callbacks, train_step, test_step, training_batches, validation, steps, validation_steps,
            initial_epoch, epochs, logs):
    """The epochs of ``fit_on_shares``; ``logs`` gets the last batch's."""
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        for step in range(steps):
            callbacks.on_train_batch_begin(step)
            logs.clear()
            logs.update(_floats(_local(train_step(training_batches))))
            callbacks.on_train_batch_end(step, logs)
        epoch_logs = _metrics_of_all_tasks(strategy, model)
        model.reset_metrics()
        callbacks.on_test_begin()
        validation_batches = iter(validation)
        try:
            for step in range(validation_steps):
                callbacks.on_test_batch_begin(step)
                test_step(validation_batches)
                callbacks.on_test_batch_end(step)
        finally:
            _exhausted(validation_batches)
        validation_logs = _metrics_of_all_tasks(strategy, model)
        callbacks.on_test_end(validation_logs)
        epoch_logs.update({f"val_{name}": value for name, value in validation_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
