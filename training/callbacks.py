"""Callbacks of a training run: Keras's own, made atomic, plus per-epoch stats."""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import keras

from keras_googlenet._internal.fileio import (
    atomic_save_model, atomic_save_weights, atomic_write_text,
)
from training.cli import one_line
from training.curves import write_curves
from training.run import ELAPSED_COLUMN, OVERWRITE_HINT, RunError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is one line for the user."""


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that writes atomically.

    Keras writes the checkpoint in place, so a kill during a save would leave
    a corrupt file where the previous good one was. This subclass saves
    through `keras_googlenet._internal.fileio` (a temporary file in the same folder,
    renamed over the checkpoint). Use a plain file path (no `{epoch}` fields).
    """

    # Overrides a private method of ModelCheckpoint (Keras 3.x) so that the
    # decision logic (save_best_only, monitor, initial_value_threshold) stays
    # Keras's own `_should_save_model`.
    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            if self.save_weights_only:
                atomic_save_weights(self.model, filepath)
            else:
                atomic_save_model(self.model, filepath)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backup is atomic and checked.

    Keras overwrites the backup's weights file in place, so a kill during that
    write leaves a backup that cannot be loaded, and it restores whatever the
    files hold. Here each epoch's weights (model and optimizer state) go to
    their own file, `epoch-NNNN.weights.h5`, written atomically; then the
    metadata (Keras's `training_metadata.json`, plus the weights' file name and
    SHA-256) is renamed into place, and only then are older weights deleted. A
    kill at any instant leaves metadata that names complete weights, and a
    backup whose files were damaged afterwards is refused (`RunError`, naming
    the file) instead of being trained on.

    The metadata also records `phase` (the training phase whose optimizer state
    the weights hold, `training.recipe.Phase.name`) when it is set, so that a
    run with a frozen phase resumes in the right one (`saved_phase`).
    """

    #: The name of the phase being trained; written into the metadata (None: not written).
    phase = None

    # Overrides private methods of BackupAndRestore (Keras 3.x); its restore
    # logic (`on_train_begin`, `_load_model`) is unchanged.
    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:04d}.weights.h5"
        path = os.path.join(self.backup_dir, name)
        atomic_save_weights(self.model, path)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen,
                    "weights": name, "sha256": _sha256(path)}
        if self.phase is not None:
            metadata["phase"] = self.phase
        atomic_write_text(self._training_metadata_path, json.dumps(metadata))
        self._weights_path = path
        for entry in os.scandir(self.backup_dir):  # earlier epochs' (and a killed save's)
            if entry.name.endswith(".weights.h5") and entry.name != name:
                os.remove(entry.path)

    def _metadata(self):
        """The checked backup metadata; None without a backup.

        Raises:
            RunError: If the metadata or the weights it names are damaged.
        """
        path = self._training_metadata_path
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                metadata = json.load(f)
            if not isinstance(metadata.get("epoch"), int) or metadata["epoch"] < 0:
                raise ValueError(f"epoch={metadata.get('epoch')!r}")
        except (OSError, ValueError, AttributeError) as e:
            raise RunError(f"the backup metadata {path} is damaged ({one_line(e, 100)}); "
                           f"{OVERWRITE_HINT}") from e
        if "weights" in metadata:  # written by _save_model (not a plain Keras backup)
            weights = os.path.join(self.backup_dir, os.path.basename(str(metadata["weights"])))
            if not os.path.isfile(weights) or _sha256(weights) != metadata.get("sha256"):
                raise RunError(f"the backup weights {weights} are missing or damaged (their "
                               f"SHA-256 does not match {path}); {OVERWRITE_HINT}")
            self._weights_path = weights
        return metadata

    def saved_epoch(self):
        """Number of completed epochs recorded in the backup (0 without one).

        Raises:
            RunError: If the backup is damaged.
        """
        metadata = self._metadata()
        return 0 if metadata is None else metadata["epoch"]

    def saved_phase(self):
        """The phase recorded in the backup (None without one, or if none was recorded).

        Raises:
            RunError: If the backup is damaged.
        """
        metadata = self._metadata()
        return None if metadata is None else metadata.get("phase")

    def save(self, model, epochs_done):
        """Backs up `model` now as the state after `epochs_done` epochs (for a
        phase change between epochs: the backup then holds the new phase's
        optimizer state)."""
        self.set_model(model)
        self._current_epoch, self._last_batch_seen = epochs_done, 0
        self._save_model()

    def _load_model(self):
        self._metadata()
        try:
            super()._load_model()
        except (OSError, ValueError) as e:
            raise RunError(f"the backup weights {self._weights_path} cannot be loaded "
                           f"({one_line(e, 100)}); {OVERWRITE_HINT}") from e


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """`keras.callbacks.TerminateOnNaN` that raises `TrainingDiverged`.

    Raising (rather than stopping gracefully) keeps the run from saving and
    exporting a diverged model, and leaves the last good backup in place.
    """

    def __init__(self):
        super().__init__(raise_error=True)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError as e:
            raise TrainingDiverged(
                f"the loss became NaN or infinite at epoch {self._epoch + 1}, batch {batch + 1}; "
                "training stopped (lower --lr, or use --precision float32)"
            ) from e


class EpochStats(keras.callbacks.Callback):
    """Adds per-epoch figures to the logs that CSVLogger and TensorBoard record.

    Adds `learning_rate` (at the end of the epoch), `epoch_time_s`,
    `images_per_second` (over the training phase only, validation excluded)
    and `elapsed_s` (`training.run.ELAPSED_COLUMN`: the run's wall time so
    far). Place it before the callbacks that should see these keys.

    Args:
        images_per_epoch: Training images per epoch (steps x batch size).
        started: `time.time()` when this session of the run started (default: now).
        elapsed_before: Wall time of the run's earlier sessions (a resumed run:
            the last kept history row's `elapsed_s`).
    """

    def __init__(self, images_per_epoch, started=None, elapsed_before=0.0):
        super().__init__()
        self.images_per_epoch = images_per_epoch
        self.started = time.time() if started is None else started
        self.elapsed_before = elapsed_before
        self._start = self._train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        end = time.perf_counter()
        train_time = (self._train_end or end) - self._start
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        logs["epoch_time_s"] = end - self._start
        logs["images_per_second"] = self.images_per_epoch / max(train_time, 1e-9)
        logs[ELAPSED_COLUMN] = self.elapsed_before + (time.time() - self.started)


class PlotCurves(keras.callbacks.Callback):
    """Redraws the run's `curves.png` from its `history.csv` after every epoch.

    Place it after the `keras.callbacks.CSVLogger` that writes `history.csv`,
    so that the picture includes the epoch just finished. A picture that
    cannot be drawn never stops the run: the first failure is logged in one
    line (later ones are not repeated) and training goes on.

    Args:
        run_dir: The run folder.
        log: Called with that line (default: print to stderr).
    """

    def __init__(self, run_dir, log=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.failures = 0

    def on_epoch_end(self, epoch, logs=None):
        if not write_curves(self.run_dir, log=self._failed):
            self.failures += 1

    def _failed(self, line):
        if self.failures == 0:  # the first failure only: not one line per epoch
            self.log(f"{line}; training goes on")
