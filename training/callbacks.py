"""Callbacks of a training run: Keras's own, made atomic, plus per-epoch stats."""

import json
import os
import time

import keras

from keras_googlenet.fileio import atomic_save_model, atomic_save_weights, atomic_write_text


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is one line for the user."""


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that writes atomically.

    Keras writes the checkpoint in place, so a kill during a save would leave
    a corrupt file where the previous good one was. This subclass saves
    through `keras_googlenet.fileio` (a temporary file in the same folder,
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
    """`keras.callbacks.BackupAndRestore` whose backup is written atomically.

    Keras overwrites the backup's weights file in place, so a kill during that
    write leaves a backup that cannot be loaded. Here the weights (model and
    optimizer state) and then the epoch counter are each written to a
    temporary file and renamed into place, so the backup is always loadable.
    A kill between the two renames leaves weights one epoch newer than the
    counter; that epoch is then trained once more.
    """

    # Overrides a private method of BackupAndRestore (Keras 3.x); the file
    # names and metadata format are Keras's, so its restore logic is unchanged.
    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        atomic_save_weights(self.model, self._weights_path)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        atomic_write_text(self._training_metadata_path, json.dumps(metadata))

    def saved_epoch(self):
        """Number of completed epochs recorded in the backup (0 without one)."""
        try:
            with open(self._training_metadata_path, encoding="utf-8") as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0


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

    Adds `learning_rate` (at the end of the epoch), `epoch_time_s` and
    `images_per_second`, the latter over the training phase only (validation
    excluded). Place it before the callbacks that should see these keys.

    Args:
        images_per_epoch: Training images per epoch (steps x batch size).
    """

    def __init__(self, images_per_epoch):
        super().__init__()
        self.images_per_epoch = images_per_epoch
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
