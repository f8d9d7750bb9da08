"""One training run over several processes: `--strategy multi-worker`.

Built on what the engines already have, with no layer of our own: on JAX,
`keras.distribution.initialize` joins the processes (JAX's distributed runtime;
gloo collectives on CPU) and `training.recipe.setup_runtime` then spreads
`keras.distribution.DataParallel` over the global device mesh. Every process
feeds its own shard of each global batch (`training.data.build_datasets`'s
`shard`); Keras assembles the global batch from them
(`jax.make_array_from_process_local_data`), so the losses, gradients, metrics
and BatchNorm statistics are those of the global batch.

TensorFlow's `tf.distribute.MultiWorkerMirroredStrategy` is refused
(`TF_MULTI_WORKER_UNSUPPORTED`): with Keras 3.15 and TensorFlow 2.21, Keras's
`model.fit` fails under it before the first step (keras-team/keras#20585;
reproduced by two real workers on 127.0.0.1 in tests/test_distributed.py), so
`--strategy multi-worker` needs JAX.

Process 0, the chief, writes the run folder; the others read its backup from
the same (shared) folder to resume (`training.trainer`; the start's protocol is at the
end of this module).
"""

import errno
import fcntl
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import zlib

from training.cli import one_line
from training.config import ConfigError
from training.fields import label, settings
from training.run import RunError

#: Why `--strategy multi-worker` refuses the TensorFlow backend (one line).
TF_MULTI_WORKER_UNSUPPORTED = (
    "--strategy multi-worker needs KERAS_BACKEND=jax: Keras 3's model.fit fails under "
    "tf.distribute.MultiWorkerMirroredStrategy (\"Attempt to convert a value (PerReplica...)\" "
    "before the first step, keras-team/keras#20585); run the same command with KERAS_BACKEND=jax"
)

#: Settings that may differ between the processes of one run: each process's
#: own id and view of the cluster, its console, and its local paths (a shared
#: run folder may be mounted at other paths on other machines).
PER_PROCESS = ("process_id", "job_addresses", "init_timeout", "verbose", "framework_logs",
               "runs_dir", "export_dir", "data_dir", "tfds_dir", "cache_dir")

#: Extra seconds JAX's own timeouts get over `--init-timeout`, so that the
#: one-line error (`_Watchdog`) comes first: JAX aborts the process instead.
_JAX_GRACE_S = 15


def initialize(config):
    """Joins the processes of a `--strategy multi-worker` run; a no-op otherwise.

    Call before anything else uses the backend (JAX must be initialized
    before its first computation). Each process waits at most
    `config.init_timeout` seconds for the others.

    Args:
        config: A `TrainConfig` (its multi-worker fields are resolved here).

    Raises:
        ConfigError: If the backend cannot run several processes, or a setting
            is missing or invalid.
    """
    config = config.resolve_processes()
    if config.strategy != "multi-worker":
        return
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        raise ConfigError(TF_MULTI_WORKER_UNSUPPORTED)
    if backend != "jax":
        raise ConfigError(f"--strategy multi-worker needs KERAS_BACKEND=jax (current: {backend})")
    import jax

    if _jax_initialized():
        return  # this process has joined already (a second run in one process)
    claim_process_id(config.job_addresses, config.process_id)
    # Gloo gives JAX cross-process collectives on CPU (GPUs use NCCL); it is
    # JAX 0.10's default, set here so that an older default cannot leave CPU
    # processes without collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = (f"process {config.process_id} of {config.num_processes} (coordinator "
             f"{config.job_addresses.split(',')[0]})")
    # keras.distribution.initialize takes no timeouts and JAX's defaults are
    # minutes, after which JAX aborts with a stack trace. Keras's call is kept
    # (its argument and KERAS_DISTRIBUTION_* handling), with JAX's timeouts
    # bound to --init-timeout; the watchdog ends the process with one line first.
    real = jax.distributed.initialize
    limit = config.init_timeout + _JAX_GRACE_S
    bounded = functools.partial(real, initialization_timeout=limit,
                                heartbeat_timeout_seconds=limit, shutdown_timeout_seconds=limit)
    with _Watchdog(config.init_timeout, f"error: {where} could not reach all "
                   f"{config.num_processes} processes within --init-timeout "
                   f"{config.init_timeout} s: start every process with the same --job-addresses "
                   "and --num-processes, and a different --process-id"):
        jax.distributed.initialize = bounded
        try:
            keras.distribution.initialize(config.job_addresses, config.num_processes,
                                          config.process_id)
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"{where} could not start: {one_line(e, 300)}") from e
        finally:
            jax.distributed.initialize = real


