"""Model, optimizer, compile settings and label fan-out of the training recipe.

Free of CLI and run-folder concerns so that the tuner and benchmarks can reuse
them: `setup_runtime` (precision, seeds, multi-device), then `build_model` and
`compile_model` inside the returned scope, and `fan_out_labels` (or
`fan_out_datasets`) to give each of the model's outputs the data's labels.
Fine-tuning with a frozen backbone trains in the phases of `run_phases`, each
entered with `enter_phase`.
"""

import contextlib
import dataclasses
import math

import keras

from keras_googlenet.architecture import AUX_HEADS, LOSS_WEIGHTS, is_head_layer
from keras_googlenet.saving import build_model as build_googlenet
from training.cli import one_line
from training.config import ConfigError
from training.distributed import TF_MULTI_WORKER_UNSUPPORTED


def setup_runtime(config):
    """Applies the global settings a run needs before any model is built.

    Sets the dtype policy (`config.precision`), seeds Python, numpy and the
    backend (`config.seed`) and sets up multi-device training:

    - `"mirrored"`: a `tf.distribute.MirroredStrategy` over all local GPUs,
      else over all logical CPUs (TensorFlow backend only);
    - `"data-parallel"`: `keras.distribution.DataParallel` over all devices
      (JAX backend only);
    - `"multi-worker"`: `keras.distribution.DataParallel` over the devices of
      every process (JAX backend only; `training.distributed.initialize` must
      have joined the processes). The processes feed their own shards of each
      batch (`training.data.build_datasets`), so Keras's auto-sharding is off.

    Args:
        config: A resolved `TrainConfig`.

    Returns:
        `(scope, replicas)`: a context manager to build and compile the model
        in, and the number of devices each batch is split over.

    Raises:
        ConfigError: If the strategy does not match the Keras backend.
    """
    backend = keras.backend.backend()
    keras.config.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    if config.strategy == "mirrored":
        if backend != "tensorflow":
            raise ConfigError(
                f"--strategy mirrored needs KERAS_BACKEND=tensorflow (current: {backend}); "
                "use --strategy data-parallel on JAX"
            )
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        return _StrategyScope(strategy), strategy.num_replicas_in_sync
    if config.strategy == "data-parallel":
        if backend != "jax":
            raise ConfigError(
                f"--strategy data-parallel needs KERAS_BACKEND=jax (current: {backend}); "
                "use --strategy mirrored on TensorFlow"
            )
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        return contextlib.nullcontext(), len(distribution.device_mesh.devices.flatten())
    if config.strategy == "multi-worker":
        if backend != "jax":
            raise ConfigError(TF_MULTI_WORKER_UNSUPPORTED)
        # list_devices() is every process's devices once keras.distribution.initialize ran.
        distribution = keras.distribution.DataParallel(
            devices=keras.distribution.list_devices(), auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
        return contextlib.nullcontext(), len(distribution.device_mesh.devices.flatten())
    if backend == "jax":
        keras.distribution.set_distribution(None)  # undo an earlier call in this process
    return contextlib.nullcontext(), 1


class _StrategyScope:
    """`strategy.scope()` that can be entered more than once: the model is built
    in it, and every fine-tuning phase compiles in it again (the object that
    `tf.distribute.Strategy.scope()` returns is single-use)."""

    def __init__(self, strategy):
        self._strategy, self._open = strategy, []

    def __enter__(self):
        self._open.append(self._strategy.scope())
        return self._open[-1].__enter__()

    def __exit__(self, *exc_info):
        return self._open.pop().__exit__(*exc_info)


def build_model(config, num_classes):
    """The three-head GoogLeNet of the configuration (uncompiled).

    Call after `setup_runtime` (the dtype policy must be set before building).

    Args:
        config: A resolved `TrainConfig`.
        num_classes: Number of classes.

    Returns:
        A `keras.Model` with outputs `aux1`, `aux2`, `main` (logits).
    """
    return build_googlenet(config.model_config(num_classes))


#: The phases of a run (`Phase.name`): "all" without a frozen phase, else
#: "frozen" (only the heads train), then "unfrozen" (the backbone trains too).
ALL, FROZEN, UNFROZEN = "all", "frozen", "unfrozen"


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs `[first_epoch, end_epoch)` (counted from 0) of one trainable state,
    with a learning rate that warms up from 0 to `peak_lr` over `warmup_epochs`
    and decays by cosine to 0 at the phase's last step."""

    name: str
    first_epoch: int
    end_epoch: int
    peak_lr: float
    warmup_epochs: float

    def describe(self):
        """What trains in this phase, in words (for the console and results.json)."""
        return {
            ALL: "every layer",
            FROZEN: "the heads only: the backbone is frozen, its BatchNorm in inference mode",
            UNFROZEN: "every layer but the backbone's BatchNorm, which stays in inference mode",
        }[self.name]


def run_phases(config):
    """The phases of a run: one ("all") unless `config.freeze_epochs` > 0.

    With a frozen phase, its epochs train the heads on the usual schedule
    (`config.peak_lr`, `config.warmup_epochs`); the remaining epochs also train the
    backbone, from a peak of `config.peak_lr * config.finetune_lr_factor` without
    warm-up. Backbone BatchNorm layers stay in inference mode throughout, as
    Keras's transfer-learning guide advises, so that the first unfrozen
    updates do not destroy what the backbone learned.
    """
    if not config.freeze_epochs:
        return [Phase(ALL, 0, config.epochs, config.peak_lr, config.warmup_epochs)]
    n = config.freeze_epochs
    return [Phase(FROZEN, 0, n, config.peak_lr, config.warmup_epochs),
            Phase(UNFROZEN, n, config.epochs, config.peak_lr * config.finetune_lr_factor, 0.0)]


def set_trainable(model, phase):
    """Sets every layer's `trainable` for `phase` (see `Phase.describe`).

    A BatchNormalization layer with `trainable=False` runs in inference mode
    in Keras 3 (its moving statistics are used and not updated). The model
    must be compiled again afterwards (`enter_phase` does both).
    """
    for layer in model.layers:
        if phase.name == FROZEN:
            layer.trainable = is_head_layer(layer.name)
        elif phase.name == UNFROZEN:
            layer.trainable = is_head_layer(layer.name) or not isinstance(
                layer, keras.layers.BatchNormalization)
        else:
            layer.trainable = True


def count_trainable(model):
    """Number of trainable parameters of `model` (the values its gradients hold)."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def trainable_parameters(model, phase):
    """Number of parameters that train in `phase`; `model`'s layers keep the
    `trainable` flags they had."""
    before = [layer.trainable for layer in model.layers]
    set_trainable(model, phase)
    try:
        return count_trainable(model)
    finally:
        for layer, trainable in zip(model.layers, before):
            layer.trainable = trainable


def enter_phase(model, config, steps_per_epoch, phase):
    """Sets the model's trainable layers for `phase` and compiles it with a new
    optimizer on the phase's schedule, built over the phase's trainable weights
    (`compile_model`: a backup written now holds this phase's optimizer state).
    Call it inside `setup_runtime`'s scope.
    """
    set_trainable(model, phase)
    compile_model(model, config, steps_per_epoch, phase)


def build_compile_state(model):
    """Creates the variables of the compiled loss (its per-head trackers) and
    metrics now, outside `fit`'s step.

    Without a distribution strategy, Keras's TensorFlow trainer creates them
    while it traces the first training step, and a `tf.function` that creates
    variables on its first call is traced a second time: every `fit` started
    with two traces of the three-head step (about 2 CPU seconds more for a tiny
    run; `benchmarks/results/test_suite_time.md`). One `compute_loss`
    and one `compute_metrics` on all-zero outputs of one image create them
    eagerly; `fit` resets every metric before its first epoch. The other
    backends build them symbolically in `fit` and need nothing.

    Args:
        model: A compiled GoogLeNet.
    """
    if keras.backend.backend() != "tensorflow":
        return
    zeros = [keras.ops.zeros((1, *t.shape[1:])) for t in model.outputs]
    y_pred = keras.tree.pack_sequence_as(model.output, zeros)
    y = dict(zip(model.output_names, zeros)) if len(zeros) > 1 else zeros[0]
    model.compute_loss(y=y, y_pred=y_pred)
    model.compute_metrics(None, y, y_pred, sample_weight=None)


def build_schedule(config, steps_per_epoch, phase=None):
    """Learning rate per optimizer step of a phase (default: the first of
    `run_phases`): linear warm-up from 0 to `phase.peak_lr` over
    `phase.warmup_epochs`, then cosine decay to 0 at the phase's last step.
    Steps count from the phase's start (each phase has its own optimizer).

    Args:
        config: A resolved `TrainConfig`.
        steps_per_epoch: Optimizer steps per epoch.
        phase: A `Phase` of `run_phases(config)`.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`.
    """
    phase = phase or run_phases(config)[0]
    total = max(1, (phase.end_epoch - phase.first_epoch) * steps_per_epoch)
    warmup = min(int(round(phase.warmup_epochs * steps_per_epoch)), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=total - warmup,
        warmup_target=phase.peak_lr,
        warmup_steps=warmup,
    )


def build_optimizer(config, steps_per_epoch, phase=None):
    """SGD with Nesterov momentum on the `build_schedule` learning rate.

    Weight decay is Keras's decoupled decay, not applied to biases and
    BatchNorm parameters. With `config.ema` the optimizer also keeps an
    exponential moving average of the weights, which `model.fit` copies into
    the model when training ends.

    Args:
        config: A resolved `TrainConfig`.
        steps_per_epoch: Optimizer steps per epoch.
        phase: A `Phase` of `run_phases(config)` (default: the first).

    Returns:
        A `keras.optimizers.SGD`.
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=build_schedule(config, steps_per_epoch, phase),
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay or None,
        use_ema=config.ema,
        ema_momentum=config.ema_momentum,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def compile_model(model, config, steps_per_epoch, phase=None):
    """Compiles a three-head GoogLeNet with the recipe's losses and metrics.

    Every head gets a cross-entropy on logits with label smoothing (so labels
    are one-hot) and an accuracy metric; losses are weighted by `loss_weight`
    (`aux_weight, aux_weight, 1.0`: the paper's 0.3, 0.3, 1.0 by default).
    Keras then reports `main_accuracy`, `val_main_accuracy`, etc. The
    optimizer (over the model's trainable weights, so a backup written now holds
    its state), the loss trackers and the metrics are built at once
    (`build_compile_state`).

    Args:
        model: The model from `build_model`.
        config: A resolved `TrainConfig`.
        steps_per_epoch: Optimizer steps per epoch (for the schedule).
        phase: A `Phase` of `run_phases(config)` (default: the first).

    Returns:
        `model`, compiled.
    """
    heads = list(model.output_names)
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch, phase),
        # Losses average over the sample weights and accuracy is a *weighted*
        # metric (Keras ignores sample weights in plain `metrics`), so that the
        # zero-weight padding build_datasets adds for multi-device validation
        # does not count. Without sample weights both are the usual means.
        loss={
            head: keras.losses.CategoricalCrossentropy(
                from_logits=True,
                label_smoothing=config.label_smoothing,
                reduction="mean_with_sample_weight",
            )
            for head in heads
        },
        loss_weights={head: loss_weight(head, config) for head in heads},
        weighted_metrics={
            head: [keras.metrics.CategoricalAccuracy(name="accuracy")] for head in heads
        },
        jit_compile=config.jit and not config.run_eagerly,
        run_eagerly=config.run_eagerly,
        steps_per_execution=config.steps_per_execution,
    )
    model.optimizer.build(model.trainable_variables)
    build_compile_state(model)
    return model


def loss_weight(head, config):
    """Loss weight of an output: `config.aux_weight` for an auxiliary head, else
    `keras_googlenet.architecture.LOSS_WEIGHTS` (1 for the main head)."""
    if head in AUX_HEADS:
        return config.aux_weight
    return LOSS_WEIGHTS.get(head, 1.0)


def fan_out_labels(dataset, output_names):
    """The batches of `dataset` with their labels repeated for every model output.

    `training.data` yields `(images, labels[, sample_weights])`; a multi-output
    model wants `(images, {output: labels}[, sample_weights])`.

    Args:
        dataset: A `tf.data.Dataset` or a `keras.utils.PyDataset` (as in
            `training.data.Datasets`).
        output_names: The model's output names (`model.output_names`).

    Returns:
        A dataset of the same kind.
    """
    names = tuple(output_names)
    if isinstance(dataset, keras.utils.PyDataset):
        return _FannedOut(dataset, names)
    import tensorflow as tf

    def fan_out(x, y, *weights):
        return (x, {name: y for name in names}, *weights)

    return dataset.map(fan_out, num_parallel_calls=tf.data.AUTOTUNE)


def fan_out_datasets(datasets, output_names):
    """A copy of a `training.data.Datasets` whose `train` and `val` go through
    `fan_out_labels`."""
    return dataclasses.replace(
        datasets,
        train=fan_out_labels(datasets.train, output_names),
        val=fan_out_labels(datasets.val, output_names),
    )


class _FannedOut(keras.utils.PyDataset):
    """`fan_out_labels` of a `keras.utils.PyDataset` (same workers, same epochs)."""

    def __init__(self, dataset, names):
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset, self.names = dataset, names

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        x, y, *weights = self.dataset[index]
        return (x, {name: y for name in self.names}, *weights)

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


def load_pretrained(model, weights):
    """`keras_googlenet.load_backbone_weights`, its failures as one-line ConfigErrors."""
    from keras_googlenet import load_backbone_weights

    try:
        loaded = load_backbone_weights(model, weights)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"--weights {weights}: {one_line(e, 300)}") from e
    print(f"Loaded the pretrained backbone ({len(loaded)} layers) from --weights {weights}; "
          "the heads are new")
