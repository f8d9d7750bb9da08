"""Held-out accuracy beyond Keras's own validation: flip test-time augmentation and EMA weights.

Keras's validation (`val_<head>_accuracy`) evaluates the model's current
weights on the plain images. `HeldOutEvaluation` adds, every epoch:

- with `--tta-flip`, `val_<head>_accuracy_tta`: the accuracy of the mean of the
  softmax probabilities on each image and its left-right mirror, computed by
  `flip_tta_model`, a model that shares the trained model's layers;
- with `--ema`, `val_<head>_accuracy_ema` (and `..._ema_tta` with both): the same
  with the optimizer's exponential moving average of the weights swapped in
  (`keras.callbacks.SwapEMAWeights`), the weights `--ema` makes final.

Every figure is a `model.evaluate` over the held-out batches that Keras's own
validation reads, with the same weighted accuracy metric. So the zero-weight
padding of multi-device runs does not count, and under `--strategy
multi-worker` each process evaluates its share while Keras sums the metric
over all of them: every held-out image counts once. (`model.predict` cannot
serve here: its outputs span the other processes' devices.)

Only the trainable weights are averaged (Keras's optimizer EMA); BatchNorm's
moving statistics stay those of the raw weights. Pure Keras: runs on every
backend and with either input pipeline.
"""

import contextlib

import keras

from keras_googlenet.architecture import MAIN_HEAD

#: Suffixes of the metric names this module adds.
TTA_SUFFIX, EMA_SUFFIX = "_tta", "_ema"


def selection_metric(config):
    """The history column that picks the best epoch (and `best.keras`): the main
    head's held-out accuracy of the raw weights (which `best.keras` holds), with
    flip TTA under `--tta-flip`."""
    return f"val_{MAIN_HEAD}_accuracy" + (TTA_SUFFIX if config.tta_flip else "")


def flip_tta_model(model):
    """A model whose outputs are, per head of `model`, the mean of the softmax
    probabilities on the images and on their left-right mirrors.

    It calls `model` itself (no copy), so it always scores `model`'s current
    weights, EMA ones included while they are swapped in. It is compiled for
    `evaluate` with `model`'s `jit_compile`: a cross-entropy on probabilities
    and the weighted accuracy `training.recipe.compile_model` reports.

    Args:
        model: A model on NHWC images whose outputs are logits (one, or a
            list or dict of them, named by `model.output_names`).

    Returns:
        A compiled `keras.Model` with one output per head, named as `model`'s.
    """
    heads = list(model.output_names)
    images = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    probabilities = {head: [] for head in heads}
    for view in (images, keras.ops.flip(images, axis=2)):  # axis 2: the width of NHWC
        logits = model(view, training=False)
        if not isinstance(logits, dict):
            logits = dict(zip(heads, keras.tree.flatten(logits)))
        for head in heads:
            probabilities[head].append(keras.layers.Softmax(dtype="float32")(logits[head]))
    outputs = {head: keras.layers.Average(name=head, dtype="float32")(p)
               for head, p in probabilities.items()}
    tta = keras.Model(images, outputs, name=f"{model.name}_flip_tta")
    tta.compile(
        loss={head: keras.losses.CategoricalCrossentropy(reduction="mean_with_sample_weight")
              for head in heads},
        weighted_metrics={head: [keras.metrics.CategoricalAccuracy(name="accuracy")]
                          for head in heads},
        jit_compile=getattr(model, "jit_compile", "auto"),
    )
    return tta


def heldout_accuracies(model, val):
    """`{head: weighted accuracy}` of `model.evaluate` on `val`, for every
    output of `model`.

    Args:
        model: A model compiled with `CategoricalAccuracy(name="accuracy")` as a
            weighted metric of each head (`compile_model`, `flip_tta_model`).
        val: Held-out batches `(images, {head: one-hot labels}[, weights])`.
    """
    heads = list(model.output_names)
    logs = model.evaluate(val, return_dict=True, verbose=0)
    if len(heads) == 1 and "accuracy" in logs:  # Keras drops the prefix of a lone output
        return {heads[0]: float(logs["accuracy"])}
    return {head: float(logs[f"{head}_accuracy"]) for head in heads}


class HeldOutEvaluation(keras.callbacks.Callback):
    """Adds the TTA and EMA held-out accuracies of every head to each epoch's logs.

    Place it before the callbacks that record or monitor them (checkpoint,
    CSVLogger, TensorBoard).

    Args:
        val: The held-out batches given to `fit` as `validation_data`.
        tta_flip: Add `val_<head>_accuracy_tta` (and `..._ema_tta` with `ema`).
        ema: Add `val_<head>_accuracy_ema` (the optimizer must have `use_ema=True`).
        scope: The context the model was built in (`setup_runtime`'s scope,
            a `tf.distribute` strategy's under `--strategy mirrored`); the TTA
            model is built and compiled inside it.
    """

    def __init__(self, val, *, tta_flip, ema, scope=None):
        super().__init__()
        self.val, self.tta_flip, self.ema = val, tta_flip, ema
        self.scope = scope if scope is not None else contextlib.nullcontext()
        self._tta = None

    def accuracies(self, tta):
        """`{head: accuracy}` of the model's current weights on the held-out
        batches, with flip TTA if `tta` (its model is built once, on first use)."""
        if tta and self._tta is None:
            with self.scope:
                self._tta = flip_tta_model(self.model)
        return heldout_accuracies(self._tta if tta else self.model, self.val)

    def _log(self, logs, suffix, tta):
        for head, value in self.accuracies(tta).items():
            logs[f"val_{head}_accuracy{suffix}"] = value

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
    for variable in model.trainable_variables:
        variable.assign(keras.ops.copy(variable.value))