#: The process-id locks this process holds (`claim_process_id`), by lock path.
_CLAIMED = {}


def process_id_lock(port, process_id):
    """The lock file of `--process-id process_id` of the run whose coordinator
    listens on `port` (one per host: in the temporary folder)."""
    return os.path.join(tempfile.gettempdir(),
                        f"keras-googlenet-{os.getuid()}-port-{port}-process-{process_id}.lock")


def claim_process_id(job_addresses, process_id):
    """Refuses a second process with the same `--process-id` of one run on this host.

    JAX's coordination service aborts the first process (a C++ stack trace,
    `ALREADY_EXISTS`) when a second one registers with its id; so before
    joining, each process takes a lock on its id (`process_id_lock`, held until
    it exits, holding its pid), and process 0 makes sure that the
    coordinator's port is free (a program other than this one may hold it).

    Args:
        job_addresses: `--job-addresses` (the coordinator is the first address).
        process_id: This process's `--process-id`.

    Raises:
        ConfigError: If another live process of this host has claimed the id,
            or the coordinator's port is in use.
    """
    coordinator = job_addresses.split(",")[0].strip()
    port = int(coordinator.rpartition(":")[2])
    path = process_id_lock(port, process_id)
    if path in _CLAIMED:
        return
    try:
        lock = open(path, "a+")  # held open (and locked) until this process exits
    except OSError:
        lock = None  # another user's lock file: the port check below still applies
    if lock is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            lock.seek(0)
            pid = lock.read().strip()
            lock.close()
            who = f"another process (pid {pid})" if pid.isdigit() else "another process"
            raise ConfigError(
                f"--process-id {process_id}: {who} on this host is already process {process_id} of the run with coordinator "
                f"{coordinator} (--job-addresses); give each process of a run its own "
                "--process-id, from 0 to --num-processes - 1") from e
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        _CLAIMED[path] = lock
    if process_id == 0 and not _port_free(port):
        if path in _CLAIMED:
            _CLAIMED.pop(path).close()  # releases the lock
        raise ConfigError(
            f"--process-id 0: the coordinator's port {port} ({coordinator}, --job-addresses) is "
            "already in use on this host, by another process 0 of this run or another program; "
            "give each process of a run its own --process-id, or choose a free port")


