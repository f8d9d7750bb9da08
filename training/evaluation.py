"""Held-out accuracy beyond Keras's own validation: flip test-time augmentation and EMA weights.

Keras's validation (`val_<head>_accuracy`) evaluates the model's current
weights on the plain images. `HeldOutEvaluation` adds, every epoch:

- with `--tta-flip`, `val_<head>_accuracy_tta`: the accuracy of the mean of the
  softmax probabilities on each image and its left-right mirror
  (`predict_probabilities`);
- with `--ema`, `val_<head>_accuracy_ema` (and `..._ema_tta` with both): the same
  with the optimizer's exponential moving average of the weights swapped in
  (`keras.callbacks.SwapEMAWeights`), the weights `--ema` makes final.

Only the trainable weights are averaged (Keras's optimizer EMA); BatchNorm's
moving statistics stay those of the raw weights. Pure Keras and numpy: runs on
every backend and with either input pipeline.
"""

import keras
import numpy as np

from keras_googlenet.architecture import MAIN_HEAD

#: Suffixes of the metric names this module adds.
TTA_SUFFIX, EMA_SUFFIX = "_tta", "_ema"


def selection_metric(config):
    """The history column that picks the best epoch (and `best.keras`): the main
    head's held-out accuracy of the raw weights (which `best.keras` holds), with
    flip TTA under `--tta-flip`."""
    return f"val_{MAIN_HEAD}_accuracy" + (TTA_SUFFIX if config.tta_flip else "")


def softmax(logits):
    """Softmax over the last axis, in float64 numpy."""
    z = np.asarray(logits, dtype="float64")
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def predict_probabilities(model, images, batch_size, tta_flip=False):
    """Each output's class probabilities on `images`, optionally with flip TTA.

    Args:
        model: A model whose outputs are logits (a dict or list of them, or one).
        images: uint8 NHWC array.
        batch_size: Prediction batch size.
        tta_flip: Average the probabilities on the images and their
            left-right mirrors.

    Returns:
        A dict `{output name: (n, classes) float64 probabilities}`.
    """
    def run(x):
        out = model.predict(x, batch_size=batch_size, verbose=0)
        if isinstance(out, dict):
            return {name: softmax(out[name]) for name in model.output_names}
        if not isinstance(out, (list, tuple)):
            out = [out]
        return {name: softmax(o) for name, o in zip(model.output_names, out)}

    probabilities = run(images)
    if tta_flip:
        mirrored = run(np.ascontiguousarray(images[:, :, ::-1]))
        probabilities = {k: (p + mirrored[k]) / 2 for k, p in probabilities.items()}
    return probabilities


def accuracy(probabilities, labels, weights=None):
    """Weighted top-1 accuracy (zero-weight padding does not count)."""
    correct = (np.argmax(probabilities, axis=-1) == labels).astype("float64")
    if weights is None:
        return float(correct.mean())
    return float((correct * weights).sum() / weights.sum())


class HeldOutEvaluation(keras.callbacks.Callback):
    """Adds the TTA and EMA held-out accuracies of every head to each epoch's logs.

    Place it before the callbacks that record or monitor them (checkpoint,
    CSVLogger, TensorBoard).

    Args:
        arrays: `(images, int labels, sample weights or None)` of the held-out split.
        batch_size: Prediction batch size.
        tta_flip: Add `val_<head>_accuracy_tta` (and `..._ema_tta` with `ema`).
        ema: Add `val_<head>_accuracy_ema` (the optimizer must have `use_ema=True`).
    """

    def __init__(self, arrays, batch_size, *, tta_flip, ema):
        super().__init__()
        self.images, self.labels, self.weights = arrays
        self.batch_size, self.tta_flip, self.ema = batch_size, tta_flip, ema

    def _log(self, logs, suffix, tta):
        probabilities = predict_probabilities(self.model, self.images, self.batch_size, tta)
        for head, p in probabilities.items():
            logs[f"val_{head}_accuracy{suffix}"] = accuracy(p, self.labels, self.weights)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.tta_flip:
            self._log(logs, TTA_SUFFIX, tta=True)
        if self.ema:
            swap = keras.callbacks.SwapEMAWeights()
            swap.set_model(self.model)
            # Its test hooks, not the predict ones: in Keras 3.15 `on_predict_end`
            # tests the wrong flag and never swaps the raw weights back.
            swap.on_test_begin()  # the EMA weights in, the raw ones aside
            try:
                self._log(logs, EMA_SUFFIX, tta=False)
                if self.tta_flip:
                    self._log(logs, EMA_SUFFIX + TTA_SUFFIX, tta=True)
            finally:
                swap.on_test_end()  # and back


def unalias_ema_weights(model):
    """Gives each trainable variable its own buffer after an EMA `fit`.

    `finalize_variable_values` assigns each moving average to its model
    variable, and on JAX both then hold the same array; the next evaluate()
    donates the model's buffers, which deletes the optimizer's copy too, and
    saving `model.keras` fails ("Array has been deleted"). A copy breaks the
    sharing; on the other backends it is a no-op in effect.
    """
    import keras

    for variable in model.trainable_variables:
        variable.assign(keras.ops.copy(variable.value))