def _port_free(port):
    """Whether a listening socket may bind `port` on every interface (as JAX's
    coordinator does). A socket in TIME_WAIT does not count; a listening one does."""
    for family, address in ((socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return False
                continue
            return True
    return True


def _jax_initialized():
    from jax._src import distributed  # no public test of "initialize was called"

    return distributed.global_state.client is not None


class _Watchdog:
    """Ends the process with a one-line error if the `with` block outlasts `seconds`.

    For the calls into JAX's distributed runtime, which block in C++ (a Python
    exception cannot interrupt them) and abort the process when their own
    timeout passes.
    """

    def __init__(self, seconds, message):
        self._timer = threading.Timer(seconds, self._expire, args=(message,))
        self._timer.daemon = True

    @staticmethod
    def _expire(message):
        print(message, file=sys.stderr, flush=True)
        os._exit(1)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()


def process_index():
    """This process's id in the run (0 without `--strategy multi-worker`)."""
    import keras

    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def process_count():
    """Processes of the run (1 without `--strategy multi-worker`)."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def is_chief():
    """Whether this process writes the run folder (process 0)."""
    return process_index() == 0


def check_same_settings(config):
    """Raises `ConfigError` on every process unless all processes have the same settings.

    Compares every `TrainConfig` setting but `PER_PROCESS`'s (one checksum per
    setting, gathered from every process; the network's settings one by one),
    so that a process started with, say, another `--batch-size` or
    `--num-processes` stops at once instead of training something else than
    the others or waiting forever in a
    collective. A no-op in a single process.

    Args:
        config: The resolved `TrainConfig` of this process.
    """
    if process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    # Every declared setting, the network's (nested) ones included, named as messages name it.
    compared = [s for s in settings(type(config)) if s.path[0] not in PER_PROCESS]
    sums = np.array([zlib.crc32(json.dumps(s.get(config), sort_keys=True).encode())
                     for s in compared], dtype=np.uint32)
    with _Watchdog(config.init_timeout, "error: the processes could not compare their settings "
                   f"within --init-timeout {config.init_timeout} s"):
        gathered = np.asarray(multihost_utils.process_allgather(sums))
    differ = sorted({label(s) for row in gathered[1:]
                     for s, a, b in zip(compared, gathered[0], row) if a != b})
    if differ:
        others = [str(p) for p, row in enumerate(gathered) if (row != gathered[0]).any()]
        raise ConfigError(
            f"process(es) {', '.join(others)} of {len(gathered)} were started with other "
            f"settings than process 0 ({', '.join(differ)}); "
            "start every process with the same flags but --process-id"
        )


def gather(values):
    """Every process's integers `values`, rows in process order (`[values]` in one process).

    A collective: every process of the run must call it, in the same order.
    """
    if process_count() == 1:
        return [[int(v) for v in values]]
    import numpy as np
    from jax.experimental import multihost_utils

    rows = multihost_utils.process_allgather(np.asarray(values, dtype=np.int32))
    return [[int(v) for v in row] for row in np.asarray(rows).reshape(process_count(), -1)]


def weights_digest(model):
    """The first 16 hex digits of the sha256 of the model's weights, in order.

    Every process of a multi-worker run holds a full copy of the (replicated)
    weights; equal digests show that they ended the same, bit for bit.
    """
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def _digest_prefix(index, count):
    """The start of the line on which process `index` of `count` prints its digest."""
    return f"Process {index} of {count}: weights sha256 "


def printed_digests(output, index, count):
    """The weights digests process `index` of `count` printed in `output` (its stdout),
    one per `fit` it ran, in order (`process_callbacks`)."""
    prefix = _digest_prefix(index, count)
    return [line[len(prefix):].strip() for line in output.splitlines() if line.startswith(prefix)]


def process_callbacks():
    """Callbacks every process adds in a multi-worker run (none in one process):
    at the end of each `fit`, each process prints the digest of its weights
    (`weights_digest`), so that a run's log shows whether they agree."""
    if process_count() == 1:
        return []
    import keras

    class PrintWeightsDigest(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            print(_digest_prefix(process_index(), process_count()) + weights_digest(self.model),
                  flush=True)

    return [PrintWeightsDigest()]


# ---- the run's start: process 0 decides, the others follow (training.trainer) ----------

#: `training.run.run_state`'s answers, by the code the chief sends the other processes.
RUN_STATES = ("new", "resume", "overwrite")


def send_run_state(state):
    """The chief's half of a run's start: sends `training.run.run_state`'s answer
    to the other processes (None: the run cannot start). A no-op in one process."""
    gather([-1 if state is None else RUN_STATES.index(state)])


def receive_run_state(config):
    """The other processes' half: the chief's `training.run.run_state` answer.

    Raises:
        RunError: If the chief could not start the run.
    """
    code = gather([0])[0][0]  # the chief's run_state
    if code < 0:
        raise RunError(f"process 0 could not start run {config.name!r} (its error says why)")
    return RUN_STATES[code]


def copy_resume_state(shared_run_dir, run_dir):
    """Copies the chief's backup and history into this process's run folder copy
    (a run folder that is not shared leaves it without: `check_same_epoch` then stops
    the run)."""
    backup = shared_run_dir / "backup"
    if not backup.is_dir():
        return
    run_dir.mkdir(parents=True)
    try:
        shutil.copytree(backup, run_dir / "backup")
        if (shared_run_dir / "history.csv").exists():
            shutil.copy2(shared_run_dir / "history.csv", run_dir / "history.csv")
    except OSError as e:
        raise RunError(f"process {process_index()} could not read the backup in {backup} "
                       f"({one_line(e, 120)})") from e


def check_same_epoch(resumed_from):
    """Checks that every process resumes from the same epoch of the same backup.

    Every process calls it with the epoch its backup holds (0: none), or calls
    `gather([-1])` instead when it cannot resume.

    Raises:
        RunError: If the processes found different backups, or one could not resume.
    """
    epochs = [row[0] for row in gather([resumed_from])]
    if min(epochs) < 0 or len(set(epochs)) > 1:  # the same on every process
        if min(epochs) >= 0:
            raise RunError(f"the processes found backups of different epochs ({epochs}) in "
                           "the run folder: it must be one folder shared by every process")
        raise RunError("another process could not resume the run (its error says why)")
